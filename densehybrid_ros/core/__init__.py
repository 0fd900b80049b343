"""Vehicle-side maths: scores, open-set fusion, obstacle alert, colouring. numpy only: no torch, no rclpy."""
