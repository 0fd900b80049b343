"""Write docs/overlay_example.png: the node's own ~/overlay for one camera frame, received over DDS.

    python -m densehybrid_ros.ros.overlay_example --image FRAME.png --out docs/overlay_example.png [--model m.onnx]
    python -m densehybrid_ros.ros.overlay_example --out docs/synthetic_overlay.png      # a synthetic-world frame

A real DetectorNode and a probe node run in this process; the probe publishes the frame a few times, so the alert
hysteresis has frames to count, and saves the overlay the node publishes. Which model, explicitly:
- `--image` (a real camera frame, e.g. a CamVid test frame with a held-out object pasted by `densehybrid camvid
  anomaly-benchmark`): the model the node runs by default (an empty `model` parameter, DEFAULT_MODEL_NAME), at the
  frame's own size;
- no `--image`: a frame of the synthetic world (data/world render_scene, an anomaly on the road) served by the
  synthetic-world model, models/densehybrid_lite0_synthetic.onnx, whatever the node's default is.
A calibrated model uses its card's tau. With no such model an untrained one is exported; an uncalibrated model gets
tau at the frame's own 99th score percentile (the picture then shows the drawing, not detection quality).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from std_msgs.msg import Header

from densehybrid_ros.ros.conversions import image_to_rgb, numpy_to_image
from densehybrid_ros.config.validation import ConfigError
from densehybrid_ros.ros.detector_node import resolve_model_path
from densehybrid_ros.ros.testing import detector_with_probe, export_untrained_model, wait_for

# The synthetic world's frames need the model trained on its 14 classes, not the node's default.
SYNTHETIC_MODEL = Path(__file__).resolve().parents[2] / "models" / "densehybrid_lite0_synthetic.onnx"


def read_frame(path: Path) -> np.ndarray:
    """An RGB frame from an image file, with an error naming the file."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ConfigError(f"--image {path}: not a readable image file")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def default_model_for(image_path: Path | None) -> Path | None:
    """The model a frame needs when --model is not given (None: none shipped; an untrained one is exported)."""
    if image_path is None:
        return SYNTHETIC_MODEL if SYNTHETIC_MODEL.is_file() else None
    try:
        return resolve_model_path("")  # the node's default, as its empty `model` parameter finds it
    except ConfigError:
        return None


def render_overlay(out: Path, model: Path | None, seed: int, height: int, width: int, frames: int = 4,
                   image_path: Path | None = None) -> dict:
    from densehybrid_ros.data.world.scene import render_scene
    from densehybrid_ros.runtime import create_backend

    if image_path is not None:
        image = read_frame(image_path)
        height, width = image.shape[:2]
    else:
        image = render_scene(seed, height, width, anomalies=1).image
    tmp = None
    params = {"backend_threads": 1}
    if model is None:
        model = default_model_for(image_path)
    if model is None:
        tmp = tempfile.TemporaryDirectory()
        model = export_untrained_model(Path(tmp.name) / "untrained.onnx", height, width)
    with create_backend(str(model), threads=1) as backend:
        if backend.card.tau is None:  # uncalibrated: no threshold to take from the card
            score = backend.infer(image).anomaly_score
            params.update(threshold_source="parameter", threshold=float(np.percentile(score, 99.0)))
    params["model"] = str(model)
    try:
        with detector_with_probe("/example", params, "overlay_example_probe") as (node, probe):
            last = None
            for i in range(frames):
                header = Header(frame_id="camera")
                header.stamp = probe.get_clock().now().to_msg()
                stamp_ns = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
                # Re-sent until served (the camera QoS is best effort); up to a minute, since a 512x1024 frame can
                # take 20 s on a loaded 2-core machine.
                for _ in range(10):
                    probe.image_pub.publish(numpy_to_image(image, "rgb8", header))
                    last = wait_for(lambda: probe.stamped(stamp_ns, "overlay"), 6.0)
                    if last is not None:
                        break
                if last is None:
                    raise RuntimeError(f"no overlay for frame {i}")
            rgb = image_to_rgb(last)  # honours the message step, unlike a bare reshape
            out.parent.mkdir(parents=True, exist_ok=True)
            partial = out.with_name(out.stem + ".partial" + out.suffix)  # never a half-written picture under `out`
            cv2.imwrite(str(partial), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            os.replace(partial, out)
            return {"model": str(model), "tau": node.current_tau(), "size": (last.width, last.height)}
    finally:
        if tmp is not None:
            tmp.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/overlay_example.png"))
    parser.add_argument("--image", type=Path, default=None,
                        help="a camera frame (PNG/JPEG) served at its own size; default: a synthetic-world frame")
    parser.add_argument("--model", type=Path, default=None,
                        help="default: with --image the node's default model, without it the synthetic-world model "
                             "(models/densehybrid_lite0_synthetic.onnx); else an untrained export")
    parser.add_argument("--seed", type=int, default=8,
                        help="synthetic frame: render_scene seed (default 8: a cardboard box on the lane ahead)")
    parser.add_argument("--height", type=int, default=256, help="synthetic frame height")
    parser.add_argument("--width", type=int, default=512, help="synthetic frame width")
    args = parser.parse_args(argv)
    try:
        info = render_overlay(args.out, args.model, args.seed, args.height, args.width, image_path=args.image)
    except ConfigError as e:
        print(f"overlay_example: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({info['size'][0]}x{info['size'][1]}) with model {info['model']}, tau {info['tau']:.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
