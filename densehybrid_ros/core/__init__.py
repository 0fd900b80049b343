"""Vehicle-side maths: scores, open-set fusion, obstacle alert, colouring and overlay, result types, settings checks.

The bottom layer (docs/ARCHITECTURE.md section 2): numpy and OpenCV only, no torch, no rclpy, and nothing else from
this project, so the node on a vehicle and every offline tool share the same code.
"""
