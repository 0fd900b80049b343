"""`densehybrid export`: a training checkpoint (or an untrained network) -> ONNX graph + model card."""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from densehybrid_ros.core.scores import SCORE_TYPES

HELP = "export a trained checkpoint to ONNX with a model card"


def configure(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="training checkpoint (.pt) to export")
    src.add_argument("--untrained", action="store_true",
                     help="ImageNet backbone + freshly initialised decoder and heads (seeded), for tests and "
                          "node development before a trained model exists")
    parser.add_argument("--out", type=Path, required=True, help="output .onnx path; the card goes beside it")
    parser.add_argument("--height", type=int, default=512, help="input height in pixels [32, 8192] (default 512)")
    parser.add_argument("--width", type=int, default=1024, help="input width in pixels [32, 8192] (default 1024)")
    parser.add_argument("--dynamic", action="store_true",
                        help="dynamic input height and width (--height/--width then only set the trace size)")
    parser.add_argument("--raw-outputs", action="store_true",
                        help="also output logits (1,K,h,w) and ood_logit (1,h,w) at decoder resolution")
    parser.add_argument("--semantic-only", action="store_true",
                        help="class_id + confidence only, without the dataset-posterior head (overhead baseline)")
    parser.add_argument("--score-type", default="hybrid", choices=SCORE_TYPES, help="anomaly score (default hybrid)")
    parser.add_argument("--scoring-resolution", default="decoder", choices=("decoder", "input"),
                        help="score at decoder resolution then upsample (default, cheap), or upsample the K logits "
                             "first (official-style); see docs/EXPORT.md")
    parser.add_argument("--class-upsampling", default="nearest", choices=("nearest", "bilinear"),
                        help="with decoder scoring: class_id = nearest-upsampled decoder argmax (default, cheapest) "
                             "or argmax of bilinearly upsampled logits (exact boundaries, ~+10%% latency)")
    parser.add_argument("--fp16-scores", action="store_true", help="anomaly_score as float16 (computed in float32)")
    parser.add_argument("--name", default=None, help="model name in the card (default: file stem)")
    parser.add_argument("--provenance", type=Path, default=None,
                        help="YAML with the model's data_sources (name, from, used_for, licence) and a training "
                             "summary, written into the card (shipped models: models/provenance/<name>.yaml)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset [17, 23] (default 17)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the decoder/heads for --untrained (default 0)")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="K for --untrained (default: the synthetic taxonomy's 14)")
    parser.add_argument("--decoder-width", type=int, default=128, help="decoder width for --untrained (default 128)")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the check that onnxruntime and torch agree on one frame")


def _plain(x: Any) -> Any:
    """Checkpoint containers -> YAML-safe plain values (tuples to lists; tensors are dropped)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items() if _plain(v) is not _DROP}
    if isinstance(x, (list, tuple)):
        return [v for v in (_plain(v) for v in x) if v is not _DROP]
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return _DROP


_DROP = object()


def _verify(model, out: Path, card, height: int, width: int) -> str:
    import numpy as np
    import onnxruntime as ort
    import torch

    from densehybrid_ros.model.export import export_wrapper

    rng = np.random.default_rng(0)
    # A smooth random image: closer to a photo than per-pixel noise, so the class map has regions.
    small = rng.integers(0, 256, (1, max(height // 16, 2), max(width // 16, 2), 3)).astype(np.float32)
    image = torch.nn.functional.interpolate(torch.from_numpy(small).permute(0, 3, 1, 2), size=(height, width),
                                            mode="bilinear", align_corners=False)
    image = image.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    wrapper = export_wrapper(model, score_type=card.score_type, heads="semantic" if "anomaly_score" not in
                             card.outputs else "densehybrid", scoring_resolution=card.scoring_resolution,
                             score_dtype=card.score_dtype, raw_outputs="logits" in card.outputs,
                             class_upsampling=card.training["export"]["class_upsampling"])
    with torch.no_grad():
        ref = dict(zip(wrapper.output_names, (t.numpy() for t in wrapper(image))))
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"image": image.numpy()})))
    agree = float((got["class_id"] == ref["class_id"]).mean())
    msg = f"onnxruntime vs torch: class agreement {agree:.5f}"
    if "anomaly_score" in got:
        err = float(np.abs(got["anomaly_score"].astype(np.float32) - ref["anomaly_score"].astype(np.float32)).max())
        msg += f", anomaly_score max abs error {err:.2e}"
    return msg


def run(args: argparse.Namespace) -> int:
    import torch

    from densehybrid_ros.config.validation import ConfigError
    from densehybrid_ros.data.taxonomy import SYNTHETIC
    from densehybrid_ros.model.densehybrid import NetworkConfig, build_model, load_network_checkpoint
    from densehybrid_ros.config.model_card import load_provenance
    from densehybrid_ros.model.export import default_taxonomy, export_onnx

    training: dict[str, Any]
    metrics: dict[str, Any] = {}
    try:
        provenance = None if args.provenance is None else load_provenance(args.provenance)
        if args.untrained:
            torch.manual_seed(args.seed)
            k = SYNTHETIC.num_classes if args.num_classes is None else args.num_classes
            model = build_model(NetworkConfig(num_classes=k, decoder_width=args.decoder_width)).eval()
            taxonomy = default_taxonomy(k)
            training = {"untrained": True, "seed": args.seed,
                        "note": "ImageNet EfficientNet-Lite0 backbone; decoder and heads freshly initialised"}
        else:
            model, ckpt = load_network_checkpoint(args.checkpoint)
            taxonomy = ckpt.get("taxonomy")
            training = {"checkpoint": str(args.checkpoint), "step": _plain(ckpt.get("step")),
                        "epoch": _plain(ckpt.get("epoch"))}
            if isinstance(ckpt.get("config"), dict):
                training["config"] = _plain(ckpt["config"])
            if isinstance(ckpt.get("metrics"), dict):
                metrics = _plain(ckpt["metrics"])
        if provenance is not None and provenance.summary:
            training["summary"] = provenance.summary
        t0 = time.perf_counter()
        card = export_onnx(
            model, args.out, height=args.height, width=args.width, dynamic=args.dynamic,
            score_type=args.score_type, raw_outputs=args.raw_outputs,
            heads="semantic" if args.semantic_only else "densehybrid", scoring_resolution=args.scoring_resolution,
            score_dtype="float16" if args.fp16_scores else "float32", taxonomy=taxonomy, name=args.name,
            training=training, metrics=metrics, opset=args.opset, class_upsampling=args.class_upsampling,
            data_sources=None if provenance is None else provenance.data_sources)
    except (ConfigError, ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"densehybrid export: {e}")
        return 1
    size = "dynamic" if card.dynamic_input else f"{card.input_height}x{card.input_width}"
    print(f"wrote {args.out} ({size}, outputs {', '.join(card.outputs)}, sha256 {card.sha256[:12]}...) "
          f"in {time.perf_counter() - t0:.1f} s")
    print(f"wrote {card.card_path}")
    if not args.no_verify:
        print(_verify(model, args.out, card, args.height, args.width))
    return 0
