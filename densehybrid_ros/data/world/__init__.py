"""Synthetic driving world: numpy + OpenCV scenes from a forward car camera with per-pixel labels and depth.

`render_scene(seed, height, width, condition, layout, anomalies)` renders one frame; `render_sequence(...)`
yields a drive with smooth ego motion through one world. Everything is deterministic from the arguments.
"""
from .anomalies import FAMILIES
from .layouts import LAYOUTS
from .scene import Scene, render_scene
from .sequence import render_sequence

__all__ = ["FAMILIES", "LAYOUTS", "Scene", "render_scene", "render_sequence"]
