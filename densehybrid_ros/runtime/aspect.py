"""Aspect ratio of camera frames against a fixed-size graph.

A backend resizes a frame to its graph's fixed input size in one `cv2.resize` (runtime/base.py): a frame whose
aspect ratio matches the graph's (CamVid's 360x480 into a 384x512 graph) is scaled uniformly; any other is
stretched along one axis (a 16:9 camera into a 4:3 graph), with no padding or cropping. Objects then look
narrower or taller than in training, which the segmenter does not expect, so a stretch must be visible to the
operator rather than silent.
"""
from __future__ import annotations

from fractions import Fraction

# Relative difference between the two width/height ratios below which a resize counts as uniform: 360x480 and
# 384x512 are both exactly 4:3; 1080x1920 against 1088x1920 (a driver padding rows to a multiple of 16) is 0.7%.
STRETCH_TOLERANCE = 0.01


def aspect_name(height: int, width: int) -> str:
    """'4:3' for 360x480 (rows x columns), '16:9' for 1080x1920; a ratio that reduces to no small fraction is
    given as a decimal ('1.79:1')."""
    ratio = Fraction(int(width), int(height))
    small = ratio.limit_denominator(32)
    if small == ratio:
        return f"{small.numerator}:{small.denominator}"
    return f"{float(ratio):.2f}:1"


def stretch_factor(frame_size: tuple[int, int], graph_size: tuple[int, int]) -> float:
    """How much the resize to the graph widens the frame relative to its height (1.0: uniform scale; 1.5: a 16:9
    frame in a 4:3 graph is narrowed, so < 1; a 4:3 frame in a 2:1 graph is widened 1.5x)."""
    (fh, fw), (gh, gw) = frame_size, graph_size
    return (gw / fw) / (gh / fh)


def stretch_warning(frame_size: tuple[int, int], graph_size: tuple[int, int] | None,
                    tolerance: float = STRETCH_TOLERANCE) -> str:
    """'' when a frame of frame_size=(H, W) reaches the graph by a uniform scale (or the graph takes any size: None);
    otherwise one sentence naming both sizes and aspects and the distortion."""
    if graph_size is None or tuple(frame_size) == tuple(graph_size):
        return ""
    factor = stretch_factor(frame_size, graph_size)
    if abs(factor - 1.0) <= tolerance:
        return ""
    (fh, fw), (gh, gw) = frame_size, graph_size
    how = f"widened {factor:.2f}x" if factor > 1.0 else f"narrowed to {factor:.2f} of their width"
    return (f"frames {fw}x{fh} ({aspect_name(fh, fw)}) are stretched to the model's {gw}x{gh} input "
            f"({aspect_name(gh, gw)}): objects are {how} relative to their height; use a model exported at the "
            f"camera's aspect (densehybrid export --height/--width) or crop the frames to {aspect_name(gh, gw)}")
