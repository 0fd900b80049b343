"""Write docs/overlay_example.png: the node's own ~/overlay for a synthetic frame, received over DDS.

    python -m densehybrid_ros.ros.overlay_example --out docs/overlay_example.png [--model models/x.onnx]

A real DetectorNode and a probe node run in this process; the probe publishes a frame of the synthetic world
(data/world render_scene, with an anomaly on the road) a few times, so the alert hysteresis has frames to count,
and saves the overlay the node publishes. With the shipped model (models/*.onnx, calibrated) the card's tau is used.
With no shipped model, an untrained model is exported and tau is set to the frame's own 99th score percentile
(an untrained model has no calibrated threshold; the picture then shows the drawing, not detection quality).
"""
from __future__ import annotations

import argparse
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


def render_overlay(out: Path, model: Path | None, seed: int, height: int, width: int, frames: int = 4) -> dict:
    from densehybrid_ros.data.world.scene import render_scene
    from densehybrid_ros.runtime import create_backend

    image = render_scene(seed, height, width, anomalies=1).image
    tmp = None
    params = {"backend_threads": 1}
    if model is None:
        try:
            model = resolve_model_path("")  # the shipped model, as the node's empty `model` parameter finds it
        except ConfigError:
            model = None
    if model is None:
        tmp = tempfile.TemporaryDirectory()
        model = export_untrained_model(Path(tmp.name) / "untrained.onnx", height, width)
        score = create_backend(str(model), threads=1).infer(image).anomaly_score
        params.update(threshold_source="parameter", threshold=float(np.percentile(score, 99.0)))
    params["model"] = str(model)
    try:
        with detector_with_probe("/example", params, "overlay_example_probe") as (node, probe):
            last = None
            for i in range(frames):
                header = Header(frame_id="camera")
                header.stamp = probe.get_clock().now().to_msg()
                stamp_ns = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
                for _ in range(10):
                    probe.image_pub.publish(numpy_to_image(image, "rgb8", header))
                    last = wait_for(lambda: probe.stamped(stamp_ns, "overlay"), 2.0)
                    if last is not None:
                        break
                if last is None:
                    raise RuntimeError(f"no overlay for frame {i}")
            rgb = image_to_rgb(last)  # honours the message step, unlike a bare reshape
            out.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            return {"model": str(model), "tau": node.current_tau(), "size": (last.width, last.height)}
    finally:
        if tmp is not None:
            tmp.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/overlay_example.png"))
    parser.add_argument("--model", type=Path, default=None, help="default: the shipped model, else untrained")
    parser.add_argument("--seed", type=int, default=8,
                        help="render_scene seed (default 8: a cardboard box on the lane ahead)")
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=512)
    args = parser.parse_args(argv)
    info = render_overlay(args.out, args.model, args.seed, args.height, args.width)
    print(f"wrote {args.out} ({info['size'][0]}x{info['size'][1]}) with model {info['model']}, tau {info['tau']:.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
