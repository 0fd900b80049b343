"""Training: config validation, deterministic samples, the loop end to end on the tiny config, exact resume, CLI,
and (slow) two CPU processes under torchrun."""
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from densehybrid_ros.config.training import TrainingConfig, load_training_config
from densehybrid_ros.config.validation import ConfigError
from densehybrid_ros.training.datasets import TrainingSamples, focus_pixel, paste_config, rank_indices
from densehybrid_ros.training.loop import cosine_factor, train
from densehybrid_ros.training.losses import DenseHybridLossWeights

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "densehybrid_ros" / "training" / "configs" / "tiny_test.yaml"
CONFIGS = sorted((REPO / "densehybrid_ros" / "training" / "configs").glob("*.yaml"))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("pool"))


def tiny(cache_dir, *overrides):
    return load_training_config(TINY, [f"data.cache_dir={cache_dir}", *overrides])


def _quiet(*_args, **_kwargs):
    pass


# -- configuration ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads(path):
    config = load_training_config(path)
    assert config.optim.steps >= 1 and config.data.crop[0] % 32 == 0


@pytest.mark.parametrize("override, key", [
    ("optim.lr=-1", "optim.lr"),
    ("data.crop=[100, 128]", "data.crop"),
    ("data.source=kitti", "data.source"),
    ("data.conditions={hail: 1}", "data.conditions"),
    ("loss.likelihood=-0.1", "loss.likelihood"),
    ("optim.warmup_steps=7", "optim.warmup_steps"),
    ("model.spp_windows=[4]", "model.spp_windows"),
    ("optim.learning_rate=0.1", "optim"),
    ("data.focus_classes=[14]", "data.focus_classes"),
    ("data.far_field_probability=1.5", "data.far_field_probability"),
    ("data.far_field_depth_m=0", "data.far_field_depth_m"),
    ("data.focus_probability=0.5", "data.focus_probability"),
    ("data.paste_size_range=[0.5, 0.1]", "data.paste_size_range"),
    ("loss.class_weights=[1, 2]", "loss.class_weights"),
    ("loss.class_weights=[-1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]", "loss.class_weights"),
    ("loss.distill_temperature=0", "loss.distill_temperature"),
    ("loss.distill_class_posterior=1", "teacher"),
    ("optim.ema_decay=1", "optim.ema_decay"),
    ("loss.distill_class_weighted=true", "loss.distill_class_weighted"),
    ("loss.distill_class_weighted=2", "loss.distill_class_weighted"),
])
def test_invalid_values_raise_an_error_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_training_config(TINY, [override])


def test_stage_two_requires_negatives():
    with pytest.raises(ConfigError, match="data.negatives"):
        load_training_config(TINY, ["stage=densehybrid", "data.negatives=false"])


def test_config_round_trips_through_its_plain_dict():
    config = load_training_config(TINY, ["stage=densehybrid", "data.negatives=true", "loss.margin=2.5"])
    again = TrainingConfig.from_dict(config.to_dict())
    assert again.to_dict() == config.to_dict()
    assert DenseHybridLossWeights.from_config(again).margin == 2.5


def test_model_section_defaults_are_the_network_defaults():
    # config/ cannot import the torch network, so ModelConfig repeats NetworkConfig's fields; keep them in step.
    from densehybrid_ros.config.training import ModelConfig
    from densehybrid_ros.model.densehybrid import NetworkConfig
    assert ModelConfig().network_dict() == NetworkConfig().to_dict()


def test_cosine_schedule_warms_up_then_decays_to_the_minimum():
    f = [cosine_factor(s, 100, 10, 0.01) for s in range(101)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0) and f[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:]))
    assert f[100] == pytest.approx(0.01)


# -- samples ----------------------------------------------------------------------------------------------------

def test_samples_are_a_pure_function_of_seed_step_and_index(cache_dir):
    config = tiny(cache_dir, "stage=densehybrid", "data.negatives=true")
    a = TrainingSamples(config.data, config.seed, 14)
    b = TrainingSamples(config.data, config.seed, 14)
    first = a.make(5, 1)
    b.make(3, 0)  # another draw in between must not change anything
    again = b.make(5, 1)
    for field in ("image", "label", "ood_target"):
        assert np.array_equal(getattr(first, field), getattr(again, field))
    other = a.make(5, 2)
    assert not np.array_equal(first.image, other.image)


def test_mixed_content_marks_pasted_pixels_void_for_classes_and_negative_for_ood(cache_dir):
    config = tiny(cache_dir, "stage=densehybrid", "data.negatives=true")
    samples = TrainingSamples(config.data, config.seed, 14)
    s = samples.make(0, 0)
    assert s.image.shape == (64, 128, 3) and s.label.shape == (64, 128)
    negative = s.ood_target == 1
    assert negative.any()
    assert (s.label[negative] == 255).all()
    inlier = s.ood_target == 0
    assert (s.label[inlier] < 14).all()


def test_focus_pixel_draws_the_class_first_so_a_tiny_class_is_as_likely_as_a_large_one():
    label = np.zeros((40, 80), np.uint8)
    label[:, :20] = 5          # 800 pixels of pole
    label[3, 70] = 6           # one pixel of traffic light
    rng = np.random.default_rng(0)
    picks = [label[focus_pixel(label, (5, 6, 7), rng)] for _ in range(400)]
    share_light = np.mean(np.array(picks) == 6)
    assert 0.4 < share_light < 0.6  # class 7 is absent and never drawn
    assert focus_pixel(label, (7, 11), rng) is None


def test_focus_crops_hold_a_rare_class_whenever_the_frame_has_it(cache_dir):
    config = tiny(cache_dir, "data.focus_classes=[5, 7]", "data.focus_probability=1.0")
    samples = TrainingSamples(config.data, config.seed, 14)
    plain = TrainingSamples(tiny(cache_dir).data, config.seed, 14)
    hits = plain_hits = eligible = 0
    for i in range(24):
        frame_label = samples.frames.frame(int(np.random.default_rng([config.seed, 0, i]).integers(8)))[1]
        if not np.isin(frame_label, (5, 7)).any():
            continue
        eligible += 1
        hits += bool(np.isin(samples.make(0, i).label, (5, 7)).any())
        plain_hits += bool(np.isin(plain.make(0, i).label, (5, 7)).any())
    assert eligible >= 10
    assert hits == eligible and plain_hits <= hits


def test_harmonised_pastes_use_the_source_frames_focal_length(cache_dir):
    """Crops keep the source camera's geometry (apparent depth), so pastes must be sized with its focal length."""
    from densehybrid_ros.data.world.camera import Camera
    config = tiny(cache_dir)
    paste = paste_config(config.data, source_width=config.data.pool_width)
    assert paste.focal_px == pytest.approx(Camera.forward(config.data.pool_height, config.data.pool_width).focal)
    assert paste.size_range == tuple(config.data.paste_size_range)
    far = paste_config(tiny(cache_dir, "data.far_field_probability=0.4", "data.far_field_depth_m=25").data,
                       source_width=config.data.pool_width)
    assert (far.far_field_probability, far.far_field_depth_m) == (0.4, 25.0)


def test_ranks_draw_disjoint_parts_of_the_global_batch():
    parts = [set(rank_indices(8, r, 4)) for r in range(4)]
    assert set().union(*parts) == set(range(8)) and sum(map(len, parts)) == 8
    with pytest.raises(ConfigError, match="divisible"):
        rank_indices(6, 0, 4)


# -- the loop ---------------------------------------------------------------------------------------------------

def test_tiny_stage_one_then_stage_two_run_end_to_end(cache_dir, tmp_path):
    s1 = train(tiny(cache_dir, "optim.steps=8", "optim.lr=3e-3"), tmp_path / "s1", log=_quiet)
    assert s1.step == 8 and not s1.interrupted
    ckpt = torch.load(s1.checkpoint, map_location="cpu", weights_only=True)
    assert {"model", "network_config", "taxonomy", "step", "epoch", "optimizer", "scheduler", "rng",
            "config"} <= set(ckpt)
    assert ckpt["step"] == 8 and len(ckpt["taxonomy"]["names"]) == 14
    with open(tmp_path / "s1" / "scalars.csv") as f:
        rows = list(csv.DictReader(f))
    losses = [float(r["loss_class"]) for r in rows]
    assert [int(r["step"]) for r in rows] == list(range(1, 9))
    assert all(np.isfinite(losses)) and np.mean(losses[-3:]) < np.mean(losses[:3])
    assert any((tmp_path / "s1" / "tb").iterdir())

    s2 = train(tiny(cache_dir, "stage=densehybrid", "data.negatives=true", f"init_from={s1.checkpoint}",
                    "optim.steps=3", "loss.eel=0.1", "loss.margin=0"), tmp_path / "s2", log=_quiet)
    scalars = s2.last_scalars
    for name in ("loss_class", "loss_dataset_posterior", "loss_likelihood", "loss_eel", "p_out_negative"):
        assert np.isfinite(scalars[name]), name


def test_stage_two_starts_from_the_stage_one_weights(cache_dir, tmp_path):
    s1 = train(tiny(cache_dir, "optim.steps=2"), tmp_path / "s1", log=_quiet)
    config = tiny(cache_dir, "stage=densehybrid", "data.negatives=true", f"init_from={s1.checkpoint}",
                  "optim.steps=1", "optim.lr=1e-9", "optim.lr_min=0", "optim.warmup_steps=0")
    s2 = train(config, tmp_path / "s2", log=_quiet)
    w1 = torch.load(s1.checkpoint, weights_only=True)["model"]
    w2 = torch.load(s2.checkpoint, weights_only=True)["model"]
    key = "backbone._conv_stem.weight"
    assert torch.allclose(w1[key], w2[key], atol=1e-6)


def test_distillation_follows_a_teacher_checkpoint_and_logs_its_terms(cache_dir, tmp_path):
    start = train(tiny(cache_dir, "optim.steps=2"), tmp_path / "start", log=_quiet)
    other = train(tiny(cache_dir, "optim.steps=12", "optim.lr=1e-2", "seed=5"), tmp_path / "other", log=_quiet)
    with pytest.raises(ConfigError, match="stage 'densehybrid'"):
        tiny(cache_dir, f"teacher={start.checkpoint}", "loss.distill_class_posterior=1")
    overrides = ("stage=densehybrid", "data.negatives=true", f"init_from={start.checkpoint}", "optim.steps=1",
                 "loss.distill_class_posterior=1", "loss.distill_scores=0.5", "loss.distill_temperature=2")

    def first_step(teacher, name):
        run = train(tiny(cache_dir, *overrides, f"teacher={teacher}"), tmp_path / name, log=_quiet)
        return run.last_scalars

    # The student starts from `start`: as its own teacher only train- vs eval-mode BN differs; another model differs
    # in its weights.
    itself, apart = first_step(start.checkpoint, "self"), first_step(other.checkpoint, "apart")
    assert np.isfinite(itself["loss_distill_scores"]) and np.isfinite(apart["loss_distill_scores"])
    assert apart["loss_distill_class_posterior"] > 10 * itself["loss_distill_class_posterior"]
    assert apart["loss_distill_scores"] > itself["loss_distill_scores"]
    with pytest.raises(ConfigError, match="missing.pt"):
        train(tiny(cache_dir, *overrides, f"teacher={tmp_path / 'missing.pt'}"), tmp_path / "missing", log=_quiet)


def test_resume_equals_an_uninterrupted_run(cache_dir, tmp_path):
    overrides = ("stage=densehybrid", "data.negatives=true", "optim.steps=5", "logging.checkpoint_every=100")
    full = train(tiny(cache_dir, *overrides), tmp_path / "full", log=_quiet)
    part = train(tiny(cache_dir, *overrides), tmp_path / "part", max_steps=2, log=_quiet)
    assert part.step == 2
    resumed = train(tiny(cache_dir, *overrides), tmp_path / "part", resume=True, log=_quiet)
    assert resumed.start_step == 2 and resumed.step == 5
    a = torch.load(full.checkpoint, weights_only=True)
    b = torch.load(resumed.checkpoint, weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    with open(tmp_path / "part" / "scalars.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4, 5]
    assert not (tmp_path / "part" / "ema.pt").exists()  # optim.ema_decay is 0 by default: no average kept


def test_weight_average_follows_its_formula_across_resumes_and_exports_as_a_network(cache_dir, tmp_path):
    from densehybrid_ros.model.densehybrid import load_network_checkpoint
    decay = 0.6
    overrides = ("stage=densehybrid", "data.negatives=true", "optim.steps=3", "optim.lr=3e-3",
                 f"optim.ema_decay={decay}")
    full = train(tiny(cache_dir, *overrides), tmp_path / "full", log=_quiet)
    part = tmp_path / "part"
    weights, averages = [], []
    for stop in (1, 2, 3):
        train(tiny(cache_dir, *overrides), part, resume=stop > 1, max_steps=stop, log=_quiet)
        weights.append(torch.load(part / "last.pt", weights_only=True)["model"])
        averages.append(torch.load(part / "ema.pt", weights_only=True))
    assert [a["n_averaged"] for a in averages] == [1, 2, 3]
    key = next(k for k, v in weights[0].items() if k.startswith("decoder") and v.ndim == 4)
    expected = weights[0][key]
    assert torch.equal(averages[0]["model"][key], expected)  # the first update copies
    for w, a in zip(weights[1:], averages[1:]):
        expected = decay * expected + (1 - decay) * w[key]
        assert torch.allclose(a["model"][key], expected, atol=1e-6)
        assert not torch.allclose(a["model"][key], w[key], atol=1e-6)
    # BN statistics are averaged too, so the averaged network is consistent with its weights.
    bn = next(k for k in weights[0] if k.startswith("decoder") and k.endswith("running_mean"))
    assert not torch.equal(averages[-1]["model"][bn], weights[-1][bn])
    uninterrupted = torch.load(full.out_dir / "ema.pt", weights_only=True)["model"]
    for k in uninterrupted:
        assert torch.equal(uninterrupted[k], averages[-1]["model"][k]), k
    net, ckpt = load_network_checkpoint(part / "ema.pt")
    assert ckpt["step"] == 3 and not net.training

    longer = (*overrides[:2], "optim.steps=4", *overrides[3:])
    with pytest.raises(ConfigError, match="averaged with 0.6"):
        train(tiny(cache_dir, *longer[:-1], "optim.ema_decay=0.9"), part, resume=True, log=_quiet)
    # A kill between the two file writes leaves ema.pt a checkpoint behind last.pt: resuming must refuse.
    stale = torch.load(part / "ema.pt", weights_only=True)
    stale["step"] = 2
    torch.save(stale, part / "ema.pt")
    with pytest.raises(ConfigError, match="step 2 but last.pt at step 3"):
        train(tiny(cache_dir, *longer), part, resume=True, log=_quiet)
    (part / "ema.pt").unlink()
    with pytest.raises(ConfigError, match="ema.pt is missing"):
        train(tiny(cache_dir, *longer), part, resume=True, log=_quiet)


def test_an_existing_run_is_not_overwritten_without_resume(cache_dir, tmp_path):
    train(tiny(cache_dir, "optim.steps=1"), tmp_path / "run", log=_quiet)
    with pytest.raises(ConfigError, match="--resume"):
        train(tiny(cache_dir, "optim.steps=1"), tmp_path / "run", log=_quiet)


# -- command line -----------------------------------------------------------------------------------------------

def _cli(*args, **kwargs):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "densehybrid_ros.cli", "train", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, **kwargs)


def test_cli_rejects_a_bad_override_naming_the_key(tmp_path):
    out = _cli("--config", str(TINY), "--out", str(tmp_path / "r"), "--set", "optim.batch_size=0")
    assert out.returncode == 2
    assert "optim.batch_size" in out.stderr


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_resume_finishes_the_run(cache_dir, tmp_path):
    out = tmp_path / "run"
    args = ("--config", str(TINY), "--out", str(out), "--threads", "1", "--set", f"data.cache_dir={cache_dir}",
            "--set", "optim.steps=400", "--set", "logging.checkpoint_every=1000")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "densehybrid_ros.cli", "train", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    csv_path = out / "scalars.csv"
    deadline = time.time() + 120
    while time.time() < deadline and not (csv_path.is_file() and len(csv_path.read_text().splitlines()) > 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, stderr
    step = torch.load(out / "last.pt", weights_only=True)["step"]
    assert 2 < step < 400
    done = _cli(*args, "--resume", "--max-steps", str(step + 2), timeout=300)
    assert done.returncode == 0, done.stderr
    assert torch.load(out / "last.pt", weights_only=True)["step"] == step + 2


@pytest.mark.slow
def test_torchrun_two_cpu_processes_with_gloo(cache_dir, tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "densehybrid_ros.cli", "train", "--config", str(TINY), "--out", str(out),
           "--set", f"data.cache_dir={cache_dir}", "--set", "optim.steps=3", "--set", "stage=densehybrid",
           "--set", "data.negatives=true"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["step"] == 3
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    summary = (out / "summary.json").read_text()
    assert '"world_size": 2' in summary
