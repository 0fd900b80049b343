"""Model card: the YAML beside every exported model file (docs/ARCHITECTURE.md section 3).

The node trusts nothing that the card does not state: class names and colours, K, the anomaly label, the input
size the graph was exported for, the score type and the calibrated threshold tau. The sha256 ties a card to its
model file, so a swapped or truncated file fails at start-up with the file named.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from densehybrid_ros.config.validation import ConfigError, check_choice, check_range, require
from densehybrid_ros.core.alert import RANGES
from densehybrid_ros.core.scores import SCORE_TYPES

TAU_RANGE = RANGES["tau"]

CARD_SUFFIX = ".card.yaml"

# What a card says of each data set, weight file or object source its model was trained or measured on. The terms
# travel with the model (CamVid's non-commercial licence binds a model trained on it), so a card keeps them through
# every rewrite (calibrate, evaluate --update-card, quantize) and refuses an entry that leaves one out.
DATA_SOURCE_KEYS = ("name", "from", "used_for", "licence")
DATA_SOURCE_REQUIRED = ("name", "used_for", "licence")


@dataclass
class ClassInfo:
    id: int
    name: str
    colour: tuple[int, int, int]


@dataclass
class Calibration:
    tau: float
    target_tpr: float
    achieved_tpr: float | None = None
    fpr: float | None = None
    split: str = ""
    score_type: str = "hybrid"


@dataclass
class ModelCard:
    name: str
    model_file: str  # relative to the card's folder
    sha256: str
    classes: list[ClassInfo]
    anomaly_label: int
    anomaly_colour: tuple[int, int, int]
    input_height: int | None  # None: dynamic
    input_width: int | None
    score_type: str = "hybrid"
    score_dtype: str = "float32"
    normalisation: str = "rgb/127.5-1"  # EfficientNet-Lite: [-1, 1], inside the graph
    outputs: list[str] = field(default_factory=lambda: ["class_id", "anomaly_score", "confidence"])
    scoring_resolution: str = "decoder"  # scores at decoder resolution, then upsampled (see docs/BENCHMARKS.md)
    calibration: Calibration | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    quantization: dict[str, Any] = field(default_factory=dict)  # INT8 graphs: method, calibration, float nodes
    data_sources: list[dict[str, str]] = field(default_factory=list)  # DATA_SOURCE_KEYS per entry
    card_path: Path | None = field(default=None, repr=False, compare=False)
    # False only when loaded with verify_sha=False (tests of broken files): the runtime then skips its own check.
    verify_sha: bool = field(default=True, repr=False, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def tau(self) -> float | None:
        return None if self.calibration is None else self.calibration.tau

    @property
    def dynamic_input(self) -> bool:
        return self.input_height is None

    @property
    def palette(self) -> list[tuple[int, int, int]]:
        """Colours indexed by label id 0..K (K = anomaly)."""
        return [tuple(c.colour) for c in self.classes] + [tuple(self.anomaly_colour)]

    def model_path(self) -> Path:
        base = self.card_path.parent if self.card_path is not None else Path(".")
        return base / self.model_file

    # -- io -----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("card_path")
        d.pop("verify_sha")
        d["classes"] = [{"id": c.id, "name": c.name, "colour": list(c.colour)} for c in self.classes]
        d["anomaly_colour"] = list(self.anomaly_colour)
        if not d["quantization"]:  # float graphs: their cards stay as they were
            d.pop("quantization")
        if not d["data_sources"]:  # cards of test fixtures and untrained exports name no data
            d.pop("data_sources")
        return d

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        tmp.replace(path)
        self.card_path = path
        return path

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "model card") -> "ModelCard":
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: expected a mapping at the top level")
        classes = []
        for i, c in enumerate(require(d, "classes", where)):
            cid = check_range(f"{where}: classes[{i}].id", require(c, "id", where), 0, 254, integer=True)
            if cid != i:
                raise ConfigError(f"{where}: class ids must be 0..K-1 in order; classes[{i}] has id {cid}")
            colour = tuple(int(v) for v in require(c, "colour", where))
            if len(colour) != 3 or not all(0 <= v <= 255 for v in colour):
                raise ConfigError(f"{where}: classes[{i}].colour must be three values in [0, 255]")
            classes.append(ClassInfo(cid, str(require(c, "name", where)), colour))
        if not classes:
            raise ConfigError(f"{where}: no classes")
        k = len(classes)
        anomaly_label = check_range(f"{where}: anomaly_label", require(d, "anomaly_label", where), 0, 254,
                                    integer=True)
        if anomaly_label != k:
            raise ConfigError(f"{where}: anomaly_label must equal K={k}, got {anomaly_label}")
        h, w = d.get("input_height"), d.get("input_width")
        if (h is None) != (w is None):
            raise ConfigError(f"{where}: input_height and input_width must both be set or both be null")
        if h is not None:
            check_range(f"{where}: input_height", h, 32, 8192, integer=True)
            check_range(f"{where}: input_width", w, 32, 8192, integer=True)
        score_type = check_choice(f"{where}: score_type", d.get("score_type", "hybrid"), SCORE_TYPES)
        calib = d.get("calibration")
        calibration = None
        if calib is not None:
            tau = calib.get("tau")
            if isinstance(tau, bool) or not isinstance(tau, (int, float)) or tau != tau:
                raise ConfigError(f"{where}: calibration.tau must be a finite number, got {tau!r}")
            # The alert's and the `threshold` parameter's range: a card the node would refuse is refused here.
            check_range(f"{where}: calibration.tau", tau, *TAU_RANGE)
            calibrated_for = check_choice(f"{where}: calibration.score_type", calib.get("score_type", score_type),
                                          SCORE_TYPES)
            if calibrated_for != score_type:
                raise ConfigError(f"{where}: calibration.score_type '{calibrated_for}' differs from the graph's "
                                  f"score_type '{score_type}': tau was calibrated for another score; run "
                                  "`densehybrid calibrate` on this model")
            calibration = Calibration(
                tau=float(tau),
                target_tpr=check_range(f"{where}: calibration.target_tpr", calib.get("target_tpr", 0.95), 0, 1),
                achieved_tpr=calib.get("achieved_tpr"), fpr=calib.get("fpr"), split=str(calib.get("split", "")),
                score_type=calibrated_for,
            )
        return cls(
            name=str(d.get("name", "densehybrid")),
            model_file=str(require(d, "model_file", where)),
            sha256=str(require(d, "sha256", where)),
            classes=classes,
            anomaly_label=anomaly_label,
            anomaly_colour=tuple(d.get("anomaly_colour", (255, 0, 255))),
            input_height=h, input_width=w,
            score_type=score_type,
            score_dtype=check_choice(f"{where}: score_dtype", d.get("score_dtype", "float32"),
                                     ("float32", "float16")),
            normalisation=str(d.get("normalisation", "rgb/127.5-1")),
            outputs=list(d.get("outputs", ["class_id", "anomaly_score", "confidence"])),
            scoring_resolution=str(d.get("scoring_resolution", "decoder")),
            calibration=calibration,
            metrics=dict(d.get("metrics") or {}),
            training=dict(d.get("training") or {}),
            quantization=dict(d.get("quantization") or {}),
            data_sources=check_data_sources(d.get("data_sources"), where),
        )


def check_data_sources(entries: Any, where: str) -> list[dict[str, str]]:
    """A card's or a provenance file's data_sources: a list of mappings with DATA_SOURCE_KEYS, where name,
    used_for and licence are non-empty text. None means no entries."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: data_sources must be a list of mappings with keys {', '.join(DATA_SOURCE_KEYS)}")
    checked = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: data_sources[{i}] must be a mapping with keys {', '.join(DATA_SOURCE_KEYS)}")
        unknown = sorted(set(entry) - set(DATA_SOURCE_KEYS))
        if unknown:
            raise ConfigError(f"{where}: data_sources[{i}] has unknown key(s) {', '.join(map(str, unknown))}; "
                              f"valid: {', '.join(DATA_SOURCE_KEYS)}")
        for key in DATA_SOURCE_REQUIRED:
            value = entry.get(key)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{where}: data_sources[{i}].{key} must be non-empty text, got {value!r}")
        if "from" in entry and not isinstance(entry["from"], str):
            raise ConfigError(f"{where}: data_sources[{i}].from must be text, got {entry['from']!r}")
        checked.append({k: entry[k] for k in DATA_SOURCE_KEYS if k in entry})
    return checked


@dataclass
class Provenance:
    """What `densehybrid export --provenance FILE` adds to the card it writes: the data sources and their terms,
    and a summary in words of what the model was trained on (models/provenance/<model>.yaml)."""
    data_sources: list[dict[str, str]]
    summary: str = ""


def load_provenance(path: str | Path) -> Provenance:
    path = Path(path)
    try:
        d = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"provenance file {path} cannot be read: {e}") from e
    if not isinstance(d, dict):
        raise ConfigError(f"provenance file {path}: expected a mapping with data_sources and summary")
    unknown = sorted(set(d) - {"data_sources", "summary"})
    if unknown:
        raise ConfigError(f"provenance file {path}: unknown key(s) {', '.join(map(str, unknown))}; "
                          "valid: data_sources, summary")
    sources = check_data_sources(d.get("data_sources"), f"provenance file {path}")
    if not sources:
        raise ConfigError(f"provenance file {path}: data_sources is empty; a shipped model names what it was "
                          "trained and measured on")
    summary = d.get("summary", "")
    if not isinstance(summary, str):
        raise ConfigError(f"provenance file {path}: summary must be text")
    return Provenance(sources, summary.strip())


def card_path_for(model_path: str | Path) -> Path:
    """models/x.onnx -> models/x.card.yaml"""
    p = Path(model_path)
    return p.with_name(p.stem + CARD_SUFFIX) if p.suffix != ".yaml" else p


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_model_bytes(card: ModelCard) -> bytes:
    """The model file read once, checked against the card's sha256: the runtime loads these very bytes, so a file
    swapped between a check by path and a load by path cannot be loaded unchecked."""
    model = card.model_path()
    try:
        data = model.read_bytes()
    except OSError as e:
        raise ConfigError(f"model file {model} cannot be read: {e}") from e
    if card.verify_sha:
        actual = hashlib.sha256(data).hexdigest()
        if actual != card.sha256:
            raise ConfigError(f"model file {model} is corrupt or was replaced: sha256 {actual[:12]}... "
                              f"does not match {card.sha256[:12]}... in {card.card_path}")
    return data


def load_model_card(path: str | Path, verify_sha: bool = True) -> ModelCard:
    """Load a card given the card path or the model path; verify the model file exists and matches its sha256.

    Every failure raises ConfigError naming the file, so a node fails at configure with a message a person can act on.
    """
    path = Path(path)
    card_file = card_path_for(path)
    if not card_file.is_file():
        raise ConfigError(f"model card not found: {card_file} (expected beside the model file)")
    try:
        raw = yaml.safe_load(card_file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"model card {card_file} is not valid YAML: {e}") from e
    card = ModelCard.from_dict(raw, where=str(card_file))
    card.card_path = card_file
    card.verify_sha = verify_sha
    model = card.model_path()
    if not model.is_file():
        raise ConfigError(f"model file not found: {model} (named by {card_file})")
    if verify_sha:
        actual = sha256_of(model)
        if actual != card.sha256:
            raise ConfigError(f"model file {model} is corrupt or was replaced: sha256 {actual[:12]}... "
                              f"does not match {card.sha256[:12]}... in {card_file}")
    return card
