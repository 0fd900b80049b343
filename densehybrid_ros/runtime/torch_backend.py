"""Parity/debug backend: the exported graph's maths (model/export.py `ExportWrapper`) run eagerly in PyTorch.

Not for vehicles: it needs torch (imported here lazily, so importing runtime/ never pulls it in). It answers "is a
difference the runtime's or the model's?" and gives the benchmark its eager-PyTorch baseline.

Where the weights come from, first match wins:
1. `model=` an in-memory DenseHybridNet (tests, benchmark);
2. `checkpoint=` a training checkpoint (docs/DEVELOPING.md), loaded with weights_only=True;
3. the checkpoint named in the card (`training.checkpoint`, relative to the working directory or the card);
4. an untrained export (`training.untrained` + `training.seed`): the network is rebuilt with the same seed,
   which reproduces the exported weights exactly (cli/export.py seeds torch before building).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from densehybrid_ros.config.model_card import ModelCard
from densehybrid_ros.core.types import SegmentationResult
from densehybrid_ros.runtime.base import Backend, BackendOptions, ModelLoadError

DEVICES = ("cpu", "cuda")


@dataclass
class TorchOptions(BackendOptions):
    """device: cpu or cuda. threads: torch intra-op threads (process-wide in torch), None leaves torch's setting."""

    device: str = "cpu"
    threads: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.device.split(":")[0] not in DEVICES:
            raise ValueError(f"device={self.device!r} is not one of {', '.join(DEVICES)} (optionally cuda:N)")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or not 1 <= self.threads <= 64):
            raise ValueError(f"threads must be an integer in [1, 64] or None, got {self.threads!r}")


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, card: ModelCard, options: TorchOptions | None = None, *, checkpoint: str | Path | None = None,
                 model: Any = None) -> None:
        options = options or TorchOptions()
        super().__init__(card, options)
        try:
            import torch
        except ImportError as e:
            raise RuntimeError("torch backend not available: torch is not installed (it is a training "
                               "dependency; use backend='onnxruntime' on vehicles)") from e
        from densehybrid_ros.model.export import export_wrapper, wrapper_options

        self._torch = torch
        if options.threads is not None:
            torch.set_num_threads(options.threads)
        if options.device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"torch backend: device {options.device!r} requested but CUDA is not available")
        self._device = torch.device(options.device)
        net, self.weights_source = self._load_network(card, checkpoint, model)
        if net.num_classes != card.num_classes:
            raise ModelLoadError(f"{self.weights_source}: network has K={net.num_classes} classes, the card "
                                 f"{card.card_path} has K={card.num_classes}")
        outputs = set(card.outputs)
        if "anomaly_score" not in outputs:
            raise ModelLoadError(f"card {card.card_path} describes a semantic-only graph (outputs {card.outputs}); "
                                 "the detector needs an anomaly score")
        # The card says how the graph was exported (class upsampling included), so both backends run the same maths.
        self._wrapper = export_wrapper(net, **wrapper_options(card)).to(self._device)
        self._warm_up()

    @property
    def wrapper(self):
        """The eval-mode torch module with the exported graph's maths."""
        return self._wrapper

    def _load_network(self, card: ModelCard, checkpoint: str | Path | None, model: Any):
        from densehybrid_ros.model.densehybrid import build_model, load_network_checkpoint

        if model is not None:
            return model.eval(), "in-memory model"
        training = card.training or {}
        if checkpoint is None and training.get("checkpoint"):
            named = Path(str(training["checkpoint"]))
            candidates = [named] if named.is_absolute() else [named, card.model_path().parent / named]
            checkpoint = next((c for c in candidates if c.is_file()), None)
            if checkpoint is None:
                raise FileNotFoundError(f"torch backend: checkpoint {named} named by {card.card_path} was not "
                                        f"found (looked in {', '.join(map(str, candidates))}); pass checkpoint=")
        if checkpoint is not None:
            net, _ = load_network_checkpoint(checkpoint)  # torch.load(weights_only=True); errors name the file
            return net, str(checkpoint)
        if training.get("untrained") and "seed" in training and "network_config" in training:
            self._torch.manual_seed(int(training["seed"]))
            return build_model(training["network_config"]).eval(), f"untrained network seed {training['seed']}"
        raise ModelLoadError(f"torch backend: card {card.card_path} names no checkpoint and is not an untrained "
                             "export; pass checkpoint= (a training checkpoint) or model=")

    def _run(self, rgb: np.ndarray) -> SegmentationResult:
        torch = self._torch
        # from_numpy shares memory and warns on read-only arrays (camera buffers often are); the model never
        # writes to its input, but copy those few frames rather than silence a warning globally.
        x = torch.from_numpy(rgb if rgb.flags.writeable else rgb.copy())[None].to(self._device)
        with torch.inference_mode():
            out = dict(zip(self._wrapper.output_names, self._wrapper(x)))
        as_np = {k: v[0].cpu().numpy() for k, v in out.items()}
        return SegmentationResult(
            class_id=as_np["class_id"],
            anomaly_score=as_np["anomaly_score"].astype(np.float32, copy=False),
            confidence=as_np["confidence"],
            logits=as_np.get("logits"),
            ood_logit=as_np.get("ood_logit"),
        )

    def close(self) -> None:
        super().close()
        self._wrapper = None
