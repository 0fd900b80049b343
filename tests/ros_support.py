"""Test-only message builders (imported by the tests as `ros_support`; pytest puts tests/ on sys.path).

The product's encoders live in densehybrid_ros/ros/conversions.py (`numpy_to_image`, and `rgb_to_encoding` /
`rgb_to_compressed`, which the camera_stream tool publishes with); what only tests need lives here.
"""
from __future__ import annotations

import signal
import subprocess

import numpy as np
from sensor_msgs.msg import Image


def pad_rows(msg: Image, padding: int, fill: int = 0) -> Image:
    """`msg` with `padding` bytes of `fill` added after every row and `step` grown to match, as some camera drivers
    send: readers must honour `step`, and the padding must never reach an output."""
    if padding <= 0:
        return msg
    rows = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)
    padded = np.concatenate([rows, np.full((msg.height, padding), fill, np.uint8)], axis=1)
    msg.step = int(padded.shape[1])
    msg.data = padded.tobytes()
    return msg


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGINT) -> str:
    """Send `sig` (what Ctrl-C sends first) to a node process started with stdout piped as text; its output.
    Killed if still alive after 30 s."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out
