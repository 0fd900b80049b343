"""The detector's parameters: one typed definition (config/detector.py) drives the ROS descriptors, the validation
messages and params/detector.yaml; invalid values are refused with their range at start and at run time."""
from pathlib import Path

import pytest
import rclpy
import yaml
from rcl_interfaces.msg import ParameterType
from rclpy.parameter import Parameter

from densehybrid_ros.config.detector import ALERT_PARAMETERS, DetectorConfig, render_params_yaml
from densehybrid_ros.core import alert
from densehybrid_ros.core.alert import AlertConfig
from densehybrid_ros.config.validation import ConfigError
from densehybrid_ros.ros.parameters import descriptor_for

ROOT = Path(__file__).resolve().parents[1]
PARAMS_FILE = ROOT / "params" / "detector.yaml"


# -- the typed definition ------------------------------------------------------------------------------------------
def test_every_parameter_has_a_description_and_a_valid_default():
    specs = DetectorConfig.specs()
    assert len(specs) >= 15
    for s in specs:
        assert len(s.description) > 20, s.name
        assert s.check(s.default) == (tuple(s.default) if s.type is list else s.default)
    DetectorConfig().check_consistency()


def test_run_time_parameters_are_exactly_the_safe_ones():
    dynamic = set(DetectorConfig().dynamic_names())
    assert {"threshold", "threshold_source", "corridor", "corridor_mode", "raise_frames", "window_frames",
            "clear_frames", "min_area_fraction", "overlay_alpha"} <= dynamic
    assert not dynamic & {"model", "backend", "input_transport", "qos_reliability", "max_image_pixels"}


@pytest.mark.parametrize("name,value,expect", [
    ("overlay_alpha", 1.5, "[0, 1]"),
    ("threshold", -5000.0, "[-1000, 1000]"),
    ("raise_frames", 0, "[1, 100]"),
    ("max_image_pixels", 0, "[1, 67108864]"),
    ("backend", "tensorflow", "'onnxruntime', 'tensorrt', 'openvino', 'auto', 'torch'"),
    ("qos_reliability", "sometimes", "'best_effort', 'reliable'"),
    ("corridor", [0.1, 0.2, 0.3], "flat list"),
    ("corridor", [0.1, 0.2, 0.3, 0.4, 1.5, 0.9], "[0, 1]"),
    ("autostart", "yes", "true or false"),
    ("overlay_alpha", float("nan"), "[0, 1]"),
])
def test_invalid_values_name_the_parameter_and_its_valid_range(name, value, expect):
    with pytest.raises(ConfigError) as err:
        DetectorConfig.from_values({name: value})
    assert f"'{name}'" in str(err.value) and expect in str(err.value)


def test_relations_between_parameters_are_checked():
    with pytest.raises(ConfigError, match="raise_frames.*window_frames=3"):
        DetectorConfig.from_values({"raise_frames": 4, "window_frames": 3})
    with pytest.raises(ConfigError, match="corridor.*no area"):
        DetectorConfig.from_values({"corridor": [0.1, 0.1, 0.5, 0.5, 0.9, 0.9]})


def test_unknown_parameters_are_reported_with_the_known_ones():
    with pytest.raises(ConfigError, match="unknown parameter 'treshold'.*threshold"):
        DetectorConfig.from_values({"treshold": 1.0})


def test_all_errors_are_reported_together():
    with pytest.raises(ConfigError) as err:
        DetectorConfig.from_values({"overlay_alpha": 2.0, "qos_depth": 0})
    assert "overlay_alpha" in str(err.value) and "qos_depth" in str(err.value)


def test_params_file_is_generated_from_the_definition_and_documents_every_parameter():
    text = PARAMS_FILE.read_text()
    assert text == render_params_yaml(), "regenerate: python -m densehybrid_ros.config.detector > params/detector.yaml"
    values = yaml.safe_load(text)["/**"]["ros__parameters"]
    assert set(values) == {s.name for s in DetectorConfig.specs()}
    DetectorConfig.from_values(values)  # the shipped file is valid
    for s in DetectorConfig.specs():
        first_words = " ".join(s.description.split()[:4])
        assert first_words in " ".join(line.strip("# ") for line in text.splitlines()), s.name


def test_alert_parameters_are_the_core_alert_settings_with_one_name_default_and_range():
    core_defaults = AlertConfig()
    for name in ALERT_PARAMETERS:
        spec = DetectorConfig.spec(name)
        assert hasattr(core_defaults, name), name
        assert spec.default == getattr(core_defaults, name), name
        assert (spec.lo, spec.hi) == alert.RANGES[name], name
    threshold = DetectorConfig.spec("threshold")
    assert (threshold.lo, threshold.hi) == alert.RANGES["tau"]
    # A value the node refuses is refused by the core alert too, and the edges are accepted by both.
    for tau in (threshold.lo, threshold.hi):
        DetectorConfig.from_values({"threshold": tau})
        AlertConfig(tau=tau).validate()
    for tau in (threshold.lo - 1, threshold.hi + 1):
        with pytest.raises(ConfigError, match="threshold"):
            DetectorConfig.from_values({"threshold": tau})
        with pytest.raises(ConfigError, match="tau"):
            AlertConfig(tau=tau).validate()


def _card(tau=2.25, names=None):
    from densehybrid_ros.config.model_card import Calibration, ClassInfo, ModelCard
    from densehybrid_ros.data.taxonomy import SYNTHETIC
    names = names or SYNTHETIC.names
    classes = [ClassInfo(i, n, (i, i, i)) for i, n in enumerate(names)]
    return ModelCard(name="m", model_file="m.onnx", sha256="0" * 64, classes=classes,
                     anomaly_label=len(names), anomaly_colour=(255, 0, 255), input_height=64, input_width=128,
                     calibration=None if tau is None else Calibration(tau=tau, target_tpr=0.95))


def test_the_alert_config_builder_carries_every_parameter_the_card_tau_and_road_ids():
    from densehybrid_ros.data.taxonomy import SYNTHETIC
    config = DetectorConfig.from_values({"raise_frames": 2, "window_frames": 4, "clear_frames": 7, "max_regions": 3,
                                         "min_area_fraction": 0.01, "min_corridor_fraction": 0.1,
                                         "road_contact_fraction": 0.3, "corridor_mode": "polygon_and_road"})
    built = config.alert_config_for(_card(tau=2.25))
    assert built.tau == 2.25                      # threshold_source 'card': the card's tau, sign and all
    assert built.road_ids == (SYNTHETIC.index("road"),)
    for name in ALERT_PARAMETERS:
        assert getattr(built, name) == getattr(config, name), name
    assert built.corridor == AlertConfig(corridor=config.corridor).corridor
    assert DetectorConfig().alert_config_for(_card(tau=-5.8)).tau == -5.8
    assert DetectorConfig.from_values({"threshold_source": "parameter", "threshold": 1.5}).alert_config_for(
        _card(tau=-5.8)).tau == 1.5
    assert config.alert_config_for(_card(tau=2.25), tau=-1.0).tau == -1.0   # an explicit tau wins


def test_the_alert_config_builder_names_what_is_missing():
    with pytest.raises(ConfigError, match="no calibrated tau"):
        DetectorConfig().alert_config_for(_card(tau=None))
    with pytest.raises(ConfigError, match="road classes"):
        DetectorConfig(corridor_mode="polygon_and_road").alert_config_for(_card(names=("sky", "person")))
    # The polygon mode needs no road class.
    assert DetectorConfig().alert_config_for(_card(names=("sky", "person"))).road_ids == ()
    with pytest.raises(ConfigError, match="tau=2000.0 is outside its valid range"):
        DetectorConfig().alert_config_for(_card(tau=2000.0))


def test_a_model_card_with_tau_outside_the_threshold_range_is_refused_naming_the_file(tmp_path):
    from densehybrid_ros.config.model_card import load_model_card
    data = yaml.safe_load((ROOT / "models" / "densehybrid_lite0_synthetic.card.yaml").read_text())
    data["calibration"]["tau"] = DetectorConfig.spec("threshold").hi + 1
    path = tmp_path / "m.card.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=rf"{path}: calibration.tau=1001.0 is outside its valid range "
                                          rf"\[-1000.0, 1000.0\]"):
        load_model_card(path, verify_sha=False)


def test_descriptors_carry_the_ranges_and_types():
    by_name = {s.name: descriptor_for(s) for s in DetectorConfig.specs()}
    alpha = by_name["overlay_alpha"]
    assert alpha.type == ParameterType.PARAMETER_DOUBLE
    assert (alpha.floating_point_range[0].from_value, alpha.floating_point_range[0].to_value) == (0.0, 1.0)
    depth = by_name["qos_depth"]
    assert (depth.integer_range[0].from_value, depth.integer_range[0].to_value) == (1, 100)
    assert by_name["corridor"].type == ParameterType.PARAMETER_DOUBLE_ARRAY
    assert "one of 'best_effort', 'reliable'" in by_name["qos_reliability"].additional_constraints
    assert "changeable at run time" in by_name["threshold"].additional_constraints
    assert "read at configure" in by_name["model"].additional_constraints


# -- in a real node ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model(untrained_model):
    return untrained_model(64, 128)


def make_node(**overrides):
    from densehybrid_ros.ros.detector_node import DetectorNode
    params = [Parameter(k, value=v) for k, v in overrides.items()]
    return DetectorNode(parameter_overrides=params)


def test_out_of_range_override_at_start_fails_configure_with_the_range(ros, model):
    node = make_node(model=str(model), threshold_source="parameter", threshold=5000.0, backend_threads=1)
    try:
        assert node.lifecycle_state == "unconfigured"
        assert "'threshold'" in node.error and "[-1000, 1000]" in node.error
    finally:
        node.close()
        node.destroy_node()


def test_params_file_with_a_bad_value_fails_configure_and_keeps_the_node_alive(ros, model, tmp_path):
    values = yaml.safe_load(PARAMS_FILE.read_text())
    values["/**"]["ros__parameters"].update(model=str(model), overlay_alpha=3.0, corridor_mode="everywhere",
                                            threshold_source="parameter", backend_threads=1)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(values))
    from densehybrid_ros.ros.detector_node import DetectorNode
    node = DetectorNode(cli_args=["--ros-args", "--params-file", str(path)])
    try:
        assert node.lifecycle_state == "unconfigured"
        assert "'overlay_alpha'" in node.error and "[0, 1]" in node.error
        assert "'corridor_mode'" in node.error and "'polygon', 'polygon_and_road'" in node.error
        # Fix the values while unconfigured, then configure: no restart needed.
        result = node.set_parameters([Parameter("overlay_alpha", value=0.4),
                                      Parameter("corridor_mode", value="polygon_and_road")])
        assert all(r.successful for r in result)
        node.trigger_configure()
        assert node.lifecycle_state == "inactive", node.error
    finally:
        node.close()
        node.destroy_node()


def test_an_integer_for_a_double_parameter_is_accepted_from_a_params_file(ros, model, tmp_path):
    path = tmp_path / "ints.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "model": str(model), "threshold_source": "parameter", "threshold": 2, "overlay_alpha": 1,
        "backend_threads": 1}}}))
    from densehybrid_ros.ros.detector_node import DetectorNode
    node = DetectorNode(cli_args=["--ros-args", "--params-file", str(path)])
    try:
        assert node.lifecycle_state == "active", node.error
        assert node.get_parameter("threshold").value == 2.0
    finally:
        node.close()
        node.destroy_node()


def test_a_misspelt_parameter_is_reported_not_silently_dropped(ros, model, tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "model": str(model), "threshold_source": "parameter", "treshold": 2.0, "backend_threads": 1}}}))
    from densehybrid_ros.ros.detector_node import DetectorNode
    from densehybrid_ros.ros.parameters import warn_unknown_overrides

    node = DetectorNode(cli_args=["--ros-args", "--params-file", str(path)])
    try:
        assert node.unknown_parameters == ["treshold"]
        assert node.get_parameter("threshold").value != 2.0  # what the typo leaves in force: hence the warning
        assert warn_unknown_overrides(node) == ["treshold"]
    finally:
        node.close()
        node.destroy_node()


def test_run_time_changes_are_validated_with_the_range_over_the_parameter_service(ros, model):
    from rclpy.parameter_client import AsyncParameterClient

    from densehybrid_ros.ros.testing import Spinner
    node = make_node(model=str(model), threshold_source="parameter", threshold=1.0, backend_threads=1)
    client_node = rclpy.create_node("param_client")
    spinner = Spinner(node, client_node)
    try:
        assert node.lifecycle_state == "active", node.error
        client = AsyncParameterClient(client_node, node.get_fully_qualified_name())
        assert client.wait_for_services(timeout_sec=10.0)

        def set_(*params):
            future = client.set_parameters(list(params))
            from densehybrid_ros.ros.testing import wait_for
            assert wait_for(future.done, 10.0)
            return future.result().results

        bad = set_(Parameter("overlay_alpha", value=1.5))[0]
        assert not bad.successful and "overlay_alpha" in bad.reason and "1.0" in bad.reason
        bad = set_(Parameter("corridor", value=[0.1, 0.2, 0.3]))[0]
        assert not bad.successful and "'corridor'" in bad.reason and "[0, 1]" in bad.reason
        bad = set_(Parameter("window_frames", value=2))[0]  # raise_frames (3) > window_frames
        assert not bad.successful and "raise_frames" in bad.reason
        static = set_(Parameter("backend", value="torch"))[0]
        assert not static.successful and "cannot change while the node is configured" in static.reason
        good = set_(Parameter("threshold", value=-2.5), Parameter("overlay_alpha", value=0.25))
        assert all(r.successful for r in good)
        assert node.current_tau() == -2.5
        assert node.get_parameter("overlay_alpha").value == 0.25
    finally:
        spinner.stop()
        client_node.destroy_node()
        node.close()
        node.destroy_node()


def test_node_documentation_lists_every_parameter_as_defined():
    from densehybrid_ros.config.detector import render_parameters_markdown
    page = (ROOT / "docs" / "NODE.md").read_text()
    assert render_parameters_markdown() in page, "docs/NODE.md parameter table is out of date"


def test_the_node_imports_without_torch(model):
    """The vehicle needs numpy, OpenCV, yaml, rclpy and one runtime: configuring the node must not load torch."""
    import subprocess
    import sys
    code = ("import sys, rclpy\n"
            "from rclpy.parameter import Parameter\n"
            "from densehybrid_ros.ros.detector_node import DetectorNode\n"
            "rclpy.init()\n"
            f"n = DetectorNode(parameter_overrides=[Parameter('model', value={str(model)!r}),"
            " Parameter('threshold_source', value='parameter'), Parameter('backend_threads', value=1)])\n"
            "assert n.lifecycle_state == 'active', n.error\n"
            "n.close(); n.destroy_node(); rclpy.shutdown()\n"
            "print('torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"
