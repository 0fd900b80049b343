"""Training samples: inlier crops (paper 7.4) and, in stage 2, mixed content with pasted negatives.

Every sample is a pure function of (seed, global step, index in the global batch): its generator is
`np.random.default_rng([seed, step, index])`. A resumed run therefore sees exactly the batches an uninterrupted run
would have seen, without saving loader state, and a torchrun job sees the same global batch as one process: rank r
of W draws the indices r*B/W .. (r+1)*B/W - 1 of each step, so the ranks draw different samples.

Sources:
- `synthetic`: a pool of scenes rendered once by data/world.render_scene and cached under data.cache_dir as
  memory-mapped .npy arrays (image, label, depth), keyed by a hash of everything that changes the pool (seed, size,
  conditions, the world's source code). Rendering per step would cost more than the network's step on 2 cores.
  Conditions are mixed in the pool by their weights; layouts are left to the world (layout=None); no anomalies
  (anomalies=0): the test anomalies must stay unseen.
- `split` (a synthetic split written by make-data), `cityscapes` (data.split "train": leftImg8bit + gtFine train
  ids or label ids) and `streethazards` (data.split "train" = its "training" folder): read through data/adapters,
  which map every data set to classes 0..K-1 / anomaly K / void 255 (docs/DATASETS.md has the layouts).
- `camvid` (data.split train, val, test or trainval): real drives, CamVid's 11 classes. CamVid has no depth, so
  harmonised pastes are sized by the flat-ground relation of the real-frame benchmark (data/camvid_anomaly.py) and
  stand on road or pavement. `data.synthetic_fraction` of the crops come from the synthetic pool, relabelled into
  CamVid's classes (adapters/camvid.SYNTHETIC_TO_CAMVID): the weather and night that Cambridge's daylight drives
  lack.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from densehybrid_ros.config.training import DataConfig
from densehybrid_ros.config.validation import ConfigError
from densehybrid_ros.data.taxonomy import VOID_LABEL

POOL_FORMAT = 1  # bump when the cache layout changes


def sample_rng(seed: int, step: int, index: int) -> np.random.Generator:
    """The generator of sample `index` of the global batch of `step` (the resume contract, see module docstring)."""
    return np.random.default_rng([int(seed), int(step), int(index)])


def rank_indices(batch_size: int, rank: int, world_size: int) -> range:
    """Indices of the global batch drawn by `rank`."""
    if batch_size % world_size:
        raise ConfigError(f"optim.batch_size={batch_size} must be divisible by the number of processes ({world_size})")
    per = batch_size // world_size
    return range(rank * per, (rank + 1) * per)


# ------------------------------------------------------------------------------------------------------------------
# Frame sources: random access to (image RGB uint8, label uint8, depth float32 metres or None)
# ------------------------------------------------------------------------------------------------------------------

def _world_fingerprint() -> str:
    """Hash of the synthetic world's source files: editing the world invalidates cached pools."""
    import densehybrid_ros.data.world as world
    h = hashlib.sha256()
    for p in sorted(Path(world.__file__).parent.rglob("*.py")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def pool_conditions(cfg: DataConfig) -> list[str]:
    """The condition of each pool frame: drawn by weight from a generator seeded by the pool seed."""
    names = sorted(cfg.conditions)
    w = np.array([cfg.conditions[n] for n in names], np.float64)
    rng = np.random.default_rng([cfg.pool_seed, 7])
    return [names[i] for i in rng.choice(len(names), size=cfg.pool_size, p=w / w.sum())]


def pool_key(cfg: DataConfig) -> str:
    spec = {"format": POOL_FORMAT, "seed": cfg.pool_seed, "size": cfg.pool_size, "h": cfg.pool_height,
            "w": cfg.pool_width, "conditions": sorted(cfg.conditions.items()), "world": _world_fingerprint()}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def _render_one(args: tuple[int, int, int, str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from densehybrid_ros.data.world import render_scene
    seed, height, width, condition = args
    cv2.setNumThreads(1)
    scene = render_scene(seed, height, width, condition=condition, layout=None, anomalies=0)
    return scene.image, scene.label, scene.depth


def _render_pool(cfg: DataConfig, folder: Path) -> None:
    from tqdm import tqdm
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n, h, w = cfg.pool_size, cfg.pool_height, cfg.pool_width
    images = np.lib.format.open_memmap(tmp / "image.npy", "w+", np.uint8, (n, h, w, 3))
    labels = np.lib.format.open_memmap(tmp / "label.npy", "w+", np.uint8, (n, h, w))
    # float16 metres: 3 significant digits are plenty for sizing pastes, and the pool takes half the disk.
    depths = np.lib.format.open_memmap(tmp / "depth.npy", "w+", np.float16, (n, h, w))
    conditions = pool_conditions(cfg)
    jobs = [(cfg.pool_seed + i, h, w, conditions[i]) for i in range(n)]
    bar = tqdm(total=n, desc=f"rendering training pool ({n} scenes {h}x{w})", unit="scene", dynamic_ncols=True)
    if cfg.render_workers > 1:
        import multiprocessing as mp
        with mp.get_context("spawn").Pool(cfg.render_workers) as pool:
            results = pool.imap(_render_one, jobs, chunksize=4)
            for i, (img, lab, dep) in enumerate(results):
                images[i], labels[i], depths[i] = img, lab, np.minimum(dep, 60000)
                bar.update()
    else:
        for i, job in enumerate(jobs):
            img, lab, dep = _render_one(job)
            images[i], labels[i], depths[i] = img, lab, np.minimum(dep, 60000)
            bar.update()
    bar.close()
    for a in (images, labels, depths):
        a.flush()
    del images, labels, depths
    (tmp / "meta.json").write_text(json.dumps({"conditions": conditions, "seeds": [j[0] for j in jobs],
                                               "height": h, "width": w}, indent=0))
    try:
        os.replace(tmp, folder)  # atomic: a half-written pool is never mistaken for a finished one
    except OSError:
        if not (folder / "meta.json").is_file():  # not another process finishing the same pool first
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_pool(cfg: DataConfig) -> Path:
    """Render the synthetic pool if it is not cached yet; returns its folder."""
    folder = Path(cfg.cache_dir) / f"pool_{pool_key(cfg)}"
    if not (folder / "meta.json").is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        _render_pool(cfg, folder)
    return folder


class SyntheticPool:
    """Frames of a cached pool, opened lazily (memory-mapped) so that DataLoader workers share the page cache."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        meta = json.loads((self.folder / "meta.json").read_text())
        self.conditions: list[str] = meta["conditions"]
        self._arrays: tuple[np.ndarray, ...] | None = None

    def __len__(self) -> int:
        return len(self.conditions)

    def frame(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        if self._arrays is None:
            self._arrays = tuple(np.load(self.folder / f"{n}.npy", mmap_mode="r") for n in ("image", "label", "depth"))
        img, lab, dep = self._arrays
        return np.array(img[index]), np.array(lab[index]), dep[index].astype(np.float32)


class AdapterFrames:
    """Frames of a real data set or an on-disk split, read through data/adapters (one label convention)."""

    def __init__(self, split):
        self.split = split
        self.taxonomy = split.taxonomy

    def __len__(self) -> int:
        return len(self.split)

    def frame(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        sample = self.split[int(index)]
        if sample.semantic is None:
            raise ConfigError(f"data.source: {sample.name} has no semantic labels; a binary benchmark cannot train "
                              "the class posterior")
        depth = sample.depth
        if depth is not None and not np.any(depth > 0):
            depth = None
        return sample.image, sample.semantic, depth


class CamVidFrames(AdapterFrames):
    """CamVid frames with the flat-ground distance of each row as depth (what harmonised pasting sizes objects by)."""

    def __init__(self, splits):
        super().__init__(splits[0])
        self.splits = list(splits)
        self._offsets = np.cumsum([0] + [len(s) for s in self.splits])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def frame(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        from densehybrid_ros.data.camvid_anomaly import camvid_pseudo_depth
        k = int(np.searchsorted(self._offsets, int(index), side="right")) - 1
        sample = self.splits[k][int(index) - int(self._offsets[k])]
        h, w = sample.semantic.shape
        return sample.image, sample.semantic, camvid_pseudo_depth(h, w, focal_px(w))


class MixedFrames:
    """Real frames, and with probability ``synthetic_fraction`` a synthetic pool frame relabelled into the real
    taxonomy. ``draw(rng)`` picks the frame; indices past the real frames address the pool."""

    def __init__(self, real, pool: SyntheticPool, synthetic_fraction: float, label_map: np.ndarray):
        self.real, self.pool = real, pool
        self.synthetic_fraction = float(synthetic_fraction)
        self.label_map = label_map
        self.taxonomy = real.taxonomy

    def __len__(self) -> int:
        return len(self.real) + len(self.pool)

    def draw(self, rng: np.random.Generator) -> int:
        if rng.random() < self.synthetic_fraction:
            return len(self.real) + int(rng.integers(len(self.pool)))
        return int(rng.integers(len(self.real)))

    def frame(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        if index < len(self.real):
            return self.real.frame(index)
        image, label, depth = self.pool.frame(index - len(self.real))
        return image, self.label_map[label], depth


def synthetic_to_camvid_lut() -> np.ndarray:
    from densehybrid_ros.data.adapters.camvid import CAMVID, SYNTHETIC_TO_CAMVID
    from densehybrid_ros.data.taxonomy import SYNTHETIC
    lut = np.full(256, VOID_LABEL, np.uint8)
    for i, name in enumerate(SYNTHETIC.names):
        lut[i] = CAMVID.index(SYNTHETIC_TO_CAMVID[name])
    return lut


def _open_camvid(cfg: DataConfig):
    from densehybrid_ros.data.adapters.camvid import CamVidSplit
    names = ("train", "val") if cfg.split == "trainval" else (cfg.split,)
    real = CamVidFrames([CamVidSplit(cfg.root, name) for name in names])
    if cfg.synthetic_fraction <= 0:
        return real
    return MixedFrames(real, SyntheticPool(ensure_pool(cfg)), cfg.synthetic_fraction, synthetic_to_camvid_lut())


def open_frames(cfg: DataConfig):
    if cfg.source == "synthetic":
        return SyntheticPool(ensure_pool(cfg))
    from densehybrid_ros.data.adapters import DatasetFormatError
    root = Path(cfg.root)
    try:
        if cfg.source == "camvid":
            return _open_camvid(cfg)
        if cfg.source == "split":
            from densehybrid_ros.data.adapters.synthetic import SyntheticSplit
            return AdapterFrames(SyntheticSplit(root, cfg.split))
        if cfg.source == "cityscapes":
            from densehybrid_ros.data.adapters.cityscapes import CityscapesSplit
            return AdapterFrames(CityscapesSplit(root, cfg.split))
        from densehybrid_ros.data.adapters.streethazards import StreetHazardsSplit
        return AdapterFrames(StreetHazardsSplit(root, "training" if cfg.split == "train" else cfg.split))
    except (FileNotFoundError, DatasetFormatError, ValueError) as e:
        raise ConfigError(f"data.root / data.split: {e}") from e


# ------------------------------------------------------------------------------------------------------------------
# Samples and batches
# ------------------------------------------------------------------------------------------------------------------

def focal_px(source_width: int) -> float:
    """Focal length (pixels) of the 60-degree horizontal field of view the synthetic camera has."""
    from densehybrid_ros.data.paste import DEFAULT_HFOV_DEG
    return 0.5 * source_width / float(np.tan(np.radians(DEFAULT_HFOV_DEG) / 2))


def ground_labels(taxonomy) -> tuple[int, ...]:
    """Classes a pasted obstacle may stand on, by name in the training taxonomy."""
    return tuple(taxonomy.index(n) for n in ("road", "sidewalk", "pavement", "terrain") if n in taxonomy.names)


def paste_config(cfg: DataConfig, source_width: int, taxonomy=None):
    """Paste settings for crops of a frame ``source_width`` pixels wide.

    jitter_crop returns apparent depth for the *source* frame's camera, so harmonised pastes are sized with the
    focal length of the uncropped frame (60-degree field of view over its width), not of the crop: the crop's
    width would halve every paste of a 384-wide crop from a 768-wide frame.
    """
    from densehybrid_ros.data.paste import PasteConfig
    extra = {} if taxonomy is None else {"ground_labels": ground_labels(taxonomy)}
    return PasteConfig(size_range=tuple(cfg.paste_size_range), focal_px=focal_px(source_width),
                       far_field_probability=cfg.far_field_probability, far_field_depth_m=cfg.far_field_depth_m,
                       **extra)


def focus_pixel(label: np.ndarray, classes, rng: np.random.Generator) -> tuple[int, int] | None:
    """A random pixel of a class drawn uniformly from those of ``classes`` present in ``label``; None if none is.

    Drawing the class first, then the pixel, gives a traffic light in a frame the same chance as a pole that
    covers fifty times its area.
    """
    present = np.bincount(label.ravel(), minlength=256)
    candidates = [c for c in classes if present[c] > 0]
    if not candidates:
        return None
    ys, xs = np.nonzero(label == candidates[int(rng.integers(len(candidates)))])
    i = int(rng.integers(ys.size))
    return int(ys[i]), int(xs[i])


@dataclass
class Sample:
    image: np.ndarray       # RGB uint8 (H, W, 3)
    label: np.ndarray       # uint8 (H, W): classes 0..K-1, 255 void and pasted
    ood_target: np.ndarray  # uint8 (H, W): 0 inlier, 1 negative, 255 ignore


class TrainingSamples:
    """make(step, index) -> Sample, deterministic; batch(step, indices) -> dict of tensors."""

    def __init__(self, cfg: DataConfig, seed: int, num_classes: int, frames=None):
        self.cfg = cfg
        self.seed = seed
        self.num_classes = num_classes
        self.frames = frames if frames is not None else open_frames(cfg)
        self._negatives = None
        if cfg.objects_dir is not None:  # fail at start-up, naming the folder, not in a loader worker later
            from densehybrid_ros.data.real_objects import (EVALUATION_ONLY_READERS, CutoutNegatives,
                                                           ObjectSourceError, load_manifest)
            try:
                CutoutNegatives(cfg.objects_dir)
                sources = load_manifest(Path(cfg.objects_dir))["sources"]
            except ObjectSourceError as e:
                raise ConfigError(f"data.objects_dir: {e}") from e
            held_out = sorted(n for n, src in sources.items() if src.get("reader") in EVALUATION_ONLY_READERS)
            if held_out:
                # Pasting the obstacles the model is measured on would make the anomaly benchmarks meaningless.
                raise ConfigError(f"data.objects_dir: {cfg.objects_dir} holds evaluation-only source(s) "
                                  f"{', '.join(held_out)} (reader {', '.join(EVALUATION_ONLY_READERS)}); train on "
                                  "a folder without them (densehybrid objects check-disjoint)")

    @property
    def negatives(self):
        if self._negatives is None:  # built lazily: in each DataLoader worker, not pickled from the parent
            from densehybrid_ros.data.negatives import NegativeBank, ProceduralNegatives
            if self.cfg.objects_dir is None:
                self._negatives = NegativeBank(self.seed)
            else:
                from densehybrid_ros.data.real_objects import CutoutNegatives
                w = self.cfg.objects_weight
                self._negatives = NegativeBank(self.seed, sources=[CutoutNegatives(self.cfg.objects_dir),
                                                                   ProceduralNegatives()], weights=[w, 1.0 - w])
        return self._negatives

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_negatives"] = None
        return state

    def make(self, step: int, index: int) -> Sample:
        from densehybrid_ros.data.paste import jitter_crop, paste_negatives
        cfg = self.cfg
        rng = sample_rng(self.seed, step, index)
        draw = getattr(self.frames, "draw", None)
        index = draw(rng) if draw is not None else int(rng.integers(len(self.frames)))
        image, label, depth = self.frames.frame(index)
        if np.any((label >= self.num_classes) & (label != VOID_LABEL)):
            # Anomaly labels (K) in a training frame are not a class the network can learn: void for the class loss.
            label = np.where(label >= self.num_classes, VOID_LABEL, label).astype(np.uint8)
        focus = None
        if cfg.focus_probability > 0 and rng.random() < cfg.focus_probability:
            focus = focus_pixel(label, cfg.focus_classes, rng)
        crop = jitter_crop(image, label, depth, tuple(cfg.crop), rng, scale_range=tuple(cfg.scale_range),
                           flip=cfg.flip, focus=focus)
        if cfg.negatives and rng.random() < cfg.paste_probability:
            harmonised = crop.depth is not None and rng.random() < cfg.harmonised_fraction
            mixed = paste_negatives(crop.image, crop.label, self.negatives, rng,
                                    depth=crop.depth if harmonised else None, harmonised=harmonised,
                                    config=paste_config(cfg, source_width=image.shape[1],
                                                        taxonomy=getattr(self.frames, "taxonomy", None)))
            return Sample(mixed.image, mixed.label, mixed.ood_target)
        ood = np.where(crop.label == VOID_LABEL, VOID_LABEL, 0).astype(np.uint8)
        return Sample(crop.image, crop.label, ood)

    def batch(self, step: int, indices: range) -> dict[str, torch.Tensor]:
        samples = [self.make(step, i) for i in indices]
        return {
            "step": torch.tensor(step),
            "image": torch.from_numpy(np.stack([s.image for s in samples])),            # uint8 (N,H,W,3)
            "label": torch.from_numpy(np.stack([s.label for s in samples])).long(),     # (N,H,W)
            "ood_target": torch.from_numpy(np.stack([s.ood_target for s in samples])).long(),
        }


class StepBatches(torch.utils.data.Dataset):
    """Item `step` is this rank's part of the global batch of that step (so a DataLoader can prefetch steps)."""

    def __init__(self, samples: TrainingSamples, batch_size: int, rank: int = 0, world_size: int = 1):
        self.samples = samples
        self.indices = rank_indices(batch_size, rank, world_size)

    def __len__(self) -> int:  # steps are addressed directly; the length only bounds the sampler
        return 2**62

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        return self.samples.batch(step, self.indices)


def _worker_init(_: int) -> None:
    # Crops are numpy/OpenCV work; threads here would only fight the training process for the 2 cores.
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def step_loader(samples: TrainingSamples, batch_size: int, start_step: int, end_step: int, rank: int = 0,
                world_size: int = 1, num_workers: int = 1) -> torch.utils.data.DataLoader:
    """Batches for steps start_step .. end_step-1, in order, prepared `num_workers` processes ahead."""
    dataset = StepBatches(samples, batch_size, rank, world_size)
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs = dict(worker_init_fn=_worker_init, prefetch_factor=2, persistent_workers=False)
    return torch.utils.data.DataLoader(dataset, batch_size=None, sampler=range(start_step, end_step),
                                       num_workers=num_workers, **kwargs)
