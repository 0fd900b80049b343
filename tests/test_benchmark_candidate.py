"""`densehybrid benchmark --candidate`: today's graph, a new graph and its INT8 copy in one interleaved run, with
the ratios to today's graph and the new graph's scale table. Tiny untrained graphs: these tests check the tables,
the ratio plumbing and the report file, never a speed."""
import argparse
import re
import shutil

import numpy as np
import pytest

from densehybrid_ros.cli import main
from densehybrid_ros.cli.benchmark import (GRAPHS, NODE_COST_BEGIN, NODE_COST_END, SPEED_BEGIN, SPEED_END, Candidate,
                                           command_line, configure, merge_speed, render_speed, speed_section)
from densehybrid_ros.cli.runtime_speed import RuntimeTiming

RATIO = r"\d+\.\d{3} \(\d+\.\d{3}-\d+\.\d{3}\) \| \d+\.\d{3}"
MACHINE = {"CPU": "test CPU", "cores": "2 logical", "date": "2026-12-03T00:00:00+00:00",
           "load average at start": "1.00 / 1.00 / 1.00", "load average at end": "2.00 / 2.00 / 2.00"}


@pytest.fixture(scope="module")
def graphs(untrained_model, tmp_path_factory):
    """(today's graph at 96x128, a different new graph at 64x128, the new graph's INT8 copy)."""
    folder = tmp_path_factory.mktemp("candidate")
    reference = untrained_model(96, 128)
    source = untrained_model(64, 128, seed=1, decoder_width=16)
    for name in (source.name, "untrained.card.yaml"):  # its card names the file: the same name in another folder
        shutil.copy(source.with_name(name), folder / name)
    candidate = folder / source.name
    assert main(["quantize", "--model", str(candidate), "--calib-frames", "2", "--no-progress"]) == 0
    return reference, candidate, folder / "untrained_int8.onnx"


@pytest.mark.slow
def test_one_run_times_the_three_graphs_at_the_reference_size_and_writes_its_section_at_the_top(graphs, tmp_path,
                                                                                                  capsys):
    reference, candidate, int8 = graphs
    report = tmp_path / "BENCHMARKS.md"
    node_cost = f"{NODE_COST_BEGIN}\n## Node cost\n\nkept\n{NODE_COST_END}\n"
    report.write_text(f"# Benchmarks\n\nbackend tables\n\n{node_cost}\nnotes below\n")
    assert main(["benchmark", "--candidate", str(candidate), "--reference", str(reference), "--repeats", "3",
                 "--warmup", "0", "--threads", "1", "--scale-sizes", "64x128", "--scale-repeats", "3",
                 "--scale-calib-frames", "1", "--write", str(report)]) == 0
    out = capsys.readouterr().out
    # Like for like: the new graph and its INT8 copy are re-exported at today's graph's size.
    assert "- the new graph and its INT8 copy were timed re-exported at 96x128, the reference's size" in out
    assert "One run of 3 interleaved rounds at 96x128" in out
    for runtime in ("onnxruntime", "openvino"):
        for graph in GRAPHS:
            timed = re.search(rf"^\| {runtime} \| {graph} \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| {RATIO} \| "
                              rf"{RATIO} \|$", out, re.M)
            # OpenVINO is optional: without it its rows say why they did not run.
            assert timed or (runtime == "openvino" and f"| {runtime} | {graph} | not run: " in out), (runtime, graph)
    # The reference against itself, round by round, is exactly 1 on both clocks.
    assert re.search(r"^\| onnxruntime \| today's graph \|( [\d.]+ \|){4} 1\.000 \(1\.000-1\.000\) \| 1\.000 \|",
                     out, re.M)
    # The headline repeats the table's ratio of the new graph.
    row = re.search(r"^\| onnxruntime \| new graph \|( [\d.]+ \|){4} (\d\.\d{3}) \([\d.-]+\) \| (\d\.\d{3}) \|",
                    out, re.M)
    assert f"both FP32 on onnxruntime: {row.group(2)} wall clock, {row.group(3)} CPU time" in out
    # The scale table (one size here; its growth line: test_scale_table_shows_ms_per_megapixel_and_its_growth):
    # FP32 and INT8, megapixels and ms per megapixel consistent with the times.
    for (h, w) in ((64, 128),):
        for precision in ("fp32", "int8"):
            cells = re.search(rf"^\| {h}x{w} \| ([\d.]+) \| onnxruntime {precision} \| (\d+) \| ([\d.]+) \| (\d+) \|",
                              out, re.M)
            assert cells, (h, w, precision)
            mp, ms, fps, ms_per_mp = (float(v) for v in cells.groups())
            assert mp == round(h * w / 1e6, 2) and abs(ms_per_mp * h * w / 1e6 - ms) <= 1  # both rounded
    assert "scale table in progress" not in out  # the last write is the finished section
    written = report.read_text()
    assert written.startswith(f"# Benchmarks\n\n{SPEED_BEGIN}\n## Today's graph, the new graph")
    assert speed_section(written).strip() in out
    assert "backend tables" in written and node_cost in written and written.rstrip().endswith("notes below")
    command = re.search(r"^Produced by `(densehybrid benchmark [^`]*)`", written, re.M).group(1)
    assert command.startswith(f"densehybrid benchmark --candidate {candidate} ") and f"--reference {reference}" in command


def test_the_int8_graph_must_come_from_the_candidate_and_exist(graphs, capsys):
    reference, candidate, int8 = graphs
    assert main(["benchmark", "--candidate", str(reference), "--candidate-int8", str(int8),
                 "--reference", str(reference)]) == 2
    assert f"--candidate-int8 {int8} was quantized from another graph" in capsys.readouterr().err
    assert main(["benchmark", "--candidate", str(reference), "--reference", str(reference)]) == 2
    err = capsys.readouterr().err
    assert "untrained_int8.onnx: model file not found; write it with `densehybrid quantize --model" in err
    assert main(["benchmark", "--candidate", str(candidate), "--reference", str(reference),
                 "--runtimes", "openvino,tensorrt"]) == 2
    assert "--runtimes: 'openvino,tensorrt': valid runtimes are onnxruntime, openvino" in capsys.readouterr().err


def _timing(wall: dict, cpu: dict, skipped: dict | None = None, size=(512, 1024)) -> RuntimeTiming:
    return RuntimeTiming(size, {k: np.array(v) for k, v in wall.items()}, {k: np.array(v) for k, v in cpu.items()},
                         len(next(iter(wall.values()))), "", skipped or {})


def test_ratios_are_medians_of_the_per_round_ratios_to_today_and_to_the_same_runtime():
    today, new, int8 = (f"onnxruntime {g}" for g in GRAPHS)
    ov_today, ov_new = f"openvino {GRAPHS[0]}", f"openvino {GRAPHS[1]}"
    wall = {today: [0.2, 0.2, 0.4], new: [0.1, 0.1, 0.1], int8: [0.04, 0.04, 0.1],
            ov_today: [0.1, 0.1, 0.1], ov_new: [0.05, 0.05, 0.05]}
    cpu = {k: [2 * x for x in v] for k, v in wall.items()}
    cpu[new] = [0.24, 0.24, 0.48]  # CPU ratio 0.6 every round
    t = _timing(wall, cpu, {f"openvino {GRAPHS[2]}": "RuntimeError: no INT8 here"})
    cand = Candidate(*(None,) * 3, (512, 1024), (512, 1024), {g: f"{g} described" for g in GRAPHS})
    text = render_speed(t, [], cand, ["onnxruntime", "openvino"], MACHINE, "densehybrid benchmark --candidate x", [])
    # new / today per round: 0.5, 0.5, 0.25 -> median 0.5, quartiles 0.375-0.5; CPU 0.6 throughout.
    assert "| onnxruntime | new graph | 100.0 | 100.0 | 10.00 | 240.0 | 0.500 (0.375-0.500) | 0.600 | " \
           "0.500 (0.375-0.500) | 0.600 |" in text
    # OpenVINO's new graph: to today's graph on onnxruntime (0.25, 0.25, 0.125) and on OpenVINO (0.5 throughout).
    assert "| openvino | new graph | 50.0 | 50.0 | 20.00 | 100.0 | 0.250 (0.188-0.250) | 0.250 | " \
           "0.500 (0.500-0.500) | 0.500 |" in text
    assert "| openvino | new graph INT8 | not run: RuntimeError: no INT8 here |" in text
    assert "0.500 wall clock, 0.600 CPU time (2.00x and 1.67x as fast). Target at most 0.50 (2x): met on the wall " \
           "clock, not met on CPU time." in text
    assert "Fastest pipeline: onnxruntime new graph INT8, 0.200 of today's graph" in text
    assert "load average 1.00 / 1.00 / 1.00 at the start, 2.00 / 2.00 / 2.00 at the end" in text


def test_scale_table_shows_ms_per_megapixel_and_its_growth():
    small = _timing({"onnxruntime fp32": [0.1] * 3, "onnxruntime int8": [0.05] * 3},
                    {"onnxruntime fp32": [0.1] * 3, "onnxruntime int8": [0.05] * 3}, size=(256, 512))
    large = _timing({"onnxruntime fp32": [1.6] * 3, "onnxruntime int8": [0.8] * 3},
                    {"onnxruntime fp32": [1.6] * 3, "onnxruntime int8": [0.8] * 3}, size=(1024, 2048))
    t = _timing({f"onnxruntime {g}": [0.1] * 3 for g in GRAPHS}, {f"onnxruntime {g}": [0.1] * 3 for g in GRAPHS})
    cand = Candidate(*(None,) * 3, (512, 1024), (512, 1024), {})
    text = render_speed(t, [small, large], cand, ["onnxruntime"], MACHINE, "x", [])
    # 0.13 MP in 100 ms: 763 ms/MP; 2.10 MP in 1600 ms: 763 ms/MP (linear in pixels: 16x the pixels, 16x the time).
    assert "| 256x512 | 0.13 | onnxruntime fp32 | 100 | 10.00 | 763 | 100 | 763 | 1.000 | 1.000 | 3 |" in text
    assert "| 1024x2048 | 2.10 | onnxruntime int8 | 800 | 1.25 | 381 | 800 | 381 | 0.500 | 0.500 | 3 |" in text
    assert ("from 256x512 to 1024x2048 (16x the pixels): onnxruntime fp32 763 -> 763 (1.00x); "
            "onnxruntime int8 381 -> 381 (1.00x)") in text


def test_merge_speed_replaces_its_section_and_keeps_the_rest():
    base = f"# Benchmarks\n\nbackend tables\n\n{NODE_COST_BEGIN}\nnode\n{NODE_COST_END}\n"
    once = merge_speed(base, "## Speed\n\nfirst\n")
    assert once.startswith(f"# Benchmarks\n\n{SPEED_BEGIN}\n## Speed\n\nfirst\n{SPEED_END}\n\nbackend tables\n")
    twice = merge_speed(once, "## Speed\n\nsecond\n")
    assert "first" not in twice and twice.count(SPEED_BEGIN) == 1 and speed_section(twice) == "## Speed\n\nsecond"
    assert twice.replace(speed_section(twice), "") == once.replace(speed_section(once), "")
    assert merge_speed(base, None) == base and speed_section(base) is None


@pytest.mark.parametrize("argv", [
    [],
    ["--quick", "--threads", "1", "--untrained", "--write", "docs/BENCHMARKS.md"],
    ["--sizes", "256x512", "--backends", "onnxruntime", "--budget", "60.5", "--repeats", "9"],
    ["--node-cost", "--node-rounds", "20", "--rss-frames", "10000", "--rss-rate", "25", "--model", "m.onnx"],
    ["--candidate", "new.onnx", "--candidate-int8", "q.onnx", "--reference", "old.onnx", "--runtimes",
     "onnxruntime", "--scale-sizes", "none", "--scale-repeats", "4", "--write", "B.md"],
])
def test_one_command_renderer_repeats_every_mode(argv):
    parser = argparse.ArgumentParser()
    configure(parser)
    args = parser.parse_args(argv)
    command = command_line(args)
    assert command.startswith("densehybrid benchmark") and "--threads" in command
    assert parser.parse_args(command.split()[2:]) == args  # the printed command is this run
    if argv:
        assert command.split()[2] == argv[0]  # the mode flag first


def test_a_separable_graph_is_re_exported_from_its_own_weights_or_else_from_its_checked_checkpoint(tmp_path):
    """Separable blends with a narrow stride-4 stage: the exporter folds decoder BNs, and the graph rebuilds its
    network by itself (model/onnx_weights.py). A graph that cannot (here: a card without its network_config) falls
    back to the checkpoint its card names, and only when its tensors are the graph's."""
    import torch
    import yaml

    from densehybrid_ros.cli.runtime_speed import export_at, network_of
    from densehybrid_ros.model.densehybrid import NetworkConfig, build_model
    from densehybrid_ros.model.onnx_weights import OnnxWeightsError

    config = NetworkConfig(decoder_width=16, stride4_width=8, decoder_blends=("separable",) * 3,
                           pretrained_backbone=False)
    torch.manual_seed(0)
    net = build_model(config).eval()
    ckpt = tmp_path / "last.pt"
    torch.save({"model": net.state_dict(), "network_config": vars(config)}, ckpt)
    graph = tmp_path / "sep.onnx"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(graph), "--height", "64", "--width", "128",
                 "--no-verify"]) == 0
    rebuilt, _, where = network_of(graph)
    assert where == "the graph's own weights"
    x = torch.rand(1, 3, 64, 128) * 2 - 1
    with torch.no_grad():
        for a, b in zip(rebuilt(x), net(x)):
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
    wider = export_at(graph, (96, 192), tmp_path / "sep_96x192.onnx")
    from densehybrid_ros.runtime import resolve_card
    assert (resolve_card(wider).input_height, resolve_card(wider).input_width) == (96, 192)

    card_path = tmp_path / "sep.card.yaml"
    card = yaml.safe_load(card_path.read_text())
    del card["training"]["network_config"]
    card_path.write_text(yaml.safe_dump(card, sort_keys=False))
    rebuilt, _, where = network_of(graph)
    assert where.startswith(f"its checkpoint {ckpt} (") and "tensors checked against the graph" in where
    assert all(torch.equal(a, b) for a, b in zip(rebuilt.state_dict().values(), net.state_dict().values()))
    # The checkpoint rewritten after the export (training went on): refused, not silently timed.
    with torch.no_grad():
        net.class_head[-1].weight.add_(0.5)
    torch.save({"model": net.state_dict(), "network_config": vars(config)}, ckpt)
    with pytest.raises(OnnxWeightsError, match=r"is not the checkpoint .* tensors the graph keeps by name differ"):
        network_of(graph)
