"""The report of `densehybrid bag evaluate`: report.md, metrics.json, frames.csv, the alert timeline against ground
truth and the latency histogram (matplotlib), and an overlay video of the node's ~/overlay with the ground truth
written on each frame (MP4 through OpenCV, GIF when OpenCV has no MP4 encoder)."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from densehybrid_ros.bag.analysis import Analysis
from densehybrid_ros.bag.files import image_array, open_bag, stamp_ns

STATE_LEVEL = {"clear": 0, "warning": 1, "alert": 2}


def _f(x: Any, fmt: str = ".1f") -> str:
    return "n/a" if x is None else format(x, fmt)


def write_frames_csv(a: Analysis, path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["frame", "t_s", "stamp_ns", "published_stamp_ns", "truth_in_corridor", "truth_fraction",
                    "state", "corridor_fraction", "stamp_to_publish_ms", "stamp_to_receive_ms"])
        for r in a.frames:
            w.writerow([r.index, f"{r.t:.4f}", r.stamp_ns, r.published_stamp_ns, r.truth_hit, r.truth_fraction,
                        r.state, r.corridor_fraction, r.stamp_to_publish_ms, r.stamp_to_receive_ms])


def plot_timeline(a: Analysis, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.array([f.t for f in a.frames])
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 4.5), sharex=True, gridspec_kw={"height_ratios": [1, 1.3]})
    truth = [f.truth_hit for f in a.frames]
    if any(x is not None for x in truth):
        ax1.fill_between(t, 0, [2.2 if x else 0 for x in truth], step="mid", color="tab:red", alpha=0.15,
                         label="ground truth: obstacle in corridor")
    answered = [(f.t, STATE_LEVEL[f.state]) for f in a.frames if f.state is not None]
    if answered:
        ax1.step([x for x, _ in answered], [y for _, y in answered], where="mid", color="black", label="node state")
        ax1.plot([x for x, _ in answered], [y for _, y in answered], "k.", ms=3)
    missing = [f.t for f in a.frames if f.state is None]
    if missing:
        ax1.plot(missing, [-0.15] * len(missing), "|", color="tab:gray", label="no output (dropped)")
    ax1.set_yticks([0, 1, 2], ["clear", "warning", "ALERT"])
    ax1.set_ylim(-0.3, 2.3)
    ax1.legend(loc="upper left", fontsize=8)
    ax1.set_title("obstacle alert against ground truth")
    if any(f.truth_fraction is not None for f in a.frames):
        ax2.plot(t, [f.truth_fraction or 0.0 for f in a.frames], color="tab:red", label="labelled (truth)")
    ax2.plot([f.t for f in a.frames if f.corridor_fraction is not None],
             [f.corridor_fraction for f in a.frames if f.corridor_fraction is not None], color="black", marker=".",
             ms=3, label="node")
    ax2.set_ylabel("anomalous share\nof the corridor")
    ax2.set_xlabel("bag time (s)")
    ax2.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_latency(a: Analysis, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pub = [f.stamp_to_publish_ms for f in a.frames if f.stamp_to_publish_ms is not None]
    rec = [f.stamp_to_receive_ms for f in a.frames if f.stamp_to_receive_ms is not None]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    if pub or rec:
        hi = max(pub + rec)
        bins = np.linspace(0, hi * 1.05 + 1, 40)
        if pub:
            ax.hist(pub, bins=bins, alpha=0.6, label="stamp to publish (alert)")
        if rec:
            ax.hist(rec, bins=bins, alpha=0.6, label="stamp to receive (alert)")
        ax.legend(fontsize=8)
    ax.set_xlabel("ms")
    ax.set_ylabel("frames")
    ax.set_title("end-to-end latency")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_video(a: Analysis, outputs_bag: Path, overlay_topic: str, out_dir: Path, max_width: int = 960
                ) -> Path | None:
    """The node's overlays at the drive's own pace: one video frame per bag frame, showing the newest overlay the
    node had published for it (a superseded frame shows the previous one, as a display would), with time, ground
    truth and state written on top."""
    frames_by_published = {f.published_stamp_ns: f for f in a.frames}
    overlays: dict[int, np.ndarray] = {}
    with open_bag(outputs_bag) as bag:
        if overlay_topic not in bag.topics:
            return None
        for _, _, _, msg in bag.decoded([overlay_topic]):
            f = frames_by_published.get(stamp_ns(msg.header.stamp))
            if f is None:
                continue
            rgb = image_array(msg)
            if rgb.shape[1] > max_width:
                rgb = cv2.resize(rgb, (max_width, round(rgb.shape[0] * max_width / rgb.shape[1])),
                                 interpolation=cv2.INTER_AREA)
            overlays[f.index] = rgb
    if not overlays:
        return None
    images, shown = [], None
    for f in a.frames:
        if f.index in overlays:
            shown = f.index
        if shown is None:
            continue
        rgb = overlays[shown]
        truth = {None: "no labels", True: "OBSTACLE IN CORRIDOR", False: "corridor clear"}[f.truth_hit]
        node = a.frames[shown].state.upper() + ("" if shown == f.index else f" (frame {shown}, this one superseded)")
        text = f"t {f.t:5.2f} s  frame {f.index}  truth: {truth}  node: {node}"
        bar = np.zeros((28, rgb.shape[1], 3), np.uint8)
        cv2.putText(bar, text, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        images.append(np.concatenate([bar, rgb], 0))
    h, w = images[0].shape[:2]
    fps = max(1.0, min(30.0, a.fps))
    path = out_dir / "overlay.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if writer.isOpened():
        for img in images:
            writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        writer.release()
        if path.is_file() and path.stat().st_size > 0:
            return path
    from PIL import Image as PILImage

    path = out_dir / "overlay.gif"
    pil = [PILImage.fromarray(img).resize((w // 2, h // 2)) for img in images]
    pil[0].save(path, save_all=True, append_images=pil[1:], duration=int(1000 / fps), loop=0)
    return path


def render_markdown(a: Analysis, info: dict[str, Any], files: dict[str, str]) -> str:
    m = a.metrics
    lines = [f"# Evaluation of the node on `{info['bag']}`", ""]
    lines += [f"Model `{info['model']}` (sha256 {info['model_sha'][:12]}, tau {_f(info.get('tau'), '.3f')}), node "
              f"in its own process, frames replayed over DDS ({info['qos']} QoS, rate factor {info['rate']:g}, "
              f"re-stamped at publishing). {info['when']}.", ""]
    if info.get("description"):
        d = info["description"]
        if d.get("tool") == "densehybrid bag make":
            ob = d.get("obstacle")
            lines += [f"Drive: synthetic, {d.get('condition')}, {d.get('layout')}, seed {d.get('seed_used')}, "
                      + (f"obstacle {ob['kind']} ({ob['family']}) entering the corridor at frame "
                         f"{d.get('obstacle_entry_frame')}" if ob else "clean (no obstacle)") + ".", ""]
    lat = m["latency_ms"]
    lines += ["## Delivery and latency", "",
              "| frames | with outputs | drop rate | node drops (cumulative) |", "|---:|---:|---:|---|",
              f"| {m['frames']} | {m['frames_with_outputs']} | {100 * m['drop_rate']:.1f}% | "
              + (", ".join(f"{k} {v}" for k, v in m.get("node_drops", {}).items()) or "none") + " |", ""]
    lines += ["| latency (ms) | p50 | p90 | p99 | max | n |", "|---|---:|---:|---:|---:|---:|"]
    names = {"stamp_to_publish": "stamp to publish (alert)", "stamp_to_receive": "stamp to receive (alert)",
             "arrival_to_publish_node_windows": "arrival to publish (node's window means)",
             "backend_infer_node_windows": "backend inference (node's window means)"}
    for key, label in names.items():
        v = lat.get(key)
        if v:
            lines.append(f"| {label} | {v['p50']:.0f} | {v['p90']:.0f} | {v['p99']:.0f} | {v['max']:.0f} | {v['n']} |")
    lines += ["", f"![latency]({files['latency']})", ""]
    lines += ["## Alert", ""]
    tl = m["alert_timeline"]
    lines += [f"States per frame (C clear, W warning, A alert, - no output): `{tl['states']}`", "",
              "First ALERT: " + ("none" if tl["first_alert_frame"] is None
                                 else f"frame {tl['first_alert_frame']} ({tl['first_alert_s']:.2f} s)") + "; "
              f"alerts raised {tl['alerts_raised']} ({tl['alerts_per_min']:.1f} per minute of drive).", ""]
    if "alert" in m:
        al = m["alert"]
        lines += [f"Ground truth: {al['obstacle_events']} obstacle event(s) (obstacle in the drive corridor by the "
                  f"labels), {al['missed']} missed. Time to alert runs from the entry to the first output in ALERT "
                  f"with a region overlapping the labelled obstacle.", ""]
        if al["time_to_alert"]:
            lines += ["| entry frame | entry (s) | ALERT frame | time to alert (frames) | time to alert (s) | "
                      "frames in corridor | alert standing at entry |", "|---:|---:|---:|---:|---:|---:|---|"]
            for e in al["time_to_alert"]:
                lines.append(f"| {e['entry_frame']} | {e['entry_s']:.2f} | {_f(e['alert_frame'], 'd')} | "
                             f"{_f(e['frames'], 'd')} | {_f(e['seconds'], '.2f')} | {e['frames_in_corridor']} | "
                             f"{'yes' if e['raised_before_entry'] else 'no'} |")
            lines.append("")
        lines += [f"Away from obstacles ({al['clean_seconds']:.1f} s of drive): {al['false_alerts']} false alert(s), "
                  f"{al['false_warnings']} warning(s) ({_f(al['false_alerts_per_min'])} and "
                  f"{_f(al['false_warnings_per_min'])} per minute).", ""]
    lines += [f"![timeline]({files['timeline']})", ""]
    if "pixel" in m or "open_set" in m:
        lines += ["## Pixels (frames that got outputs)", ""]
        if "pixel" in m:
            p = m["pixel"]
            lines += ["| AP | AUROC | FPR95 | anomaly px | inlier px | frames |", "|---:|---:|---:|---:|---:|---:|",
                      f"| {100 * p['ap']:.2f} | {100 * p['auroc']:.2f} | {100 * p['fpr95']:.2f} | "
                      f"{p['anomaly_pixels']} | {p['inlier_pixels']} | {p['frames']} |", ""]
        if "open_set" in m:
            o = m["open_set"]
            pct = lambda x: "n/a" if x is None else f"{100 * x:.2f}"  # noqa: E731
            lines += ["| open-mIoU | closed-set mIoU | anomaly IoU | anomaly recall at tau | inliers flagged at tau |",
                      "|---:|---:|---:|---:|---:|",
                      f"| {pct(o.get('open_miou'))} | {pct(o.get('closed_miou'))} | {pct(o.get('anomaly_iou'))} | "
                      f"{pct(o.get('anomaly_recall_at_tau'))} | {pct(o.get('inlier_flagged_at_tau'))} |", ""]
    if a.skipped:
        lines += ["## Skipped", ""] + [f"- {s}" for s in a.skipped] + [""]
    if files.get("video"):
        lines += [f"Overlay video: [{files['video']}]({files['video']}) (the node's ~/overlay, ground truth on top).",
                  ""]
    lines += ["Files: `metrics.json` (every number), `frames.csv` (per frame), `outputs/` (the recorded outputs, "
              "rosbag2), `stamps.csv` (original and published stamps), `node.log`.", ""]
    return "\n".join(lines)


def write_report(a: Analysis, info: dict[str, Any], out: Path, outputs_bag: Path, overlay_topic: str,
                 video: bool = True) -> dict[str, Path]:
    files = {"timeline": "timeline.png", "latency": "latency.png"}
    plot_timeline(a, out / files["timeline"])
    plot_latency(a, out / files["latency"])
    video_path = write_video(a, outputs_bag, overlay_topic, out) if video else None
    if video_path is not None:
        files["video"] = video_path.name
    write_frames_csv(a, out / "frames.csv")
    (out / "metrics.json").write_text(json.dumps({"info": info, "metrics": a.metrics, "skipped": a.skipped},
                                                 indent=2, sort_keys=True, default=str))
    (out / "report.md").write_text(render_markdown(a, info, files))
    return {k: out / v for k, v in files.items()} | {"report": out / "report.md", "metrics": out / "metrics.json"}
