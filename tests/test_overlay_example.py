"""ros/overlay_example.py: which model serves which frame, and the node's ~/overlay written for a camera frame."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from densehybrid_ros.ros import overlay_example
from densehybrid_ros.ros.detector_node import resolve_model_path

ROOT = Path(__file__).resolve().parents[1]


def test_a_synthetic_frame_gets_the_synthetic_model_and_a_camera_frame_the_nodes_default(tmp_path):
    assert overlay_example.SYNTHETIC_MODEL == ROOT / "models" / "densehybrid_lite0_synthetic.onnx"
    assert overlay_example.default_model_for(None) == overlay_example.SYNTHETIC_MODEL
    assert overlay_example.default_model_for(tmp_path / "frame.png") == resolve_model_path("")


def test_an_unreadable_image_is_refused_naming_it(tmp_path, capsys):
    bad = tmp_path / "frame.png"
    bad.write_bytes(b"not a png")
    assert overlay_example.main(["--image", str(bad), "--out", str(tmp_path / "o.png")]) == 2
    assert f"--image {bad}: not a readable image file" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


def test_a_camera_frame_comes_back_as_the_nodes_overlay_at_its_own_size(tmp_path, untrained_model):
    # A 4:3 frame (CamVid's shape, scaled down) through an uncalibrated 4:3 model: tau from the frame itself.
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), frame)
    out = tmp_path / "overlay.png"
    info = overlay_example.render_overlay(out, untrained_model(96, 128), seed=0, height=0, width=0, frames=1,
                                          image_path=image)
    assert info["size"] == (120, 90)
    written = cv2.imread(str(out))
    assert written.shape == (90, 120, 3)
    assert not np.array_equal(written, frame), "the overlay draws on the frame"
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []
