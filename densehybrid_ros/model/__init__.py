"""The DenseHybrid network (torch): backbone, ladder decoder, heads, scores and ONNX export. Training side only."""
