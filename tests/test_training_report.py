"""The training report reads the loop's scalars.csv/config.yaml and writes curves and a settings table."""
import csv

import yaml

from densehybrid_ros.training.report import read_scalars, write_report


def fake_run(path, stage, steps):
    path.mkdir()
    (path / "config.yaml").write_text(yaml.safe_dump(
        {"stage": stage, "data": {"crop": [64, 128]}, "optim": {"batch_size": 2, "lr": 1e-3}}))
    with open(path / "scalars.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "loss_class", "loss_dataset_posterior", "pixel_accuracy", "elapsed_s"])
        for i in range(1, steps + 1):
            w.writerow([i, 2.0 / i, "" if stage == "closed_set" else 0.5 / i, 1 - 1 / (i + 1), 6.0 * i])


def test_report_has_a_row_per_run_with_steps_time_and_final_values(tmp_path):
    fake_run(tmp_path / "s1", "closed_set", 20)
    fake_run(tmp_path / "s2", "densehybrid", 10)
    png, md = write_report([tmp_path / "s1", tmp_path / "s2"], tmp_path / "out" / "training")
    assert png.stat().st_size > 10_000
    text = md.read_text()
    assert "| s1 | closed_set | 20 |" in text and "| s2 | densehybrid | 10 |" in text
    assert "2 min" in text  # 20 steps * 6 s
    final_class_loss = sum(2.0 / i for i in range(16, 21)) / 5
    assert f"{final_class_loss:.3f}" in text


def test_empty_columns_read_as_nan(tmp_path):
    fake_run(tmp_path / "s1", "closed_set", 3)
    s = read_scalars(tmp_path / "s1")
    assert s["step"] == [1.0, 2.0, 3.0]
    assert all(v != v for v in s["loss_dataset_posterior"])
