"""ONNX export: a real onnxruntime session agrees with the torch wrapper on the same weights; card and sizes."""
import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import skimage.data
import torch
import yaml

from densehybrid_ros.config.model_card import load_model_card, sha256_of
from densehybrid_ros.config.validation import ConfigError
from densehybrid_ros.core import scores as np_scores
from densehybrid_ros.data.taxonomy import SYNTHETIC
from densehybrid_ros.model.densehybrid import NetworkConfig, build_model
from densehybrid_ros.model.export import export_onnx, export_wrapper, output_shapes, wrapper_options

torch.set_num_threads(1)
H, W = 64, 96


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = build_model(NetworkConfig(num_classes=SYNTHETIC.num_classes, decoder_width=64)).eval()
    # Untrained BN statistics make every map near-constant; calibrate them on a few images so the class map and
    # scores vary like a real model's (the point is to compare two runtimes on non-trivial outputs).
    net.train()
    with torch.no_grad():
        for name in ("chelsea", "coffee", "astronaut", "rocket"):
            net(torch.from_numpy(_image(name, 96, 128)).permute(0, 3, 1, 2).float() / 127.5 - 1)
    return net.eval()


def _image(name: str, h: int = H, w: int = W) -> np.ndarray:
    rgb = cv2.resize(getattr(skimage.data, name)(), (w, h), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(rgb[None])


def _session(path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _run(path, image):
    sess = _session(path)
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"image": image})))


def _torch(model, image, **kw):
    wrapper = export_wrapper(model, **kw)
    with torch.no_grad():
        return {n: t.numpy() for n, t in zip(wrapper.output_names, wrapper(torch.from_numpy(image)))}


@pytest.mark.parametrize("scoring_resolution", ["decoder", "input"])
def test_onnxruntime_matches_torch_on_the_same_weights(model, tmp_path, scoring_resolution):
    path = tmp_path / "m.onnx"
    export_onnx(model, path, height=H, width=W, scoring_resolution=scoring_resolution)
    for name in ("astronaut", "coffee"):
        image = _image(name)
        ours, ref = _run(path, image), _torch(model, image, scoring_resolution=scoring_resolution)
        assert ours["class_id"].dtype == np.uint8 and ours["class_id"].shape == (1, H, W)
        assert len(np.unique(ref["class_id"])) > 1, "degenerate test: a single class everywhere"
        assert (ours["class_id"] == ref["class_id"]).mean() >= 0.999
        assert ours["anomaly_score"].dtype == np.float32
        assert np.abs(ours["anomaly_score"] - ref["anomaly_score"]).max() < 1e-3
        assert np.abs(ours["confidence"] - ref["confidence"]).max() < 1e-4


def test_graph_score_is_the_upsampled_hybrid_score_of_its_raw_outputs(model, tmp_path):
    path = tmp_path / "m.onnx"
    export_onnx(model, path, height=H, width=W, raw_outputs=True)
    out = _run(path, _image("chelsea"))
    # eq. 6 in numpy (core/) on the graph's own decoder-resolution outputs, then bilinear (half-pixel) upsampling
    s, g = out["logits"][0], out["ood_logit"][0]
    expected = cv2.resize(np_scores.hybrid_score(s, g), (W, H), interpolation=cv2.INTER_LINEAR)
    assert np.abs(out["anomaly_score"][0] - expected).max() < 1e-4
    assert np.array_equal(out["class_id"][0], cv2.resize(s.argmax(0).astype(np.uint8), (W, H),
                                                         interpolation=cv2.INTER_NEAREST))
    conf = cv2.resize(np_scores.class_posterior(s).max(0), (W, H), interpolation=cv2.INTER_LINEAR)
    assert np.abs(out["confidence"][0] - conf).max() < 1e-5


def test_card_is_written_beside_the_model_with_its_sha(model, tmp_path):
    path = tmp_path / "models" / "tiny.onnx"
    card = export_onnx(model, path, height=H, width=W, name="tiny", metrics={"ap": 0.5}, training={"steps": 3})
    assert (tmp_path / "models" / "tiny.card.yaml").is_file()
    loaded = load_model_card(path)  # verifies the sha256 of the model file
    assert loaded.sha256 == sha256_of(path) == card.sha256
    assert loaded.num_classes == 14 and loaded.anomaly_label == 14
    assert [c.name for c in loaded.classes] == list(SYNTHETIC.names)
    assert loaded.palette[:14] == [tuple(c) for c in SYNTHETIC.colours]
    assert (loaded.input_height, loaded.input_width) == (H, W)
    assert loaded.outputs == ["class_id", "anomaly_score", "confidence"]
    assert loaded.score_type == "hybrid" and loaded.scoring_resolution == "decoder"
    assert loaded.normalisation == "rgb/127.5-1"
    assert loaded.metrics == {"ap": 0.5} and loaded.training["steps"] == 3
    assert loaded.training["network_config"]["decoder_width"] == 64
    onnx.checker.check_model(str(path))
    graph_in = onnx.load(str(path)).graph.input[0]
    assert graph_in.name == "image" and graph_in.type.tensor_type.elem_type == onnx.TensorProto.UINT8


def test_dynamic_graph_runs_at_several_sizes(model, tmp_path):
    path = tmp_path / "dyn.onnx"
    card = export_onnx(model, path, height=H, width=W, dynamic=True, raw_outputs=True)
    assert card.input_height is None and card.input_width is None and card.dynamic_input
    sess = _session(path)
    for h, w in [(64, 96), (80, 112), (50, 75)]:
        image = _image("rocket", h, w)
        out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"image": image})))
        ref = _torch(model, image, raw_outputs=True)
        assert {k: v.shape for k, v in out.items()} == output_shapes(card.outputs, 14, h, w)
        assert (out["class_id"] == ref["class_id"]).mean() >= 0.999
        assert np.abs(out["anomaly_score"] - ref["anomaly_score"]).max() < 1e-3


def test_fixed_graph_refuses_another_size(model, tmp_path):
    path = tmp_path / "fixed.onnx"
    export_onnx(model, path, height=H, width=W)
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        _run(path, _image("rocket", 80, 112))


def test_semantic_only_graph_has_no_dataset_posterior_head(model, tmp_path):
    dh, sem = tmp_path / "dh.onnx", tmp_path / "sem.onnx"
    export_onnx(model, dh, height=H, width=W)
    card = export_onnx(model, sem, height=H, width=W, heads="semantic")
    assert card.outputs == ["class_id", "confidence"]
    image = _image("coffee")
    a, b = _run(dh, image), _run(sem, image)
    assert set(b) == {"class_id", "confidence"}
    assert np.array_equal(a["class_id"], b["class_id"]) and np.allclose(a["confidence"], b["confidence"], atol=1e-6)
    assert len(onnx.load(str(sem)).graph.node) < len(onnx.load(str(dh)).graph.node)


def test_float16_scores_stay_within_half_precision(model, tmp_path):
    path = tmp_path / "fp16.onnx"
    card = export_onnx(model, path, height=H, width=W, score_dtype="float16")
    assert card.score_dtype == "float16"
    image = _image("astronaut")
    out, ref = _run(path, image), _torch(model, image)
    assert out["anomaly_score"].dtype == np.float16 and np.isfinite(out["anomaly_score"]).all()
    rel = np.abs(out["anomaly_score"].astype(np.float32) - ref["anomaly_score"]) / (np.abs(ref["anomaly_score"]) + 1)
    assert rel.max() < 2e-3


@pytest.mark.parametrize("kwargs, named", [
    ({"height": 16}, "height"), ({"width": 10_000}, "width"), ({"score_type": "magic"}, "score_type"),
    ({"scoring_resolution": "full"}, "scoring_resolution"), ({"taxonomy": {"names": ["a"], "colours": [[1, 2, 3]]}},
                                                            "K=14"),
])
def test_bad_export_arguments_name_the_setting(model, tmp_path, kwargs, named):
    args = {"height": H, "width": W, **kwargs}
    with pytest.raises(ConfigError, match=named):
        export_onnx(model, tmp_path / "bad.onnx", **args)
    assert not (tmp_path / "bad.onnx").exists()


def _checkpoint(model, path):
    torch.save({"model": model.state_dict(), "network_config": model.config.to_dict(),
                "taxonomy": {"names": list(SYNTHETIC.names), "colours": [list(c) for c in SYNTHETIC.colours]},
                "step": 7, "epoch": 1, "config": {"lr": 1e-3, "crop": (64, 96)}}, path)


def test_cli_exports_a_checkpoint_that_matches_the_weights(model, tmp_path, capsys):
    from densehybrid_ros.cli import main
    ckpt, out = tmp_path / "ckpt.pt", tmp_path / "models" / "cli.onnx"
    _checkpoint(model, ckpt)
    rc = main(["export", "--checkpoint", str(ckpt), "--out", str(out), "--height", str(H), "--width", str(W),
               "--raw-outputs", "--fp16-scores"])
    assert rc == 0, capsys.readouterr().out
    assert "class agreement 1.0" in capsys.readouterr().out
    card = load_model_card(out)
    assert card.training["step"] == 7 and card.training["config"]["crop"] == [64, 96]
    assert card.score_dtype == "float16" and "logits" in card.outputs
    image = _image("coffee")
    ours, ref = _run(out, image), _torch(model, image, raw_outputs=True)
    assert np.abs(ours["logits"] - ref["logits"]).max() < 1e-3


def test_cli_names_a_corrupt_checkpoint(tmp_path, capsys):
    from densehybrid_ros.cli import main
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["export", "--checkpoint", str(bad), "--out", str(tmp_path / "x.onnx")]) == 1
    out = capsys.readouterr().out
    assert "broken.pt is not a checkpoint written by `densehybrid train`" in out
    assert "weights_only" not in out  # torch's advice to load it unsafely is not passed on
    assert not (tmp_path / "x.onnx").exists()


def test_cli_untrained_export_is_seeded(tmp_path):
    from densehybrid_ros.cli import main
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    for p in (a, b):
        assert main(["export", "--untrained", "--seed", "3", "--out", str(p), "--height", "64", "--width", "64",
                     "--decoder-width", "32", "--no-verify"]) == 0
    assert onnx.load(str(a)).graph.initializer == onnx.load(str(b)).graph.initializer


def test_cli_writes_the_provenance_into_the_card_and_checks_it_first(tmp_path, capsys):
    from densehybrid_ros.cli import main
    provenance = tmp_path / "provenance.yaml"
    sources = [{"name": "CamVid", "used_for": "training", "licence": "CC BY-NC 4.0"}]
    provenance.write_text(yaml.safe_dump({"summary": "what it learnt from", "data_sources": sources}))
    out = tmp_path / "p.onnx"
    args = ["export", "--untrained", "--out", str(out), "--height", "64", "--width", "64", "--decoder-width", "32",
            "--no-verify", "--provenance", str(provenance)]
    assert main(args) == 0
    card = load_model_card(out)
    assert card.data_sources == sources and card.training["summary"] == "what it learnt from"
    # A provenance that leaves out the licence stops the export before it writes anything.
    provenance.write_text(yaml.safe_dump({"data_sources": [{"name": "CamVid", "used_for": "training"}]}))
    out.unlink()
    assert main(args) == 1
    assert "licence must be non-empty" in capsys.readouterr().out
    assert not out.exists()


def test_bilinear_class_upsampling_gives_the_input_resolution_class_map(model, tmp_path):
    path = tmp_path / "bil.onnx"
    card = export_onnx(model, path, height=H, width=W, class_upsampling="bilinear")
    assert card.scoring_resolution == "decoder" and card.training["export"]["class_upsampling"] == "bilinear"
    image = _image("astronaut")
    ours = _run(path, image)
    assert (ours["class_id"] == _torch(model, image, scoring_resolution="input")["class_id"]).mean() >= 0.999
    assert np.abs(ours["anomaly_score"] - _torch(model, image)["anomaly_score"]).max() < 1e-3


@pytest.mark.parametrize("class_upsampling", ["nearest", "bilinear"])
def test_wrapper_rebuilt_from_the_card_matches_the_graph(model, tmp_path, class_upsampling):
    # What the torch backend does: the card alone says how the graph was built (class_upsampling included).
    path = tmp_path / "m.onnx"
    card = export_onnx(model, path, height=H, width=W, raw_outputs=True, class_upsampling=class_upsampling)
    options = wrapper_options(load_model_card(path))
    assert options["class_upsampling"] == class_upsampling and options["raw_outputs"]
    image = _image("astronaut")
    ours, ref = _run(path, image), _torch(model, image, **options)
    assert list(ref) == card.outputs
    assert (ours["class_id"] == ref["class_id"]).mean() >= 0.999
    assert np.abs(ours["anomaly_score"] - ref["anomaly_score"]).max() < 1e-3


def test_fixed_graph_declares_the_shapes_it_produces(model, tmp_path):
    path = tmp_path / "odd.onnx"
    export_onnx(model, path, height=50, width=75, raw_outputs=True)
    declared = {o.name: tuple(d.dim_value for d in o.type.tensor_type.shape.dim)
                for o in onnx.load(str(path)).graph.output}
    produced = {k: v.shape for k, v in _run(path, _image("coffee", 50, 75)).items()}
    assert declared == produced == output_shapes(list(declared), 14, 50, 75)


@pytest.fixture(scope="module")
def extreme_model():
    """Logits of magnitude 1e4: the class head says 'very sure', the dataset-posterior head 'very inlier'."""
    torch.manual_seed(0)
    net = build_model(NetworkConfig(num_classes=5, decoder_width=16, pretrained_backbone=False)).eval()
    with torch.no_grad():
        net.class_head[2].bias.copy_(torch.tensor([1e4, 0.0, -1e4, 5e3, 1e4 - 1]))
        net.ood_head[2].bias.fill_(-1e4)
    return net


@pytest.mark.parametrize("score_type", ["hybrid", "generative", "discriminative", "max_softmax", "max_logit",
                                        "entropy", "eel"])
def test_graph_scores_stay_finite_for_logits_of_magnitude_1e4(extreme_model, tmp_path, score_type):
    path = tmp_path / "x.onnx"
    export_onnx(extreme_model, path, height=64, width=64, score_type=score_type)
    image = _image("coffee", 64, 64)
    ours, ref = _run(path, image), _torch(extreme_model, image, score_type=score_type)
    assert np.isfinite(ours["anomaly_score"]).all() and np.isfinite(ours["confidence"]).all()
    assert np.isfinite(ref["anomaly_score"]).all()
    err = np.abs(ours["anomaly_score"] - ref["anomaly_score"]) / (1 + np.abs(ref["anomaly_score"]))
    assert err.max() < 1e-5
    if score_type == "hybrid":  # eq. 6: ln sigmoid(-1e4) - logsumexp(s) ~ -1e4 - 1e4
        assert ours["anomaly_score"].max() < -1.9e4


def test_backbone_pads_are_folded_into_the_convolutions(model, tmp_path):
    path = tmp_path / "m.onnx"
    card = export_onnx(model, path, height=H, width=W)
    graph = onnx.load(str(path)).graph
    assert not [n for n in graph.node if n.op_type == "Pad"]
    assert card.training["export"]["folded_pads"] == 5  # the stem and the four stride-2 depthwise convolutions
    pads = {n.name: list(next(a.ints for a in n.attribute if a.name == "pads")) for n in graph.node
            if n.op_type == "Conv"}
    # TF-SAME for stride 2: (k-2)//2 before, (k-1)//2 after.
    assert pads["/_conv_stem/Conv"] == [0, 0, 1, 1]
    assert pads["/_blocks.1/_depthwise_conv/Conv"] == [0, 0, 1, 1]
    assert pads["/_blocks.3/_depthwise_conv/Conv"] == [1, 1, 2, 2]
    # The outputs match torch, whose convolutions pad with an explicit F.pad.
    image = _image("astronaut")
    ours, ref = _run(path, image), _torch(model, image)
    assert (ours["class_id"] == ref["class_id"]).mean() >= 0.999
    assert np.abs(ours["anomaly_score"] - ref["anomaly_score"]).max() < 1e-3


@pytest.mark.parametrize("blends, stride4_width", [(("separable",) * 3, 0), (("conv3x3", "separable", "none"), 32)])
def test_decoder_variants_export_and_match_torch(tmp_path, blends, stride4_width):
    torch.manual_seed(0)
    net = build_model(NetworkConfig(num_classes=SYNTHETIC.num_classes, decoder_width=64, decoder_blends=blends,
                                    stride4_width=stride4_width), pretrained_backbone=False)
    net.train()
    with torch.no_grad():  # batch statistics from real images, so that the maps vary
        for name in ("chelsea", "coffee", "astronaut"):
            net(torch.from_numpy(_image(name, 96, 128)).permute(0, 3, 1, 2).float() / 127.5 - 1)
    net.eval()
    path = tmp_path / "variant.onnx"
    card = export_onnx(net, path, height=H, width=W, raw_outputs=True)
    assert card.training["network_config"]["decoder_blends"] == list(blends)
    assert card.training["network_config"]["stride4_width"] == stride4_width
    image = _image("rocket")
    ours, ref = _run(path, image), _torch(net, image, raw_outputs=True)
    assert ours["logits"].shape == (1, SYNTHETIC.num_classes, H // 4, W // 4)
    assert np.abs(ours["logits"] - ref["logits"]).max() < 1e-4 * max(1.0, np.abs(ref["logits"]).max())
    assert np.abs(ours["anomaly_score"] - ref["anomaly_score"]).max() < 1e-3


def test_reexporting_the_shipped_model_reproduces_its_outputs(tmp_path):
    """Today's exporter (folded pads, logsumexp around the max) on the shipped network: the same outputs as the
    shipped graph, written by the exporter before those changes."""
    from pathlib import Path

    from densehybrid_ros.model.onnx_weights import network_from_onnx
    shipped = Path(__file__).resolve().parents[1] / "models" / "densehybrid_lite0_synthetic.onnx"
    net, card, _ = network_from_onnx(shipped)
    assert net.config.decoder_blends == ("conv3x3",) * 3 and net.config.stride4_width == 0
    path = tmp_path / "again.onnx"
    export_onnx(net, path, height=card.input_height, width=card.input_width, raw_outputs=True)
    image = _image("coffee", card.input_height, card.input_width)
    old, new = _run(shipped, image), _run(path, image)
    assert (old["class_id"] == new["class_id"]).mean() >= 0.9999
    assert np.abs(old["logits"] - new["logits"]).max() < 1e-3
    assert np.abs(old["anomaly_score"] - new["anomaly_score"]).max() < 1e-3
    assert np.abs(old["confidence"] - new["confidence"]).max() < 1e-4
