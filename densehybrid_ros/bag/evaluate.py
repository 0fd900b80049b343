"""`densehybrid bag evaluate BAG`: the node on a bag as on a vehicle, three processes talking over DDS.

1. the detector node starts as its own process (`python -m densehybrid_ros.ros.detector_node --ros-args
   --params-file params/detector.yaml ...`), reliable input QoS (a replay must not lose frames to the transport);
2. this process records the node's outputs into a rosbag2 (`outputs/`) with their publish and receive times;
3. `densehybrid bag play` replays the bag's camera topics in a third process, re-stamping every frame when it is
   published (as a camera driver stamps it) and logging original and new stamps;
4. outputs are matched to frames by stamp; `analysis` computes the figures and `report` writes them.

Everything is written into a staging folder beside `--out` and renamed into place at the end.
"""
from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from densehybrid_ros.bag.analysis import Analysis, analyse, read_stamp_log
from densehybrid_ros.bag.files import CAMERA_INFO, IMAGE, IMAGE_TYPES, BagError, open_bag
from densehybrid_ros.bag.report import write_report
from densehybrid_ros.bag.truth import DEFAULT_PARAMS, load_detector_params, truth_for
from densehybrid_ros.config.detector import DetectorConfig
from densehybrid_ros.config.validation import ConfigError

# The synthetic-world model: the drives `densehybrid bag make` writes are that world's (its 14 classes, anomaly label
# 14). Bags of real drives (CamVid) need the real-data model, named with --model; a mismatch is refused below.
DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "densehybrid_lite0_synthetic.onnx"
NAMESPACE = "/bag_eval"


@dataclass
class EvaluateOptions:
    bag: Path
    out: Path
    model: Path = DEFAULT_MODEL
    params: Path = DEFAULT_PARAMS
    rate: float = 0.25
    threads: int = 2
    image_topic: str | None = None
    labels_topic: str | None = None
    namespace: str = NAMESPACE
    video: bool = True
    image_outputs: bool = True        # subscribe score/semantic/open-set (pixel metrics) and overlay (video)
    startup_timeout: float = 90.0
    settle: float = 5.0               # seconds without a new output before the run counts as finished
    force: bool = False
    node_parameters: dict[str, Any] = field(default_factory=dict)
    progress: bool = True


@dataclass
class EvaluateResult:
    analysis: Analysis
    out: Path
    files: dict[str, Path]
    info: dict[str, Any]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bag", type=Path)
    p.add_argument("--out", type=Path, default=None, help="report folder (default: <bag>_eval)")
    p.add_argument("--force", action="store_true", help="replace an existing report folder")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="the node's parameters file")
    p.add_argument("--set", nargs="+", default=[], metavar="NAME:=VALUE", help="node parameters on top of --params")
    p.add_argument("--rate", type=float, default=0.25,
                   help="replay rate factor; pick one the node keeps up with (frames it cannot take are superseded)")
    p.add_argument("--threads", type=int, default=2, help="the node's backend threads")
    p.add_argument("--image-topic", default=None,
                   help="default: the bag's only Image/CompressedImage topic that is not labels")
    p.add_argument("--labels-topic", default=None, help="default: <camera namespace>/labels when present")
    p.add_argument("--no-video", action="store_true")
    p.add_argument("--namespace", default=NAMESPACE, help="the node's namespace during the run")


def with_node_parameters(params: DetectorConfig, node_parameters: dict[str, Any],
                         what: str = "--set") -> DetectorConfig:
    """The parameters file's settings with `--set` applied, as the node applies them (values parsed as YAML), so
    the ground truth's corridor and the near-obstacle window are the node's own."""
    known = {s.name for s in DetectorConfig.specs()}
    values = {k: yaml.safe_load(v) if isinstance(v, str) else v for k, v in node_parameters.items() if k in known}
    if not values:
        return params
    try:
        return DetectorConfig.from_values(values, base=params)
    except ConfigError as e:
        raise BagError(f"{what}: {e}") from None


def run_from_args(args: argparse.Namespace) -> int:
    params = {}
    for item in args.set:
        name, sep, value = item.partition(":=")
        if not sep:
            raise BagError(f"--set {item!r}: expected NAME:=VALUE")
        params[name] = value
    out = args.out or args.bag.with_name(args.bag.name.rstrip("/") + "_eval")
    opts = EvaluateOptions(bag=args.bag, out=out, model=args.model, params=args.params, rate=args.rate,
                           threads=args.threads, image_topic=args.image_topic, labels_topic=args.labels_topic,
                           namespace=args.namespace, video=not args.no_video, force=args.force,
                           node_parameters=params, progress=sys.stderr.isatty())
    result = evaluate_bag(opts)
    print(summary_text(result))
    return 0


# -- the bag's topics ----------------------------------------------------------------------------------------------
def camera_topics(bag_path: Path, image_topic: str | None, labels_topic: str | None
                  ) -> tuple[str, str, str | None, str | None, dict[str, Any]]:
    """(image topic, its type, camera_info topic or None, labels topic or None, description) of a bag."""
    with open_bag(bag_path) as bag:
        topics = bag.topics
        description = bag.description
        if image_topic is None:
            image_topic = description.get("image_topic")
        if image_topic is None:
            images = [t for t in topics.values() if t.msgtype in IMAGE_TYPES and not t.name.endswith("labels")]
            if len(images) != 1:
                raise BagError(f"bag {bag_path} has {len(images)} camera image topics "
                               f"({', '.join(t.name for t in images) or 'none'}); choose one with --image-topic")
            image_topic = images[0].name
        msgtype = bag.require(image_topic, IMAGE_TYPES).msgtype
        prefix = image_topic[:-len("/image/compressed")] if image_topic.endswith("/image/compressed") else \
            image_topic.rsplit("/", 1)[0]
        info_topic = f"{prefix}/camera_info"
        info_topic = info_topic if topics.get(info_topic) and topics[info_topic].msgtype == CAMERA_INFO else None
        if labels_topic is None:
            candidate = description.get("labels_topic") or f"{prefix}/labels"
            labels_topic = candidate if candidate in topics else None
        else:
            bag.require(labels_topic, (IMAGE,))
        if labels_topic is not None:
            bag.require(labels_topic, (IMAGE,))
        bag.verify()
    return image_topic, msgtype, info_topic, labels_topic, description


def taxonomy_mismatch(description: dict[str, Any], card: Any, labels_topic: str | None) -> None:
    """A bag whose labels use another taxonomy than the model (a synthetic drive and the CamVid model, a CamVid drive
    and the synthetic model) would be scored against the wrong anomaly label: refuse it, naming both."""
    if labels_topic is None:
        return
    names = [c.name for c in card.classes]
    problems = []
    if "anomaly_label" in description and int(description["anomaly_label"]) != card.anomaly_label:
        problems.append(f"anomaly label {description['anomaly_label']} (model: {card.anomaly_label})")
    if description.get("classes") and list(description["classes"]) != names:
        problems.append(f"classes {list(description['classes'])} (model: {names})")
    if problems:
        raise BagError(f"the bag's labels and the model {card.name} disagree: {'; '.join(problems)}; evaluate it with "
                       f"the model of its taxonomy (--model; synthetic drives: {DEFAULT_MODEL})")


# -- the run -------------------------------------------------------------------------------------------------------
def evaluate_bag(opts: EvaluateOptions) -> EvaluateResult:
    from densehybrid_ros.config.model_card import load_model_card

    bag = Path(opts.bag)
    image_topic, image_type, info_topic, labels_topic, description = camera_topics(bag, opts.image_topic,
                                                                                 opts.labels_topic)
    card = load_model_card(opts.model)
    taxonomy_mismatch(description, card, labels_topic)
    params = with_node_parameters(load_detector_params(opts.params), opts.node_parameters)
    # Checked here, not by the node or the player: a node refusing backend_threads waits unconfigured, and the
    # evaluation would wait its whole start-up timeout before saying anything.
    with_node_parameters(params, {"backend_threads": opts.threads}, what="--threads")
    if not 0.01 <= opts.rate <= 100:
        raise BagError(f"--rate must be in [0.01, 100], got {opts.rate}")
    out = Path(opts.out)
    if out.exists() and not opts.force:
        raise BagError(f"{out} exists already (use --force to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        analysis, info = _run(opts, bag, image_topic, image_type, info_topic, labels_topic, description, card,
                              params, staging)
        outputs = staging / "outputs"
        files = write_report(analysis, info, staging, outputs, f"{opts.namespace}/detector/overlay",
                             video=opts.video and opts.image_outputs)
        if out.exists():
            shutil.rmtree(out)
        staging.chmod(0o755)  # mkdtemp makes it private; a report folder is not
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    files = {k: out / v.name for k, v in files.items()}
    return EvaluateResult(analysis, out, files, info)


def _run(opts: EvaluateOptions, bag: Path, image_topic: str, image_type: str, info_topic: str | None,
         labels_topic: str | None, description: dict[str, Any], card: Any, params: Any, staging: Path
         ) -> tuple[Analysis, dict[str, Any]]:
    from densehybrid_ros.bag.live import Recorder, ros_environment
    from densehybrid_ros.ros.node_process import NodeProcess

    env = ros_environment()
    import rclpy
    from rclpy.executors import MultiThreadedExecutor

    ns = opts.namespace.rstrip("/")
    private = f"{ns}/detector"
    compressed = image_type != IMAGE
    node_params: dict[str, Any] = {"model": str(Path(opts.model).resolve()), "qos_reliability": "reliable",
                                   "qos_depth": 10, "backend_threads": opts.threads,
                                   "input_transport": "compressed" if compressed else "raw"}
    if card.tau is None:
        node_params.update(threshold_source="parameter", threshold=0.0)
    node_params.update(opts.node_parameters)
    record = {f"{private}/obstacle_alert": "diagnostic_msgs/msg/DiagnosticArray",
              "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray"}
    if opts.image_outputs:
        if labels_topic is not None:
            for name in ("anomaly_score", "semantic", "open_set"):
                record[f"{private}/{name}"] = IMAGE
        if opts.video:
            record[f"{private}/overlay"] = IMAGE
    with open_bag(bag) as b:
        frames = b.topics[image_topic].count
    node_log = staging / "node.log"
    stamps_csv = staging / "stamps.csv"
    proc = NodeProcess(opts.namespace, node_params, params_file=Path(opts.params), env=env,
                       omp_threads=opts.threads)
    rclpy.init()
    node = rclpy.create_node("densehybrid_bag_evaluate")
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    spinner = threading.Thread(target=_spin, args=(executor,), daemon=True)
    spinner.start()
    recorder = None
    player = None
    t_start = time.monotonic()
    try:
        proc.start()
        recorder = Recorder(node, staging / "outputs", list(record), types=record)
        alert_topic = f"{private}/obstacle_alert"
        end = time.monotonic() + opts.startup_timeout
        while node.count_publishers(alert_topic) == 0:
            if not proc.alive():
                raise BagError(f"the detector node exited before becoming active:\n{proc.output()[-3000:]}")
            if time.monotonic() > end:
                raise BagError(f"the detector node did not become active within {opts.startup_timeout:g} s:\n"
                               f"{proc.output()[-3000:]}")
            time.sleep(0.1)
        input_topic = f"{ns}/image/compressed" if compressed else f"{ns}/image"
        cmd = [sys.executable, "-m", "densehybrid_ros.cli", "bag", "play", str(bag), "--rate", str(opts.rate),
               "--qos", "reliable", "--restamp", "--stamp-log", str(stamps_csv), "--wait-for-subscribers", "30",
               "--topics", image_topic] + ([info_topic] if info_topic else []) + \
              ["--remap", f"{image_topic}:={input_topic}"] + \
              ([f"{info_topic}:={ns}/camera_info"] if info_topic else [])
        player = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                  cwd=Path(__file__).resolve().parents[2])
        _follow(player, recorder, alert_topic, frames, opts)
        player_out = player.stdout.read() if player.stdout else ""
        if player.returncode != 0:
            raise BagError(f"bag play exited with {player.returncode}:\n{player_out[-3000:]}")
        # outputs still in flight: wait until every frame is answered or nothing new arrives for `settle` s
        last_count, last_change = recorder.count(alert_topic), time.monotonic()
        while recorder.count(alert_topic) < frames and time.monotonic() - last_change < opts.settle:
            time.sleep(0.1)
            if recorder.count(alert_topic) != last_count:
                last_count, last_change = recorder.count(alert_topic), time.monotonic()
        time.sleep(1.5)  # one more /diagnostics window with the final drop counters
    finally:
        if player is not None and player.poll() is None:
            player.terminate()
            player.wait(10)
        code, _ = proc.stop()
        node_log.write_text(proc.output() + "\n")
        if recorder is not None:
            recorder.stop()
        executor.shutdown(timeout_sec=5.0)
        node.destroy_node()
        rclpy.try_shutdown()
    wall = time.monotonic() - t_start
    published_times = {(r.topic, r.received_ns): r.published_ns for r in recorder.received}
    truth = truth_for(params, card.anomaly_label, [c.name for c in card.classes]) if labels_topic else None
    analysis = analyse(bag, image_topic, labels_topic, staging / "outputs", private,
                       read_stamp_log(stamps_csv, image_topic), published_times, truth, card.num_classes,
                       params.window_frames)
    info = {"bag": str(bag), "model": str(opts.model), "model_sha": card.sha256, "tau": card.tau,
            "qos": "reliable", "rate": opts.rate, "image_topic": image_topic, "labels_topic": labels_topic,
            "node_parameters": node_params, "wall_seconds": wall, "node_exit_code": code,
            "when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "description": description, "ros_domain_id": os.environ.get("ROS_DOMAIN_ID")}
    return analysis, info


def _spin(executor: Any) -> None:
    try:
        executor.spin()
    except Exception:  # noqa: BLE001 - the context goes down at the end of the run
        pass


def _follow(player: subprocess.Popen, recorder: Any, alert_topic: str, frames: int, opts: EvaluateOptions) -> None:
    from tqdm import tqdm

    with tqdm(total=frames, desc="frames answered", unit="frame", disable=not opts.progress, leave=False) as bar:
        while player.poll() is None:
            bar.n = recorder.count(alert_topic)
            bar.refresh()
            time.sleep(0.2)


def summary_text(result: EvaluateResult) -> str:
    m = result.analysis.metrics
    lat = m["latency_ms"]
    lines = [f"evaluated {result.info['bag']}: {m['frames_with_outputs']}/{m['frames']} frames got outputs "
             f"(drop rate {100 * m['drop_rate']:.1f}%, node drops {m.get('node_drops', {})})"]
    tl = m["alert_timeline"]
    lines.append(f"alert per frame: {tl['states']}   (C clear, W warning, A alert, - no output)")
    if "alert" in m:
        for e in m["alert"]["time_to_alert"]:
            if e["alert_frame"] is None:
                lines.append(f"obstacle entered the corridor at frame {e['entry_frame']} ({e['entry_s']:.2f} s): "
                             f"MISSED (no ALERT with a region on it in its {e['frames_in_corridor']} frames)")
            else:
                lines.append(f"obstacle entered the corridor at frame {e['entry_frame']} ({e['entry_s']:.2f} s); "
                             f"ALERT on it at frame {e['alert_frame']}: time to alert {e['frames']} frames = "
                             f"{e['seconds']:.2f} s" + (" (an alert was already standing when it entered)"
                                                        if e["raised_before_entry"] else ""))
        al = m["alert"]
        lines.append(f"away from obstacles ({al['clean_seconds']:.1f} s): {al['false_alerts']} false alerts, "
                     f"{al['false_warnings']} warnings")
    sp = lat.get("stamp_to_publish", {})
    if sp:
        lines.append(f"stamp to publish: p50 {sp['p50']:.0f} ms, p90 {sp['p90']:.0f} ms, max {sp['max']:.0f} ms")
    ap = lat.get("arrival_to_publish_node_windows", {})
    if ap:
        lines.append(f"arrival to publish (node's own windows): median {ap['p50']:.0f} ms")
    if "pixel" in m:
        p = m["pixel"]
        lines.append(f"pixels: AP {100 * p['ap']:.1f}, AUROC {100 * p['auroc']:.1f}, FPR95 {100 * p['fpr95']:.1f} "
                     f"over {p['frames']} frames")
    for s in result.analysis.skipped:
        lines.append(f"skipped: {s}")
    lines.append(f"report {result.files['report']}" + (f", video {result.files['video']}"
                                                        if "video" in result.files else ""))
    return "\n".join(lines)
