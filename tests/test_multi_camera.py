"""One node serving several cameras with one batched inference (ros/multi_camera_node.py, runtime/batch.py).

- The batch graph (runtime/batch_graph.py) gives every frame of a batch what the original graph gives it alone,
  frames of different sizes included; the single-camera backend runs it unchanged; a fixed-batch graph is refused
  by the batch backend with the command that makes the batch copy.
- The node in its own process over real DDS (params/dds.env via tests/conftest.py), four cameras of which one
  never publishes: each camera's outputs carry that camera's frame header and size and equal the single-frame
  outputs; a camera that stops publishing does not stop the others.
No timing assertions: waits are bounded only so that a broken node fails instead of hanging.
"""
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ros_support import stop_process

from densehybrid_ros.config.multi_camera import MultiCameraConfig
from densehybrid_ros.config.validation import ConfigError
from densehybrid_ros.ros.camera_stream import synthetic_rgb
from densehybrid_ros.ros.latest_frames import LatestFrames
from densehybrid_ros.runtime import create_backend
from densehybrid_ros.runtime.base import ModelLoadError
from densehybrid_ros.runtime.batch import OnnxRuntimeBatchBackend
from densehybrid_ros.runtime.batch_graph import write_batch_graph

ROOT = Path(__file__).resolve().parents[1]
MODEL_H, MODEL_W = 64, 128
SCORE_ATOL = 1e-4  # batched convolutions accumulate in another order than single ones
# Frame sizes (H, W) per camera: the graph's size, larger (shrunk to it) and smaller (enlarged to it).
SIZES = {"cam_a": (64, 128), "cam_b": (90, 160), "cam_c": (48, 100)}
SILENT = "cam_d"  # configured, never publishes
RUN = os.getpid()


@pytest.fixture(scope="module")
def models(untrained_model, tmp_path_factory):
    """(single-frame graph, its batch copy) of one untrained network."""
    single = untrained_model(MODEL_H, MODEL_W)
    batch = write_batch_graph(single, tmp_path_factory.mktemp("batch") / "untrained_batch.onnx").model
    return single, batch


def frame(camera: str, index: int) -> np.ndarray:
    h, w = SIZES[camera]
    return synthetic_rgb(h, w, index + 3 * sorted(SIZES).index(camera))


def assert_same_result(got, want, what: str) -> None:
    assert got.class_id.shape == want.class_id.shape, what
    assert np.array_equal(got.class_id, want.class_id), what
    np.testing.assert_allclose(got.anomaly_score, want.anomaly_score, atol=SCORE_ATOL, err_msg=what)
    np.testing.assert_allclose(got.confidence, want.confidence, atol=SCORE_ATOL, err_msg=what)


# -- the batch graph and backend ------------------------------------------------------------------------------------
def test_a_batch_gives_each_frame_the_outputs_the_original_graph_gives_it_alone(models):
    single, batch = models
    frames = [frame(c, 0) for c in SIZES] + [frame("cam_a", 1)]
    with create_backend(single, threads=1) as alone, _load(batch) as together:
        results = together.infer_batch(frames)
        assert len(results) == len(frames)
        for i, (rgb, result) in enumerate(zip(frames, results)):
            assert result.class_id.shape == rgb.shape[:2]
            assert_same_result(result, alone.infer(rgb), f"frame {i} ({rgb.shape[1]}x{rgb.shape[0]}) in a batch of "
                                                         f"{len(frames)}")
        # And one at a time through the batch graph: the batch size changes nothing.
        assert_same_result(together.infer_batch(frames[1:2])[0], results[1], "batch of 1")


def _load(model: Path):
    from densehybrid_ros.runtime import resolve_card
    from densehybrid_ros.runtime.onnxruntime_backend import OnnxRuntimeOptions

    return OnnxRuntimeBatchBackend(resolve_card(model), OnnxRuntimeOptions(threads=1))



@pytest.fixture(scope="module")
def dynamic_batch(untrained_model, tmp_path_factory):
    single = untrained_model(MODEL_H, MODEL_W, dynamic=True)
    return write_batch_graph(single, tmp_path_factory.mktemp("dynamic_batch") / "dynamic_batch.onnx").model


def test_a_frame_the_graph_cannot_take_is_found_before_it_fails_a_batch(dynamic_batch):
    from densehybrid_ros.runtime.base import InputError

    tiny, good = synthetic_rgb(16, 16, 0), frame("cam_b", 0)
    with _load(dynamic_batch) as together:
        together.check_frame(good)
        with pytest.raises(InputError, match=r"image size 16x16 is outside the valid range"):
            together.check_frame(tiny)
        with pytest.raises(InputError, match="RGB"):
            together.check_frame(good[..., 0])
        # infer_batch refuses the whole batch for one such frame: the node checks each frame first.
        with pytest.raises(InputError):
            together.infer_batch([good, tiny])


def test_the_single_camera_backend_runs_the_batch_graph_with_the_same_outputs(models):
    single, batch = models
    rgb = frame("cam_b", 0)
    with create_backend(single, threads=1) as original, create_backend(batch, threads=1) as batched:
        assert_same_result(batched.infer(rgb), original.infer(rgb), "batch graph through Backend.infer")


def test_the_batch_backend_refuses_a_fixed_batch_graph_naming_the_command(models):
    single, _ = models
    with pytest.raises(ModelLoadError, match=r"fixed batch of 1.*densehybrid batch-graph --model"):
        _load(single)


def test_batch_graph_refuses_to_overwrite_and_records_its_source(models, tmp_path):
    single, batch = models
    with pytest.raises(ConfigError, match="exists; pass --force"):
        write_batch_graph(single, batch)
    from densehybrid_ros.runtime import resolve_card

    card, source = resolve_card(batch), resolve_card(single)
    assert card.training["batch_graph"]["source_sha256"] == source.sha256
    assert card.sha256 != source.sha256 and card.classes == source.classes and card.tau == source.tau


# -- configuration and the per-camera mailbox -----------------------------------------------------------------------
@pytest.mark.parametrize("cameras", [[], ["front", "front"], ["1st"], ["/front"], "front", ["a"] * 17, [3]])
def test_invalid_cameras_are_refused_with_the_valid_form(cameras):
    with pytest.raises(ConfigError, match=r"parameter 'cameras'.*cameras:=\[front, rear\]"):
        MultiCameraConfig.from_values({"cameras": cameras})


def test_valid_cameras_and_topics_are_accepted():
    config = MultiCameraConfig.from_values({"cameras": ["front", "cameras/rear_left"],
                                            "camera_image_topic": "color/image_raw"})
    assert config.cameras == ("front", "cameras/rear_left") and config.camera_image_topic == "color/image_raw"
    with pytest.raises(ConfigError, match="camera_info_topic"):
        MultiCameraConfig.from_values({"camera_info_topic": "/abs"})


def test_the_shipped_multi_camera_params_file_is_valid():
    import yaml

    values = yaml.safe_load((ROOT / "params" / "multi_camera.yaml").read_text())["/**"]["ros__parameters"]
    assert MultiCameraConfig.from_values(values) == MultiCameraConfig()


def test_latest_frames_keeps_one_frame_per_camera_and_hands_back_what_it_replaces():
    slots = LatestFrames()
    assert slots.put("front", 1) is None
    assert slots.put("rear", 2) is None
    assert slots.put("front", 3) == 1           # front's older frame, never rear's
    assert slots.take_all(timeout=0) == {"front": 3, "rear": 2}
    assert slots.take_all(timeout=0) == {}      # nothing waits for an empty camera
    slots.put("rear", 4)
    assert slots.close() == {"rear": 4}
    assert slots.take_all(timeout=0) == {}


# -- the node in its own process ------------------------------------------------------------------------------------
def _start_node(ns: str, model: Path, cameras) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "densehybrid_ros.ros.multi_camera_node", "--ros-args",
           "--params-file", str(ROOT / "params" / "detector.yaml"), "-r", f"__ns:={ns}",
           "-p", f"model:={model}", "-p", f"cameras:=[{', '.join(cameras)}]", "-p", "camera_image_topic:=image",
           "-p", "qos_reliability:=reliable", "-p", "threshold_source:=parameter", "-p", "threshold:=-2.95",
           "-p", "backend_threads:=1", "-p", "use_camera_info:=false", "-p", "diagnostics_period:=0.5"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})


@contextlib.contextmanager
def _running_node(ns: str, model: Path, cameras, outputs=()):
    """The multi-camera node in its own process and one probe per camera; yields (probes, proc, run) and fills
    run["log"] once the node has stopped (cleanly: exit 0, no traceback, the bounded shutdown)."""
    from densehybrid_ros.ros.testing import Probe, Spinner, wait_for

    proc = _start_node(ns, model, cameras)
    probes = {c: Probe(detector_ns=f"{ns}/{c}", name=f"probe{ns.replace('/', '_')}_{c}", reliable_input=True,
                       outputs=outputs) for c in cameras}
    spinner = Spinner(*probes.values())
    run = {"log": ""}
    try:
        up = wait_for(lambda: proc.poll() is not None or all(p.connected() for p in probes.values()), 120.0)
        if proc.poll() is not None or not up:
            raise AssertionError(f"the multi-camera node did not come up:\n{stop_process(proc)}")
        yield probes, proc, run
    finally:
        spinner.stop()
        run["log"] = log = stop_process(proc)
        for p in probes.values():
            p.destroy_node()
        assert proc.returncode == 0 and "Traceback" not in log, log
        assert "shutdown done" in log, log  # the detector's bounded stop, not the watchdog cutting a step short


@pytest.fixture(scope="module")
def node_and_probes(models, ros):
    _, batch = models
    ns = f"/mc_{RUN}"
    with _running_node(ns, batch, [*SIZES, SILENT], outputs=("anomaly_score",)) as (probes, proc, _):
        yield ns, probes, proc


def _latest_statuses(probe) -> dict[str, dict[str, str]]:
    """Status name -> the values of its latest /diagnostics status the probe received."""
    from densehybrid_ros.ros.testing import status_values

    out = {}
    for msg in probe.messages("diagnostics"):
        for st in msg.status:
            out[st.name] = status_values(st)
    return out


def _publish(probe, rgb: np.ndarray, frame_id: str, stamp_ns: int) -> None:
    from densehybrid_ros.ros.conversions import numpy_to_image

    msg = numpy_to_image(rgb, "rgb8")
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    probe.image_pub.publish(msg)


def _stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def test_each_camera_gets_its_own_header_size_and_single_frame_outputs(node_and_probes, models):
    from densehybrid_ros.ros import alert_message
    from densehybrid_ros.ros.testing import wait_for

    ns, probes, proc = node_and_probes
    sent = {}
    base = 1_700_000_000_000_000_000
    for i, camera in enumerate(SIZES):  # back to back, so the node can batch them
        sent[camera] = (f"{camera}_optical_0", base + 1_000_000 * (i + 1))
        _publish(probes[camera], frame(camera, 0), *sent[camera])

    def answered(camera):
        p = probes[camera]
        return p.stamped(sent[camera][1], "obstacle_alert") is not None and \
            p.stamped(sent[camera][1], "anomaly_score") is not None
    assert wait_for(lambda: all(answered(c) for c in SIZES), 60.0), \
        {c: len(probes[c].messages("obstacle_alert")) for c in SIZES}

    single, _ = models
    with create_backend(single, threads=1) as alone:
        for camera, (frame_id, stamp) in sent.items():
            p = probes[camera]
            h, w = SIZES[camera]
            # Only this camera's frame was answered on its topics, with its header.
            assert [(m.header.frame_id, _stamp_ns(m)) for m in p.messages("anomaly_score")] == [(frame_id, stamp)]
            assert [(m.header.frame_id, _stamp_ns(m)) for m in p.messages("obstacle_alert")] == [(frame_id, stamp)]
            score_msg = p.messages("anomaly_score")[0]
            assert (score_msg.height, score_msg.width) == (h, w)
            report = alert_message.parse_alert(p.messages("obstacle_alert")[0])
            assert (report.image_height, report.image_width) == (h, w)
            assert score_msg.encoding == "32FC1"
            rows = np.frombuffer(bytes(score_msg.data), np.float32).reshape(h, score_msg.step // 4)
            score = rows[:, :w]
            np.testing.assert_allclose(score, alone.infer(frame(camera, 0)).anomaly_score, atol=SCORE_ATOL,
                                       err_msg=camera)
    assert not probes[SILENT].messages("obstacle_alert")


def test_a_camera_that_stops_publishing_does_not_stop_the_others(node_and_probes):
    from densehybrid_ros.ros.testing import wait_for

    ns, probes, proc = node_and_probes
    live, stalled = ("cam_a", "cam_b"), "cam_c"
    before = {c: len(probes[c].messages("obstacle_alert")) for c in SIZES}
    base = 1_700_000_100_000_000_000
    rounds = 5
    for r in range(rounds):  # cam_c (and cam_d) publish nothing from here on
        stamps = {}
        for i, camera in enumerate(live):
            stamps[camera] = base + 1_000_000_000 * r + 1_000_000 * i
            _publish(probes[camera], frame(camera, r), f"{camera}_optical_r{r}", stamps[camera])
        # Each round is answered for both live cameras before the next is sent, so none is superseded.
        assert wait_for(lambda: all(probes[c].stamped(stamps[c], "obstacle_alert") for c in live), 60.0), \
            f"round {r}: {[(c, len(probes[c].messages('obstacle_alert'))) for c in live]}"
    for camera in live:
        assert len(probes[camera].messages("obstacle_alert")) == before[camera] + rounds
    assert len(probes[stalled].messages("obstacle_alert")) == before[stalled]
    assert not probes[SILENT].messages("obstacle_alert")

    # /diagnostics: one status per camera, named like a detector node in the camera's namespace, counting that
    # camera's frames only.
    expected = {c: 0 if c == SILENT else (1 if c == stalled else 1 + rounds) for c in (*SIZES, SILENT)}

    def latest():
        return _latest_statuses(probes["cam_a"])

    def counted():
        out = latest()
        names = {c: f"{ns}/{c}/detector: detector" for c in expected}
        return all(n in out and out[n].get("frames_out_total") == str(expected[c]) for c, n in names.items())
    assert wait_for(counted, 20.0), {k: v.get("frames_out_total") for k, v in latest().items()}
    values = latest()
    for camera in expected:
        assert values[f"{ns}/{camera}/detector: detector"]["lifecycle_state"] == "active"
    batch = values[f"{ns}/cam_a/detector: detector"]
    assert int(batch["batches_total"]) >= 1
    print(f"batches {batch['batches_total']}, mean size {batch['batch_size_mean']}")


def test_a_camera_sending_frames_the_model_cannot_take_loses_only_its_own(dynamic_batch, ros):
    """A dynamic-size graph takes sides in [32, 8192]: one camera's 16x16 frames are refused for that camera alone,
    counted once each, and the camera batched with it is served every round."""
    from densehybrid_ros.ros.testing import wait_for

    ns = f"/mc_dyn_{RUN}"
    rounds = 3
    with _running_node(ns, dynamic_batch, ("cam_tiny", "cam_ok")) as (probes, proc, run):
        base = 1_700_000_200_000_000_000
        for r in range(rounds):
            stamp = base + 1_000_000_000 * r
            _publish(probes["cam_tiny"], synthetic_rgb(16, 16, r), "tiny_optical", stamp)  # back to back:
            _publish(probes["cam_ok"], frame("cam_a", r), "ok_optical", stamp + 1)        # one batch
            assert wait_for(lambda: probes["cam_ok"].stamped(stamp + 1, "obstacle_alert") is not None, 60.0), \
                f"round {r}: cam_ok was not served"

        def latest():
            return _latest_statuses(probes["cam_ok"])

        tiny, ok = f"{ns}/cam_tiny/detector: detector", f"{ns}/cam_ok/detector: detector"
        assert wait_for(lambda: latest().get(tiny, {}).get("drops.inference_error") == str(rounds) and
                        latest().get(ok, {}).get("frames_out_total") == str(rounds), 20.0), latest()
        values = latest()[tiny]
        assert values["frames_out_total"] == "0" and values["drops_total"] == str(rounds)  # each counted once
        assert "drops.inference_error" not in latest()[ok]
        assert not probes["cam_tiny"].messages("obstacle_alert")
    assert "cam_tiny: frame refused by the model: image size 16x16" in run["log"], run["log"]


def test_the_launch_file_starts_the_installed_multi_detector_with_both_params_files():
    """Checked without launch_ros (not installable from PyPI): the executable it names is a console script of
    setup.py pointing at the node's main, and the params files it defaults to exist."""
    import ast

    tree = ast.parse((ROOT / "launch" / "multi_camera.launch.py").read_text())
    constants = {t.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
                 for t in node.targets if isinstance(t, ast.Name) and isinstance(node.value, ast.Constant)}
    script = f"{constants['NODE_EXECUTABLE']} = densehybrid_ros.ros.multi_camera_node:main"
    assert script in (ROOT / "setup.py").read_text()
    text = (ROOT / "launch" / "multi_camera.launch.py").read_text()
    for params in ("detector.yaml", "multi_camera.yaml"):
        assert f'"{params}"' in text and (ROOT / "params" / params).is_file()


def test_reactivation_starts_every_camera_alert_afresh(models, ros):
    """As the detector: hits from before a deactivate neither complete a raise after activate nor keep it standing.
    In this process (the lifecycle is driven directly); every pixel scores above tau, so every frame is a hit."""
    from rclpy.parameter import Parameter

    from densehybrid_ros.ros import alert_message
    from densehybrid_ros.ros.multi_camera_node import MultiCameraNode
    from densehybrid_ros.ros.testing import Probe, Spinner, wait_for

    _, batch = models
    ns, cameras = f"/mc_pause_{RUN}", ("cam_a", "cam_b")
    params = dict(model=str(batch), cameras=list(cameras), camera_image_topic="image", qos_reliability="reliable",
                  threshold_source="parameter", threshold=-1000.0, backend_threads=1, use_camera_info=False,
                  raise_frames=3, window_frames=5, clear_frames=3)
    node = MultiCameraNode(namespace=ns, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    probes = {c: Probe(detector_ns=f"{ns}/{c}", name=f"probe_pause_{c}", reliable_input=True, outputs=())
              for c in cameras}
    spinner = Spinner(node, *probes.values())
    stamp = [1_700_000_300_000_000_000]

    def states(n):
        out = []
        for _ in range(n):
            stamp[0] += 1_000_000_000
            sent = {}
            for i, c in enumerate(cameras):
                sent[c] = stamp[0] + i
                _publish(probes[c], frame(c, 0), f"{c}_optical", sent[c])
            assert wait_for(lambda: all(probes[c].stamped(sent[c], "obstacle_alert") for c in cameras), 30.0)
            out.append({c: alert_message.parse_alert(probes[c].stamped(sent[c], "obstacle_alert")).state
                        for c in cameras})
        return out

    def pause():
        spinner.remove(node)  # the test thread drives the transitions: no wait set over endpoints being destroyed
        time.sleep(0.3)
        node.trigger_deactivate()
        assert wait_for(lambda: all(p.disconnected() for p in probes.values()), 20.0), "old endpoints stayed"
        node.trigger_activate()
        assert node.lifecycle_state == "active"
        spinner.add(node)
        assert wait_for(lambda: all(p.connected() for p in probes.values()), 20.0), "probes did not reconnect"
        # The graph lists new endpoints before the reliable readers are matched to them: a frame sent at once could
        # be answered into the void, and this test counts frames.
        time.sleep(1.0)
    try:
        assert node.lifecycle_state == "active"
        assert wait_for(lambda: all(p.connected() for p in probes.values()), 20.0), "discovery did not complete"
        assert [s["cam_a"] for s in states(2)] == ["warning", "warning"]
        pause()
        after = states(3)
        assert all([s[c] for s in after] == ["warning", "warning", "alert"] for c in cameras), after
        pause()
        assert states(1)[0]["cam_a"] == "warning"  # the standing alert was not carried over either
    finally:
        spinner.stop()
        node.close()
        node.destroy_node()
        for p in probes.values():
            p.destroy_node()
