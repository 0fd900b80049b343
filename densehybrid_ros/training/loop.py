"""The training loop: stage 1 closed-set segmentation (eq. 7), stage 2 DenseHybrid fine-tuning on mixed content
(eq. 15), both with Adam and a cosine schedule (paper 7.4).

Outputs in out_dir: `last.pt` (checkpoint, docs/DEVELOPING.md format), `scalars.csv`, TensorBoard events under
`tb/`, the resolved `config.yaml` and `summary.json`. A checkpoint is written every logging.checkpoint_every steps,
at the end, and when SIGINT/SIGTERM arrives (then the run stops after the current step). `resume=True` continues
from `last.pt` exactly: weights, Adam moments, schedule, RNG states and step; the data need no state because every
sample is a pure function of (seed, step, index) (training/datasets.py). With optim.ema_decay > 0, `ema.pt` holds the
moving average of the weights in the same network-checkpoint format, so `densehybrid export --checkpoint` reads
either file; it is written with last.pt and resumed from it.
"""
from __future__ import annotations

import csv
import json
import math
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from densehybrid_ros.config.training import TrainingConfig
from densehybrid_ros.config.validation import ConfigError
from densehybrid_ros.training import distributed as ddp
from densehybrid_ros.training.datasets import TrainingSamples, step_loader
from densehybrid_ros.training.losses import IGNORE_INDEX, DenseHybridLoss, DenseHybridLossWeights

CHECKPOINT_NAME = "last.pt"
EMA_CHECKPOINT_NAME = "ema.pt"
CSV_FIELDS = ("step", "lr", "loss_total", "loss_class", "loss_dataset_posterior", "loss_likelihood", "loss_eel",
              "loss_distill_class_posterior", "loss_distill_scores", "pixel_accuracy", "p_out_inlier", "p_out_negative", "step_s", "data_s", "elapsed_s")


@dataclass
class TrainResult:
    out_dir: Path
    checkpoint: Path
    start_step: int
    step: int
    total_steps: int
    interrupted: bool
    seconds: float
    last_scalars: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------------------------
# Pieces
# ------------------------------------------------------------------------------------------------------------------

def cosine_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Learning-rate multiplier: linear warm-up over `warmup` steps, then cosine from 1 down to `min_ratio`."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_train_mode(model: torch.nn.Module, freeze_backbone_bn: bool) -> None:
    """Train mode, except backbone BN layers when frozen.

    Why freeze: on CPU the batch is 4-8 crops, and the backbone's deep BN layers see only a few hundred positions
    per channel at stride 32; batch statistics that noisy (and, under torchrun, split across processes) drift the
    ImageNet running statistics, which the pretrained weights depend on. The BN affine parameters still learn.
    """
    model.train()
    if freeze_backbone_bn:
        for m in model.backbone.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()


def build_optimizer(model: torch.nn.Module, config: TrainingConfig) -> torch.optim.Optimizer:
    o = config.optim
    backbone = [p for p in model.backbone.parameters() if p.requires_grad]
    backbone_ids = {id(p) for p in backbone}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in backbone_ids]
    groups = [{"params": rest, "lr": o.lr, "name": "decoder_and_heads"}]
    if o.backbone_lr_factor > 0:
        groups.append({"params": backbone, "lr": o.lr * o.backbone_lr_factor, "name": "backbone"})
    else:
        for p in backbone:
            p.requires_grad_(False)
    return torch.optim.Adam(groups, lr=o.lr, weight_decay=o.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainingConfig) -> torch.optim.lr_scheduler.LambdaLR:
    o = config.optim
    min_ratio = o.lr_min / o.lr
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: cosine_factor(step, o.steps, o.warmup_steps, min_ratio))


def taxonomy_for(config: TrainingConfig, frames) -> dict[str, Any]:
    """Names and colours of the classes trained: the data set's own (adapters) or the synthetic world's."""
    from densehybrid_ros.data.taxonomy import SYNTHETIC
    tax = getattr(frames, "taxonomy", None) or SYNTHETIC
    if tax.num_classes != config.model.num_classes:
        raise ConfigError(f"model.num_classes={config.model.num_classes} but the training data "
                          f"({config.data.source}) has {tax.num_classes} classes")
    return {"names": list(tax.names), "colours": [list(c) for c in tax.colours]}


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as plain containers/tensors (loadable with weights_only=True)."""
    np_state = np.random.get_state()
    return {"python": random.getstate(),
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
            "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    v = state["python"]
    random.setstate((v[0], tuple(v[1]), v[2]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), int(n[2]), int(n[3]), float(n[4])))
    torch.set_rng_state(state["torch"])


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """torch.save to a temporary file, then os.replace: a crash mid-write never leaves a torn `last.pt`."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}" + (" (a folder, not a file)" if path.is_dir() else ""))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # several exception types for truncated or foreign files
        # torch's own message suggests weights_only=False, which would run code from the file: not repeated.
        raise RuntimeError(f"checkpoint {path} is not a checkpoint written by `densehybrid train`, or it is "
                           f"truncated ({type(e).__name__})") from e


class _StopFlag:
    """SIGINT/SIGTERM set a flag; the loop saves a checkpoint after the current step and returns."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave the default handlers
                pass
        return self

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


# ------------------------------------------------------------------------------------------------------------------
# The loop
# ------------------------------------------------------------------------------------------------------------------

def _build_network(config: TrainingConfig, resume_state: dict | None, log=print):
    from densehybrid_ros.model.densehybrid import build_model
    net_dict = config.model.network_dict()
    if resume_state is None and config.init_from and config.model.partial_init:
        return _network_partly_from(config, net_dict, log)
    if resume_state is None and config.init_from and config.init_from.endswith(".onnx"):
        return _network_from_onnx(config, net_dict)
    # Weights come from a checkpoint next: skip reading the ImageNet file (and its RNG-free but slow load).
    pretrained = config.model.pretrained_backbone and resume_state is None and not config.init_from
    model = build_model(net_dict, pretrained_backbone=pretrained)
    if resume_state is None and config.init_from:
        init = load_checkpoint(Path(config.init_from))
        stored = dict(init.get("network_config", {}))
        mismatch = _network_mismatch(stored, net_dict)
        try:
            model.load_state_dict(init["model"], strict=True)
        except RuntimeError as e:
            raise ConfigError(f"init_from: {config.init_from} does not match the model section "
                              f"({mismatch or 'same keys, different shapes'}): {e}") from e
    return model, []


def _network_partly_from(config: TrainingConfig, net_dict: dict[str, Any], log):
    """model.partial_init: the config's network, started from whatever init_from (checkpoint or exported model)
    can give it (model/transfer.py); the rest keeps its fresh initialisation."""
    from densehybrid_ros.model.densehybrid import build_model
    from densehybrid_ros.model.transfer import transfer_weights
    source, folded = _stored_network("init_from", config.init_from)
    # The backbone comes from init_from: the ImageNet file is not read.
    model = build_model({**net_dict, "pretrained_backbone": False})
    report = transfer_weights(source, model)
    log(f"train: init_from {config.init_from} (model.partial_init): {report.summary()}")
    # A folded BN is refitted only where the new network kept it from the source.
    kept = set(report.copied)
    return model, [name for name in folded if f"{name}.running_mean" in kept]


def _stored_network(key: str, path: str) -> tuple[torch.nn.Module, list[str]]:
    """(eval-mode network, names of its folded decoder BNs) from a training checkpoint or an exported .onnx with its
    card; errors are ConfigErrors naming the config key and the file."""
    if path.endswith(".onnx"):
        from densehybrid_ros.model.onnx_weights import OnnxWeightsError, network_from_onnx
        try:
            network, _card, folded = network_from_onnx(path)
        except (OnnxWeightsError, ConfigError) as e:
            raise ConfigError(f"{key}: {e}") from e
        return network, folded
    from densehybrid_ros.model.densehybrid import load_network_checkpoint
    try:
        network, _ckpt = load_network_checkpoint(path)
    except (FileNotFoundError, RuntimeError) as e:
        raise ConfigError(f"{key}: {e}") from e
    return network, []


def _network_from_onnx(config: TrainingConfig, net_dict: dict[str, Any]):
    """init_from names an exported model: rebuild the network from the graph (model/onnx_weights.py)."""
    from densehybrid_ros.model.onnx_weights import OnnxWeightsError, network_from_onnx
    try:
        model, _card, folded = network_from_onnx(config.init_from)
    except (OnnxWeightsError, ConfigError) as e:
        raise ConfigError(f"init_from: {e}") from e
    mismatch = _network_mismatch(model.config.to_dict(), net_dict)
    if mismatch:
        raise ConfigError(f"init_from: {config.init_from} does not match the model section (card value, config "
                          f"value): {mismatch}")
    return model, folded


def _build_ema(model: torch.nn.Module, config: TrainingConfig, resume_from: Path | None, start_step: int, log):
    """The weight average of optim.ema_decay (None when 0): torch's AveragedModel over parameters and buffers, so
    the decoder's BN statistics follow the averaged weights (integer buffers such as num_batches_tracked keep their
    first value; every BN here has an explicit momentum, so nothing reads them). On resume it continues from
    `resume_from` (ema.pt), which must belong to the same step as last.pt."""
    if not config.optim.ema_decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.optim.ema_decay), use_buffers=True)
    if resume_from is not None:
        if not resume_from.is_file():
            # Resuming must not silently restart the average: a run whose ema.pt is gone is a different run.
            raise ConfigError(f"optim.ema_decay={config.optim.ema_decay} but {resume_from} is missing: the weight "
                              f"average cannot be resumed (set optim.ema_decay=0 or start a new --out)")
        state = load_checkpoint(resume_from)
        # The two files are replaced one after the other: a kill between them leaves ema.pt a checkpoint behind.
        if int(state.get("step", -1)) != start_step:
            raise ConfigError(f"{resume_from} is at step {state.get('step')} but last.pt at step {start_step}: the "
                              f"weight average cannot be resumed exactly (set optim.ema_decay=0 or start a new --out)")
        if float(state.get("ema_decay", -1.0)) != config.optim.ema_decay:
            raise ConfigError(f"optim.ema_decay={config.optim.ema_decay} but {resume_from} was averaged with "
                              f"{state.get('ema_decay')}: resume with the same decay or start a new --out")
        ema.module.load_state_dict(state["model"], strict=True)
        ema.n_averaged.fill_(int(state["n_averaged"]))
        log(f"train: resumed the weight average from {resume_from} ({int(state['n_averaged'])} updates)")
    return ema


def _load_teacher(config: TrainingConfig, device) -> torch.nn.Module | None:
    """The frozen, eval-mode teacher of the loss.distill_* terms (checkpoint or exported .onnx), or None."""
    if not config.teacher:
        return None
    # Folded BNs need no refit here: in eval mode the rebuilt network computes the graph exactly.
    teacher, _folded = _stored_network("teacher", config.teacher)
    k = teacher.config.num_classes
    if k != config.model.num_classes:
        raise ConfigError(f"teacher: {config.teacher} has {k} classes, model.num_classes is "
                          f"{config.model.num_classes}")
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.to(device)


def _network_mismatch(stored: dict[str, Any], net_dict: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Network settings that differ between a stored network (checkpoint or card) and the config: key -> (stored,
    config). pretrained_backbone is not a property of the weights."""
    return {k: (stored[k], v) for k, v in net_dict.items()
            if k != "pretrained_backbone" and k in stored and _plain_eq(stored[k], v) is False}


def _plain_eq(a: Any, b: Any) -> bool:
    norm = lambda v: list(v) if isinstance(v, (list, tuple)) else v
    return norm(a) == norm(b)


def _write_csv_header(path: Path, keep_until: int | None) -> None:
    rows = []
    if keep_until is not None and path.is_file():
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(float(r["step"])) <= keep_until]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        w.writerows(rows)


def train(config: TrainingConfig, out_dir: str | Path, resume: bool = False, max_steps: int | None = None,
          log=print) -> TrainResult:
    """Train for config.optim.steps steps (or stop at global step `max_steps`) and write outputs to out_dir."""
    out_dir = Path(out_dir)
    ctx = ddp.setup_distributed()
    try:
        return _train(config, out_dir, resume, max_steps, ctx, log if ctx.is_main else (lambda *a, **k: None))
    finally:
        # _train flushes subnormals for speed; a caller in the same process (an export after training, a test)
        # gets the process default back, so its float arithmetic does not depend on whether it trained first.
        torch.set_flush_denormal(False)
        ddp.cleanup_distributed(ctx)


def _train(config: TrainingConfig, out_dir: Path, resume: bool, max_steps: int | None,
           ctx: ddp.DistributedContext, log) -> TrainResult:
    total = config.optim.steps
    stop_at = total if max_steps is None else min(total, int(max_steps))
    if max_steps is not None and max_steps < 1:
        raise ConfigError(f"max_steps={max_steps}: must be >= 1")
    ckpt_path = out_dir / CHECKPOINT_NAME
    resume_state = None
    if resume and ckpt_path.is_file():
        resume_state = load_checkpoint(ckpt_path)
    elif resume:
        log(f"train: --resume given but {ckpt_path} does not exist; starting from step 0")
    elif ckpt_path.is_file():
        raise ConfigError(f"{ckpt_path} exists: pass --resume to continue that run, or choose another --out")
    if ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    ddp.barrier(ctx)

    # Subnormal activations and gradients (from weights near zero) make CPU arithmetic many times slower; flushing
    # them to zero changes nothing a float32 network can represent usefully.
    torch.set_flush_denormal(True)
    torch.manual_seed(config.seed)  # decoder initialisation
    np.random.seed(config.seed)
    random.seed(config.seed)
    model, folded_bn = _build_network(config, resume_state, log)
    model = model.to(ctx.device)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config)
    start_step = 0
    if resume_state is not None:
        if resume_state.get("config") != config.to_dict() and ctx.is_main:
            changed = _diff(resume_state.get("config") or {}, config.to_dict())
            log(f"train: resuming with a changed config: {', '.join(changed)}")
        model.load_state_dict(resume_state["model"], strict=True)
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        set_rng_state(resume_state["rng"])
        start_step = int(resume_state["step"])
        log(f"train: resumed {ckpt_path} at step {start_step}")
    if start_step >= stop_at:
        log(f"train: step {start_step} already reached {stop_at}; nothing to do")
        return TrainResult(out_dir, ckpt_path, start_step, start_step, total, False, 0.0)

    # The average lives on the main process only: it alone writes checkpoints, and the weights are equal on every
    # rank after each synchronised step.
    ema = (_build_ema(model, config, out_dir / EMA_CHECKPOINT_NAME if resume_state is not None else None, start_step,
                      log) if ctx.is_main else None)
    net = ddp.wrap_model(model, ctx)
    criterion = DenseHybridLoss(DenseHybridLossWeights.from_config(config))
    teacher = _load_teacher(config, ctx.device)
    samples = TrainingSamples(config.data, config.seed, config.model.num_classes)
    n_frames = len(samples.frames)
    loader = step_loader(samples, config.optim.batch_size, start_step, stop_at, ctx.rank, ctx.world_size,
                         config.data.num_workers)
    taxonomy = taxonomy_for(config, samples.frames)

    writer = None
    csv_path = out_dir / "scalars.csv"
    if ctx.is_main:
        (out_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        _write_csv_header(csv_path, start_step if resume_state is not None else None)
        if config.logging.tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(str(out_dir / "tb"), purge_step=start_step if start_step else None)
        log(f"train: stage {config.stage}, {n_frames} training frames, steps {start_step}->{stop_at} of {total}, "
            f"global batch {config.optim.batch_size} over {ctx.world_size} process(es); outputs in {out_dir}")

    def checkpoint(step: int) -> None:
        if not ctx.is_main:
            return
        network = {
            "network_config": {**config.model.network_dict(), "pretrained_backbone": False},
            "taxonomy": taxonomy,
            "step": step,
            "epoch": step * config.optim.batch_size // max(1, n_frames),
            "config": config.to_dict(),
            "stage": config.stage,
        }
        save_checkpoint(ckpt_path, {"model": model.state_dict(), **network, "optimizer": optimizer.state_dict(),
                                    "scheduler": scheduler.state_dict(), "rng": rng_state()})
        if ema is not None:
            # Network-checkpoint keys only (no optimiser): export and init_from read it as they read last.pt.
            save_checkpoint(out_dir / EMA_CHECKPOINT_NAME, {"model": ema.module.state_dict(), **network,
                                                            "ema_decay": config.optim.ema_decay,
                                                            "n_averaged": int(ema.n_averaged)})

    from tqdm import tqdm
    bar = tqdm(total=stop_at, initial=start_step, desc=f"train {config.stage}", unit="step", dynamic_ncols=True,
               disable=not (ctx.is_main and config.logging.progress))
    t_start = time.perf_counter()
    interval: dict[str, list[float]] = {}
    step = start_step
    interrupted = False
    last_scalars: dict[str, float] = {}
    t_data = time.perf_counter()
    with _StopFlag() as stop:
        for batch in loader:
            data_s = time.perf_counter() - t_data
            t_step = time.perf_counter()
            step = int(batch["step"])
            set_train_mode(model, config.model.freeze_backbone_bn)
            from densehybrid_ros.model.densehybrid import normalise_uint8_nhwc
            x = normalise_uint8_nhwc(batch["image"].to(ctx.device))
            label = batch["label"].to(ctx.device)
            ood_target = batch["ood_target"].to(ctx.device)
            if folded_bn:
                # Here, not before the loop: torch ops in the parent before the DataLoader forks its workers
                # leave the workers hung (OpenMP is not fork-safe).
                from densehybrid_ros.model.onnx_weights import refit_folded_batchnorm
                refit_folded_batchnorm(model, folded_bn, [x])
                # Each rank saw its own part of the batch; DDP syncs gradients, not these values.
                ddp.broadcast_from_main([t for name in folded_bn for t in model.get_submodule(name).state_dict(
                    keep_vars=True).values()], ctx)
                log(f"train: {config.init_from}: refitted the folded BatchNorm(s) {', '.join(folded_bn)} on the "
                    f"first batch")
                folded_bn = []
            class_logits, ood_logit = net(x)
            # Loss at label resolution (as the official code): thin classes (poles, signs) survive, and pasted
            # boundaries are exact; bilinear upsampling of K logits is cheap next to the backbone.
            size = label.shape[-2:]
            class_logits = F.interpolate(class_logits, size=size, mode="bilinear", align_corners=False)
            ood_logit = F.interpolate(ood_logit[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
            teacher_out = None
            if teacher is not None:
                with torch.no_grad():
                    t_class, t_ood = teacher(x)
                    teacher_out = (F.interpolate(t_class, size=size, mode="bilinear", align_corners=False),
                                   F.interpolate(t_ood[:, None], size=size, mode="bilinear", align_corners=False)[:, 0])
            loss, terms = criterion(class_logits, ood_logit, label, ood_target, teacher_out)
            if not math.isfinite(terms["total"]):
                checkpoint(step)
                raise RuntimeError(f"train: loss is {terms['total']} at step {step} ({terms}); last good "
                                   f"checkpoint in {ckpt_path}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            step_s = time.perf_counter() - t_step

            with torch.no_grad():
                valid = label != IGNORE_INDEX
                correct = (class_logits.argmax(1) == label) & valid
                terms["pixel_accuracy"] = float(correct.sum()) / max(1, int(valid.sum()))
                p_out = torch.sigmoid(ood_logit.float())
                for name, code in (("p_out_inlier", 0), ("p_out_negative", 1)):
                    m = ood_target == code
                    if bool(m.any()):
                        terms[name] = float(p_out[m].mean())
            terms.update(step_s=step_s, data_s=data_s)
            for k, v in terms.items():
                interval.setdefault(k, []).append(v)
            bar.update(1)
            bar.set_postfix(loss=f"{terms['total']:.3f}", lr=f"{lr:.2e}", refresh=False)

            if step % config.logging.log_every == 0 or step == stop_at:
                means = ddp.mean_over_ranks({k: float(np.mean(v)) for k, v in interval.items()}, ctx)
                interval = {}
                row = {"step": step, "lr": lr, "elapsed_s": time.perf_counter() - t_start}
                for k, v in means.items():
                    row[k if k in CSV_FIELDS else f"loss_{k}"] = v
                last_scalars = {k: v for k, v in row.items() if k in CSV_FIELDS}
                if ctx.is_main:
                    with open(csv_path, "a", newline="") as f:
                        csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore").writerow(last_scalars)
                    if writer is not None:
                        for k, v in last_scalars.items():
                            if k != "step":
                                writer.add_scalar(k.replace("loss_", "loss/"), v, step)
            stop_now = ddp.any_rank(stop.signum is not None, ctx)
            if step % config.logging.checkpoint_every == 0 or step == stop_at or stop_now:
                checkpoint(step)
            if stop_now:
                interrupted = True
                log(f"\ntrain: stop signal received; checkpoint at step {step} in {ckpt_path} "
                    f"(continue with --resume)")
                break
            t_data = time.perf_counter()
    bar.close()
    seconds = time.perf_counter() - t_start
    if writer is not None:
        writer.close()
    if ctx.is_main:
        summary = {"stage": config.stage, "start_step": start_step, "step": step, "total_steps": total,
                   "interrupted": interrupted, "seconds": round(seconds, 1),
                   "seconds_per_step": round(seconds / max(1, step - start_step), 3),
                   "world_size": ctx.world_size, "batch_size": config.optim.batch_size,
                   "torch_threads": torch.get_num_threads(), "last_scalars": last_scalars}
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    ddp.barrier(ctx)
    return TrainResult(out_dir, ckpt_path, start_step, step, total, interrupted, seconds, last_scalars)


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} -> {vb!r}")
    return out
