"""Serialized TensorRT engines on disk: where they live, the sidecar JSON beside each, and whether one may be used.

A TensorRT engine is only valid for the TensorRT version, the GPU (compute capability) and the build settings it
was made with; loading a stale one either fails at deserialisation or, worse, runs a different model than the card
describes. The top complaint against TensorRT ROS nodes is exactly that: stale engines after an upgrade and
silent ten-minute rebuilds. So every engine travels with a sidecar (`<engine>.json`) recording what it was built
from and on, `compare_keys` lists EVERY field that differs (not just the first), and `resolve_engine` applies the
`engine_policy`:

- `rebuild`: build a fresh engine (logged, with progress) and replace the stale one atomically;
- `refuse`: raise `EngineStaleError` naming each difference and the exact `densehybrid build-engine` command.

Engines and sidecars are written to a temporary file and renamed, so a crash mid-write never leaves a truncated
engine under the real name; the sidecar also holds the engine's sha256, so a file replaced or cut short later is
caught before TensorRT is asked to deserialize it.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import shlex
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from densehybrid_ros.config.model_card import sha256_of as sha256_file

SIDECAR_FORMAT = "densehybrid-tensorrt-engine"
SIDECAR_VERSION = 1
ENGINE_SUFFIX = ".engine"
SIDECAR_SUFFIX = ".json"
PRECISIONS = ("fp32", "fp16", "int8", "best")
ENGINE_POLICIES = ("rebuild", "refuse")

# Field -> what it means when it differs (the message a user reads).
KEY_FIELDS = {
    "tensorrt_version": "TensorRT version",
    "gpu_name": "GPU",
    "compute_capability": "GPU compute capability",
    "precision": "precision",
    "input_shapes": "input shapes",
    "onnx_sha256": "ONNX model sha256",
    "calibration_cache_sha256": "INT8 calibration cache sha256",
    "dla_core": "DLA core",
    "runtime": "runtime that runs the engine",
}


class EngineError(RuntimeError):
    """An engine cannot be used as it is; the message says why and what to run."""


class EngineStaleError(EngineError):
    """engine_policy=refuse and the engine is missing, stale or unreadable."""


@dataclass(frozen=True)
class EngineKey:
    """What an engine is only valid for. `None` in an expected key means "unknown here, do not compare" (e.g. the
    calibration cache is not shipped to the vehicle with an INT8 engine)."""

    tensorrt_version: str | None
    gpu_name: str | None
    compute_capability: str | None
    precision: str
    input_shapes: dict[str, Any]  # input name -> [N, H, W, C] or {"min": [...], "opt": [...], "max": [...]}
    onnx_sha256: str | None
    calibration_cache_sha256: str | None = None
    dla_core: int | None = None
    runtime: str = "tensorrt"  # or "onnxruntime <version>": ORT's TensorRT EP writes its own engine format

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EngineKey":
        names = {f.name for f in fields(cls)}
        return cls(**{k: _normalise(d[k]) for k in names if k in d})


@dataclass(frozen=True)
class Difference:
    field: str
    built: Any      # what the sidecar records
    current: Any    # what this machine / model / setting has

    def __str__(self) -> str:
        what = KEY_FIELDS.get(self.field, self.field)
        return f"{what}: engine built for {_show(self.built)}, now {_show(self.current)}"


@dataclass
class Sidecar:
    """The JSON beside an engine: its key plus what a person needs to reproduce or audit it."""

    key: EngineKey
    engine_sha256: str
    model_name: str = ""
    onnx_path: str = ""
    built_at: str = ""
    build: dict[str, Any] = field(default_factory=dict)  # workspace, calibration data, pinned layers, timings

    def to_json(self) -> str:
        d = {"format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, **self.key.as_dict(),
             "engine_sha256": self.engine_sha256, "model_name": self.model_name, "onnx_path": self.onnx_path,
             "built_at": self.built_at, "build": self.build}
        return json.dumps(d, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str = "sidecar") -> "Sidecar":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise EngineError(f"{where} is not valid JSON: {e}") from e
        if not isinstance(d, dict) or d.get("format") != SIDECAR_FORMAT:
            raise EngineError(f"{where} is not a densehybrid engine sidecar (format {SIDECAR_FORMAT!r} expected)")
        if d.get("version") != SIDECAR_VERSION:
            raise EngineError(f"{where} has sidecar version {d.get('version')!r}; this code reads version "
                              f"{SIDECAR_VERSION}")
        return cls(key=EngineKey.from_dict(d), engine_sha256=str(d.get("engine_sha256", "")),
                   model_name=str(d.get("model_name", "")), onnx_path=str(d.get("onnx_path", "")),
                   built_at=str(d.get("built_at", "")), build=dict(d.get("build") or {}))


@dataclass
class EngineCheck:
    """The verdict on one engine file: usable (`ok`), or why not."""

    engine_path: Path
    status: str                     # ok | missing | no-sidecar | bad-sidecar | stale | corrupt | unreadable
    differences: list[Difference] = field(default_factory=list)
    detail: str = ""
    sidecar: Sidecar | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def reasons(self) -> list[str]:
        if self.status == "stale":
            return [str(d) for d in self.differences]
        return [self.detail] if self.detail else [self.status]

    def describe(self) -> str:
        if self.ok:
            return f"engine {self.engine_path} matches this machine and model"
        return f"engine {self.engine_path} cannot be used: " + "; ".join(self.reasons())


# -- paths -------------------------------------------------------------------------------------------------------

def engine_path_for(model_path: str | Path, precision: str, cache_dir: str | Path | None = None,
                    dla_core: int | None = None) -> Path:
    """models/x.onnx -> models/x.fp16.engine (or in cache_dir); DLA engines get their own file (.dla0)."""
    model_path = Path(model_path)
    folder = Path(cache_dir) if cache_dir else model_path.parent
    stem = model_path.name[:-len(".card.yaml")] if model_path.name.endswith(".card.yaml") else model_path.stem
    dla = "" if dla_core is None else f".dla{dla_core}"
    return folder / f"{stem}.{precision}{dla}{ENGINE_SUFFIX}"


def sidecar_path_for(engine_path: str | Path) -> Path:
    return Path(str(engine_path) + SIDECAR_SUFFIX)


def calibration_cache_path_for(model_path: str | Path, cache_dir: str | Path | None = None) -> Path:
    model_path = Path(model_path)
    folder = Path(cache_dir) if cache_dir else model_path.parent
    return folder / f"{model_path.stem}.int8.calib"


def timing_cache_path_for(model_path: str | Path, compute_capability: str | None,
                          cache_dir: str | Path | None = None) -> Path:
    """Timing caches are per GPU architecture, so the file name carries the compute capability."""
    model_path = Path(model_path)
    folder = Path(cache_dir) if cache_dir else model_path.parent
    sm = (compute_capability or "unknown").replace(".", "")
    return folder / f"{model_path.stem}.sm{sm}.timing.cache"


# -- hashing and atomic writes ------------------------------------------------------------------------------------

def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_atomic(path: str | Path, data: bytes) -> Path:
    """Write to a temporary file in the same folder, fsync, then rename over `path` (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_engine(engine_path: str | Path, engine: bytes, key: EngineKey, *, model_name: str = "",
                 onnx_path: str | Path = "", build: dict[str, Any] | None = None) -> Sidecar:
    """Write an engine and its sidecar. The old sidecar goes first: a crash between the two renames leaves an engine
    without a sidecar (treated as unusable and rebuilt), never a new engine described by the old sidecar."""
    engine_path = Path(engine_path)
    sidecar = Sidecar(key=key, engine_sha256=sha256_bytes(engine), model_name=model_name, onnx_path=str(onnx_path),
                      built_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                      build=dict(build or {}))
    sidecar_path_for(engine_path).unlink(missing_ok=True)
    write_atomic(engine_path, engine)
    write_atomic(sidecar_path_for(engine_path), sidecar.to_json().encode())
    return sidecar


def read_sidecar(engine_path: str | Path) -> Sidecar:
    path = sidecar_path_for(engine_path)
    return Sidecar.from_json(path.read_text(), where=str(path))


# -- comparing ---------------------------------------------------------------------------------------------------

def compare_keys(built: EngineKey, current: EngineKey) -> list[Difference]:
    """Every field of KEY_FIELDS on which the engine's key and the current one differ; None in `current` is not
    compared (unknown here)."""
    out = []
    for name in KEY_FIELDS:
        b, c = _normalise(getattr(built, name)), _normalise(getattr(current, name))
        if name == "calibration_cache_sha256" and current.precision not in ("int8", "best"):
            continue  # only INT8 engines depend on a calibration
        if c is None and name in ("calibration_cache_sha256", "gpu_name", "tensorrt_version", "compute_capability"):
            continue
        if b != c:
            out.append(Difference(name, b, c))
    return out


def check_engine(engine_path: str | Path, expected: EngineKey, verify_sha: bool = True) -> EngineCheck:
    """Can this engine file be used for `expected`? Reads the sidecar (and hashes the engine), never TensorRT."""
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        return EngineCheck(engine_path, "missing", detail=f"no engine file {engine_path}")
    sidecar_file = sidecar_path_for(engine_path)
    if not sidecar_file.is_file():
        return EngineCheck(engine_path, "no-sidecar", detail=f"no sidecar {sidecar_file}: what the engine was built "
                                                             "from and on is unknown, so it is not trusted")
    try:
        sidecar = read_sidecar(engine_path)
    except (EngineError, OSError, TypeError) as e:
        return EngineCheck(engine_path, "bad-sidecar", detail=str(e))
    if verify_sha:
        actual = sha256_file(engine_path)
        if actual != sidecar.engine_sha256:
            return EngineCheck(engine_path, "corrupt", sidecar=sidecar,
                               detail=f"engine file sha256 {actual[:12]}... does not match {sidecar.engine_sha256[:12]}"
                                      "... recorded when it was built (truncated or replaced)")
    differences = compare_keys(sidecar.key, expected)
    if differences:
        return EngineCheck(engine_path, "stale", differences, sidecar=sidecar)
    return EngineCheck(engine_path, "ok", sidecar=sidecar)


def build_command(model_path: str | Path, precision: str, engine_path: str | Path | None = None,
                  dla_core: int | None = None, extra: list[str] | None = None) -> str:
    """The command that rebuilds this engine, for messages."""
    args = ["densehybrid", "build-engine", "--model", str(model_path), "--precision", precision]
    if engine_path is not None:
        args += ["--engine", str(engine_path)]
    if dla_core is not None:
        args += ["--dla-core", str(dla_core)]
    args += list(extra or [])
    return " ".join(shlex.quote(a) for a in args)


def refusal_message(check: EngineCheck, command: str) -> str:
    return (f"{check.describe()}. engine_policy is 'refuse', so the node does not build one itself; build it on "
            f"this machine with:\n  {command}\n(or set engine_policy: rebuild to build it at configure, which takes "
            "minutes)")


def resolve_engine(engine_path: str | Path, expected: EngineKey | Callable[[], EngineKey], policy: str,
                   rebuild: Callable[[], None], command: str, log: Callable[[str], None] = print) -> EngineCheck:
    """Make sure a usable engine is at `engine_path`: check it, then rebuild or refuse per `policy`.

    `rebuild()` must write the engine and sidecar (write_engine); the result is checked again, so a builder that
    produced something else than asked for is caught here rather than at the first frame. `expected` may be a
    function: the key is then taken again after the rebuild, because a rebuild can change what it depends on (an
    INT8 build recalibrates and rewrites the calibration cache whose sha256 is part of the key).
    """
    if policy not in ENGINE_POLICIES:
        raise ValueError(f"engine_policy={policy!r} is not one of {', '.join(ENGINE_POLICIES)}")
    key_now = expected if callable(expected) else (lambda: expected)
    check = check_engine(engine_path, key_now())
    if check.ok:
        return check
    if policy == "refuse":
        raise EngineStaleError(refusal_message(check, command))
    log(f"{check.describe()}; rebuilding it (engine_policy: rebuild). This takes minutes; the same build offline: "
        f"{command}")
    rebuild()
    after = check_engine(engine_path, key_now())
    if not after.ok:
        raise EngineError(f"rebuilt engine is still not usable: {after.describe()}")
    return after


def _normalise(v: Any) -> Any:
    """JSON round trips turn tuples into lists; compare like with like."""
    if isinstance(v, tuple):
        return [_normalise(x) for x in v]
    if isinstance(v, list):
        return [_normalise(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _normalise(x) for k, x in v.items()}
    return v


def _show(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v):
        return v[:12] + "..."
    return json.dumps(v) if isinstance(v, (dict, list)) else str(v)


def key_digest(key: EngineKey) -> str:
    """A short stable name for a key (folder names of onnxruntime's TensorRT engine caches)."""
    return sha256_bytes(json.dumps(_normalise(key.as_dict()), sort_keys=True).encode())[:16]
