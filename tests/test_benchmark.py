"""`densehybrid benchmark`: the quick mode runs end to end on real graphs and reports the three ratios; the
official-style reference computes the same quantities as our graph (so comparing their speed is fair)."""
import re

import numpy as np
import pytest
import torch

from densehybrid_ros.cli import main
from densehybrid_ros.cli.benchmark import RATIOS, official_style_pipeline, parse_backends, parse_sizes
from densehybrid_ros.model.densehybrid import NetworkConfig, build_model
from densehybrid_ros.model.export import export_wrapper

torch.set_num_threads(1)
RATIO_CELL = r"(\d+\.\d{3}) \((\d+\.\d{3})-(\d+\.\d{3})\)"


def test_quick_run_prints_the_three_ratios_and_writes_the_report(tmp_path, capsys):
    report = tmp_path / "BENCHMARKS.md"
    assert main(["benchmark", "--quick", "--threads", "1", "--untrained", "--write", str(report)]) == 0
    out = capsys.readouterr().out
    for _, _, label in RATIOS.values():
        row = re.search(rf"^\| 64x128 \| {re.escape(label)} \| {RATIO_CELL} \| {RATIO_CELL} \| \d+ \|$", out, re.M)
        assert row, label  # wall-clock and CPU-time medians with their interquartile ranges
        for med, q1, q3 in (row.groups()[:3], row.groups()[3:]):
            assert 0 < float(q1) <= float(med) <= float(q3)
    for pipeline in ("onnxruntime backend", "torch backend", "semantic-only graph", "official-style torch"):
        assert re.search(rf"\| 64x128 \| {pipeline}[^|]* \| \d+\.\d \| \d+\.\d \| \d+\.\d+ \| \d+\.\d \| 3 \|",
                         out), pipeline
    written = report.read_text()
    assert written in out  # the file is the printed report
    cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    assert f"- CPU: {cpu}" in written and "onnxruntime 1." in written and "numpy 2." in written
    assert "`densehybrid benchmark --quick --threads 1 --untrained --write" in written


def test_official_style_reference_computes_the_same_outputs_as_our_full_resolution_graph():
    torch.manual_seed(0)
    net = build_model(NetworkConfig(num_classes=6, decoder_width=16, pretrained_backbone=False)).eval()
    rgb = np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    class_id, score, confidence = official_style_pipeline(net, rgb)
    ours = export_wrapper(net, scoring_resolution="input")
    with torch.no_grad():
        ref_id, ref_score, ref_conf = (t[0].numpy() for t in ours(torch.from_numpy(rgb)[None]))
    assert class_id.shape == score.shape == confidence.shape == (64, 96)
    assert (class_id == ref_id).mean() >= 0.999
    assert np.abs(score - ref_score).max() < 1e-4 and np.abs(confidence - ref_conf).max() < 1e-5


@pytest.mark.parametrize("text, message", [("512x", "not HxW"), ("16x64", r"\[32, 8192\]"), ("64*64", "not HxW")])
def test_bad_sizes_are_named(text, message):
    with pytest.raises(ValueError, match=message):
        parse_sizes(text)


def test_backends_must_be_known_and_include_onnxruntime():
    assert parse_backends("onnxruntime,torch") == ["onnxruntime", "torch"]
    with pytest.raises(ValueError, match="tensorrt engines are not available"):
        parse_backends("onnxruntime,tensorrt")
    with pytest.raises(ValueError, match="onnxruntime must be one of them"):
        parse_backends("torch")


def test_bad_arguments_exit_2_with_the_setting_named(capsys):
    assert main(["benchmark", "--repeats", "1"]) == 2
    assert "--repeats=1 is outside its valid range [3, 10000]" in capsys.readouterr().err
