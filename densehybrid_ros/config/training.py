"""Training configuration: typed dataclasses loaded once from YAML and validated (docs/TRAINING.md).

A run is described by one YAML file with the sections `data`, `model`, `optim`, `loss`, `logging` and the top-level
keys `seed`, `stage` and `init_from`. Every value is checked here; errors name the key (e.g. `optim.lr`) and its
valid range. `--set key=value` overrides use the same dotted names (`apply_overrides`).
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from densehybrid_ros.config.validation import ConfigError, check_choice, check_range

SOURCES = ("synthetic", "split", "cityscapes", "streethazards", "camvid")
# data.split values of source camvid: "trainval" is train + val, for the final model once choices are made on val.
CAMVID_SPLITS = ("train", "val", "test", "trainval")
STAGES = ("closed_set", "densehybrid")
# The seven ComsAmy conditions (kept in sync with data/taxonomy.CONDITIONS; config/ may not import data/).
CONDITIONS = ("clear", "rain", "fog", "night", "snow", "dusk", "sandstorm")
# Mostly clear weather, every adverse condition present (ComsAmy section III: the benchmark mixes all seven).
DEFAULT_CONDITION_WEIGHTS = {"clear": 0.4, "rain": 0.1, "fog": 0.1, "night": 0.1, "snow": 0.1, "dusk": 0.1,
                             "sandstorm": 0.1}


def _pair(name: str, value: Any, lo: float, hi: float, integer: bool = False, ordered: bool = False) -> tuple:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(f"{name}: expected two values [a, b], got {value!r}")
    out = tuple(check_range(f"{name}[{i}]", v, lo, hi, integer=integer) for i, v in enumerate(value))
    if ordered and out[0] > out[1]:
        raise ConfigError(f"{name}: expected low <= high, got {list(value)}")
    return out


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name}: expected true or false, got {value!r}")
    return value


def _known(section: str, d: Any, cls) -> dict:
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise ConfigError(f"{section}: expected a mapping, got {type(d).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"{section}: unknown keys {unknown}; valid keys: {sorted(known)}")
    return d


@dataclass
class DataConfig:
    source: str = "synthetic"
    root: str | None = None          # real data sets and on-disk splits: the data set's root folder
    split: str = "train"             # source "split": the split folder under root
    crop: tuple[int, int] = (256, 512)  # (height, width) of the training crops
    scale_range: tuple[float, float] = (0.5, 2.0)  # paper 7.4 jitter
    flip: bool = True
    negatives: bool = False          # paste negatives (mixed content, paper 7.4); stage densehybrid needs it
    paste_probability: float = 1.0   # fraction of crops that receive 1-2 pasted negatives
    harmonised_fraction: float = 0.0  # fraction of pastes in harmonised mode (depth scale, colour match, feathering)
    # Plain pastes: the instance's longer side as a fraction of the crop's shorter side (data/paste.PasteConfig).
    paste_size_range: tuple[float, float] = (0.08, 0.5)
    # Harmonised pastes: share whose contact point is drawn beyond far_field_depth_m (data/paste.PasteConfig).
    far_field_probability: float = 0.0
    far_field_depth_m: float = 20.0
    # Class-balanced crops: with this probability a crop is placed around a random pixel of one of focus_classes
    # (class ids) present in the frame, chosen uniformly among those present. Thin classes (poles, signs, lights,
    # people) cover well under 1% of the pixels; uniform crops leave them nearly unlearned.
    focus_classes: tuple[int, ...] = ()
    focus_probability: float = 0.0
    # synthetic source: a pool of rendered scenes cached under cache_dir, keyed by everything that changes it
    pool_size: int = 1000
    pool_height: int = 384
    pool_width: int = 768
    pool_seed: int = 100_000          # far from the seeds of the validation/test splits written by make-data
    conditions: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_CONDITION_WEIGHTS))
    cache_dir: str = "data_cache/train_pool"
    render_workers: int = 2
    num_workers: int = 1             # DataLoader processes preparing crops while the network trains
    # Source camvid: this share of the crops comes from the synthetic pool above, relabelled into CamVid's classes,
    # for the weather and night the real drives lack (daylight Cambridge only).
    synthetic_fraction: float = 0.0
    # Real-object negatives: a cutout folder written by `densehybrid objects extract` (data/real_objects.py). Drawn
    # for this share of the pasted instances; the rest stay procedural. Must not hold an evaluation-only source.
    objects_dir: str | None = None
    objects_weight: float = 0.75

    @classmethod
    def from_dict(cls, d: dict | None) -> "DataConfig":
        d = dict(_known("data", d, cls))
        c = cls(**{k: v for k, v in d.items()
                   if k not in ("crop", "scale_range", "conditions", "paste_size_range", "focus_classes")})
        c.source = check_choice("data.source", c.source, SOURCES)
        if c.source != "synthetic" and not c.root:
            raise ConfigError(f"data.root: required for data.source={c.source!r}")
        c.crop = _pair("data.crop", d.get("crop", c.crop), 32, 4096, integer=True)
        if any(v % 32 for v in c.crop):
            raise ConfigError(f"data.crop: both sides must be multiples of 32 (the backbone's stride), got {list(c.crop)}")
        c.scale_range = _pair("data.scale_range", d.get("scale_range", c.scale_range), 0.1, 8.0, ordered=True)
        c.flip = _bool("data.flip", c.flip)
        c.negatives = _bool("data.negatives", c.negatives)
        c.paste_probability = float(check_range("data.paste_probability", c.paste_probability, 0.0, 1.0))
        c.harmonised_fraction = float(check_range("data.harmonised_fraction", c.harmonised_fraction, 0.0, 1.0))
        c.paste_size_range = _pair("data.paste_size_range", d.get("paste_size_range", c.paste_size_range), 0.0, 1.0,
                                   ordered=True)
        c.far_field_probability = float(check_range("data.far_field_probability", c.far_field_probability, 0.0, 1.0))
        c.far_field_depth_m = float(check_range("data.far_field_depth_m", c.far_field_depth_m, 1.0, 1000.0))
        focus = d.get("focus_classes", c.focus_classes)
        if not isinstance(focus, (list, tuple)):
            raise ConfigError(f"data.focus_classes: expected a list of class ids, got {focus!r}")
        c.focus_classes = tuple(check_range("data.focus_classes", v, 0, 254, integer=True) for v in focus)
        c.focus_probability = float(check_range("data.focus_probability", c.focus_probability, 0.0, 1.0))
        if c.focus_probability > 0 and not c.focus_classes:
            raise ConfigError("data.focus_probability > 0 needs data.focus_classes (class ids)")
        c.pool_size = check_range("data.pool_size", c.pool_size, 1, 1_000_000, integer=True)
        c.pool_height = check_range("data.pool_height", c.pool_height, 32, 4096, integer=True)
        c.pool_width = check_range("data.pool_width", c.pool_width, 32, 8192, integer=True)
        c.pool_seed = check_range("data.pool_seed", c.pool_seed, 0, 2**31 - 1, integer=True)
        c.render_workers = check_range("data.render_workers", c.render_workers, 1, 256, integer=True)
        c.num_workers = check_range("data.num_workers", c.num_workers, 0, 64, integer=True)
        c.synthetic_fraction = float(check_range("data.synthetic_fraction", c.synthetic_fraction, 0.0, 0.9))
        if c.synthetic_fraction > 0 and c.source != "camvid":
            raise ConfigError(f"data.synthetic_fraction mixes the synthetic pool into source camvid; data.source is "
                              f"{c.source!r}")
        if c.source == "camvid":
            c.split = check_choice("data.split", c.split, CAMVID_SPLITS)
        c.objects_weight = float(check_range("data.objects_weight", c.objects_weight, 0.0, 1.0))
        if c.objects_dir is not None and not isinstance(c.objects_dir, str):
            raise ConfigError(f"data.objects_dir: expected a folder path, got {c.objects_dir!r}")
        conditions = d.get("conditions", c.conditions)
        if isinstance(conditions, (list, tuple)):
            conditions = {name: 1.0 for name in conditions}
        if not isinstance(conditions, dict) or not conditions:
            raise ConfigError(f"data.conditions: expected a mapping condition -> weight, got {conditions!r}")
        c.conditions = {check_choice("data.conditions", k, CONDITIONS):
                        float(check_range(f"data.conditions.{k}", v, 0.0, 1e6)) for k, v in conditions.items()}
        if sum(c.conditions.values()) <= 0:
            raise ConfigError("data.conditions: the weights must have a positive sum")
        return c


@dataclass
class ModelConfig:
    """The fields of model.densehybrid.NetworkConfig (validated again by NetworkConfig itself)."""
    num_classes: int = 14
    decoder_width: int = 128
    spp_windows: tuple[int, ...] = (3, 7, 15)
    pretrained_backbone: bool = True
    # Decoder variants (docs/NETWORK_DESIGN.md); these defaults are the original network.
    decoder_blends: tuple[str, ...] = ("conv3x3", "conv3x3", "conv3x3")
    stride4_width: int = 0
    freeze_backbone_bn: bool = True  # training-only: backbone BN layers keep their ImageNet statistics
    # training-only: init_from may hold a different decoder; tensors whose name and shape match are copied, the
    # others keep their fresh initialisation (listed in the log). Off: any difference is an error.
    partial_init: bool = False

    @classmethod
    def from_dict(cls, d: dict | None) -> "ModelConfig":
        c = cls(**_known("model", d, cls))
        c.num_classes = check_range("model.num_classes", c.num_classes, 1, 254, integer=True)
        c.decoder_width = check_range("model.decoder_width", c.decoder_width, 8, 1024, integer=True)
        if not isinstance(c.spp_windows, (list, tuple)) or not c.spp_windows:
            raise ConfigError(f"model.spp_windows: expected a list of odd integers in [3, 63], got {c.spp_windows!r}")
        c.spp_windows = tuple(check_range("model.spp_windows", w, 3, 63, integer=True) for w in c.spp_windows)
        if any(w % 2 == 0 for w in c.spp_windows):
            raise ConfigError(f"model.spp_windows: windows must be odd, got {list(c.spp_windows)}")
        c.pretrained_backbone = _bool("model.pretrained_backbone", c.pretrained_backbone)
        blends = ("conv3x3", "separable", "none")  # model/ladder.BLENDS (config/ does not import torch modules)
        if not isinstance(c.decoder_blends, (list, tuple)) or len(c.decoder_blends) != 3:
            raise ConfigError(f"model.decoder_blends: expected three of {list(blends)} (steps to strides 16, 8, 4), "
                              f"got {c.decoder_blends!r}")
        c.decoder_blends = tuple(check_choice("model.decoder_blends", b, blends) for b in c.decoder_blends)
        c.stride4_width = check_range("model.stride4_width", c.stride4_width, 0, c.decoder_width, integer=True)
        if 0 < c.stride4_width < 8:
            raise ConfigError(f"model.stride4_width: 0 (= decoder_width) or at least 8, got {c.stride4_width}")
        c.freeze_backbone_bn = _bool("model.freeze_backbone_bn", c.freeze_backbone_bn)
        c.partial_init = _bool("model.partial_init", c.partial_init)
        return c

    def network_dict(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "decoder_width": self.decoder_width,
                "spp_windows": list(self.spp_windows), "pretrained_backbone": self.pretrained_backbone,
                "decoder_blends": list(self.decoder_blends), "stride4_width": self.stride4_width}


@dataclass
class OptimConfig:
    lr: float = 1e-3
    lr_min: float = 1e-6          # end of the cosine schedule (paper 7.4: 1e-5 -> 1e-7 for LDN fine-tuning)
    backbone_lr_factor: float = 0.25  # pretrained backbone learns slower than the fresh decoder (SwiftNet/LDN)
    weight_decay: float = 1e-4
    steps: int = 1000
    batch_size: int = 8           # global batch: split over the processes of a torchrun job
    warmup_steps: int = 0
    grad_clip: float | None = None
    # Exponential moving average of the weights (and BN statistics), written next to last.pt as ema.pt; 0 = off.
    # Its window is about 1 / (1 - ema_decay) steps: it smooths the step-to-step scatter of the late schedule.
    ema_decay: float = 0.0

    @classmethod
    def from_dict(cls, d: dict | None) -> "OptimConfig":
        c = cls(**_known("optim", d, cls))
        c.lr = float(check_range("optim.lr", c.lr, 1e-9, 1.0))
        c.lr_min = float(check_range("optim.lr_min", c.lr_min, 0.0, c.lr))
        c.backbone_lr_factor = float(check_range("optim.backbone_lr_factor", c.backbone_lr_factor, 0.0, 10.0))
        c.weight_decay = float(check_range("optim.weight_decay", c.weight_decay, 0.0, 1.0))
        c.steps = check_range("optim.steps", c.steps, 1, 10_000_000, integer=True)
        c.batch_size = check_range("optim.batch_size", c.batch_size, 1, 4096, integer=True)
        c.warmup_steps = check_range("optim.warmup_steps", c.warmup_steps, 0, c.steps, integer=True)
        if c.grad_clip is not None:
            c.grad_clip = float(check_range("optim.grad_clip", c.grad_clip, 1e-6, 1e6))
        c.ema_decay = float(check_range("optim.ema_decay", c.ema_decay, 0.0, 0.99999))
        return c


@dataclass
class LossConfig:
    """Weights of eq. 15 (training/losses.py). Defaults: the official code's split of beta = 0.03."""
    class_: float = 1.0
    dataset_posterior: float = 0.3
    likelihood: float = 0.03
    eel: float = 0.0
    margin: float | None = None
    eel_alpha: float = 1.0
    balanced_dataset_posterior: bool = False  # mean over inliers + mean over negatives (losses.py)
    class_weights: tuple[float, ...] | None = None  # one per class (losses.class_loss); None: unweighted
    # Distillation from the top-level `teacher` model (losses.distillation_terms); 0 leaves a term out.
    distill_class_posterior: float = 0.0
    distill_scores: float = 0.0
    distill_temperature: float = 1.0
    # Weight the class-posterior KL per pixel by class_weights[label], as the class term is weighted: the teacher's
    # posterior on road and sky otherwise outweighs the thin classes where the student trails it.
    distill_class_weighted: bool = False

    @classmethod
    def from_dict(cls, d: dict | None) -> "LossConfig":
        d = dict(_known("loss", {("class_" if k == "class" else k): v for k, v in (d or {}).items()}, cls))
        c = cls(**d)
        for name in ("class_", "dataset_posterior", "likelihood", "eel", "distill_class_posterior", "distill_scores"):
            setattr(c, name, float(check_range(f"loss.{name.rstrip('_')}", getattr(c, name), 0.0, 1000.0)))
        if c.margin is not None:
            c.margin = float(check_range("loss.margin", c.margin, -1e4, 1e4))
        c.eel_alpha = float(check_range("loss.eel_alpha", c.eel_alpha, 0.0, 100.0))
        c.distill_temperature = float(check_range("loss.distill_temperature", c.distill_temperature, 0.1, 100.0))
        if c.class_weights is not None:
            if not isinstance(c.class_weights, (list, tuple)) or not c.class_weights:
                raise ConfigError(f"loss.class_weights: expected a list of one weight per class, got {c.class_weights!r}")
            c.class_weights = tuple(float(check_range(f"loss.class_weights[{i}]", v, 0.0, 1000.0))
                                    for i, v in enumerate(c.class_weights))
        if not isinstance(c.distill_class_weighted, bool):
            raise ConfigError(f"loss.distill_class_weighted: expected true or false, got {c.distill_class_weighted!r}")
        if c.distill_class_weighted and c.class_weights is None:
            raise ConfigError("loss.distill_class_weighted: true needs loss.class_weights (one weight per class)")
        if c.distill_class_weighted and not c.distill_class_posterior:
            raise ConfigError("loss.distill_class_weighted: true weights the class-posterior KL, but "
                              "loss.distill_class_posterior is 0")
        if not isinstance(c.balanced_dataset_posterior, bool):
            raise ConfigError("loss.balanced_dataset_posterior: expected true or false, "
                              f"got {c.balanced_dataset_posterior!r}")
        return c


@dataclass
class LoggingConfig:
    log_every: int = 10
    checkpoint_every: int = 200
    tensorboard: bool = True
    progress: bool = True  # tqdm bar on rank 0

    @classmethod
    def from_dict(cls, d: dict | None) -> "LoggingConfig":
        c = cls(**_known("logging", d, cls))
        c.log_every = check_range("logging.log_every", c.log_every, 1, 1_000_000, integer=True)
        c.checkpoint_every = check_range("logging.checkpoint_every", c.checkpoint_every, 1, 10_000_000, integer=True)
        c.tensorboard = _bool("logging.tensorboard", c.tensorboard)
        c.progress = _bool("logging.progress", c.progress)
        return c


@dataclass
class TrainingConfig:
    seed: int = 0
    stage: str = "closed_set"
    init_from: str | None = None   # stage densehybrid: the stage-1 checkpoint whose weights start the fine-tuning
    # A trained model (checkpoint or exported .onnx with its card) whose outputs the loss.distill_* terms follow.
    teacher: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    source_path: str | None = None  # the YAML file, for messages

    @classmethod
    def from_dict(cls, d: dict, where: str = "training config") -> "TrainingConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: expected a mapping at the top level")
        known = {"seed", "stage", "init_from", "teacher", "data", "model", "optim", "loss", "logging"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown keys {unknown}; valid keys: {sorted(known)}")
        c = cls(
            seed=check_range("seed", d.get("seed", 0), 0, 2**31 - 1, integer=True),
            stage=check_choice("stage", d.get("stage", "closed_set"), STAGES),
            init_from=d.get("init_from"),
            teacher=d.get("teacher"),
            data=DataConfig.from_dict(d.get("data")),
            model=ModelConfig.from_dict(d.get("model")),
            optim=OptimConfig.from_dict(d.get("optim")),
            loss=LossConfig.from_dict(d.get("loss")),
            logging=LoggingConfig.from_dict(d.get("logging")),
        )
        k = c.model.num_classes
        if c.loss.class_weights is not None and len(c.loss.class_weights) != k:
            raise ConfigError(f"loss.class_weights: {len(c.loss.class_weights)} weights for model.num_classes={k}")
        if any(v >= k for v in c.data.focus_classes):
            raise ConfigError(f"data.focus_classes: class ids must be in 0..{k - 1}, got {list(c.data.focus_classes)}")
        if c.init_from is not None and not isinstance(c.init_from, str):
            raise ConfigError(f"init_from: expected a checkpoint path, got {c.init_from!r}")
        if c.teacher is not None and not isinstance(c.teacher, str):
            raise ConfigError(f"teacher: expected a checkpoint or .onnx path, got {c.teacher!r}")
        distills = c.loss.distill_class_posterior or c.loss.distill_scores
        if distills and not c.teacher:
            raise ConfigError("loss.distill_class_posterior / loss.distill_scores > 0 need a teacher model "
                              "(top-level key teacher: checkpoint or .onnx)")
        if distills and c.stage != "densehybrid":
            raise ConfigError("loss.distill_*: distillation follows the teacher's scores on mixed content; it needs "
                              "stage 'densehybrid'")
        if c.stage == "densehybrid":
            if not c.data.negatives:
                raise ConfigError("data.negatives: stage 'densehybrid' trains on mixed content; set it to true")
            if not (c.loss.dataset_posterior or c.loss.likelihood or c.loss.eel):
                raise ConfigError("loss: stage 'densehybrid' needs a non-zero dataset_posterior, likelihood or eel "
                                  "weight")
        if c.data.harmonised_fraction > 0 and c.data.source not in ("synthetic", "split", "camvid"):
            raise ConfigError(f"data.harmonised_fraction: harmonised pasting needs depth, which data.source="
                              f"{c.data.source!r} does not provide; set it to 0")
        return c

    def to_dict(self) -> dict[str, Any]:
        """Plain containers only (stored in checkpoints, loadable with weights_only=True)."""
        d = asdict(self)
        d.pop("source_path")
        d["loss"]["class"] = d["loss"].pop("class_")
        return _plain(d)



def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def apply_overrides(raw: dict, overrides: list[str] | None) -> dict:
    """Apply `key.sub=value` overrides (values parsed as YAML) to a raw config dict; returns a new dict."""
    out = copy.deepcopy(raw)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value (e.g. optim.steps=100)")
        key, text = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"--set {item!r}: empty key")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {key}: value {text!r} is not valid YAML: {e}") from e
        if isinstance(value, str):
            # YAML 1.1 reads "1e-9" (no dot) as a string; on a command line it is meant as a number.
            try:
                value = float(value)
            except ValueError:
                pass
        node = out
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {key}: {p!r} is not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def load_training_config(path: str | Path, overrides: list[str] | None = None) -> TrainingConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"training config not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"training config {path} is not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    config = TrainingConfig.from_dict(apply_overrides(raw, overrides), where=str(path))
    config.source_path = str(path)
    return config
