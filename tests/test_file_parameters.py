"""Parameters that name files are checked for existence and kind at start-up (issue 15, security basics): a `model`
that is a directory, a missing file or a device is refused at configure with the parameter and the path named,
instead of a later "model file not found" for a path that does exist; `engine_cache_dir` must be a folder."""
import os

import pytest
from rclpy.parameter import Parameter

from densehybrid_ros.config.detector import DetectorConfig
from densehybrid_ros.ros.parameters import file_parameter_problems


def problems(**values):
    return file_parameter_problems(DetectorConfig.from_values(values))


def test_a_model_that_is_a_directory_is_named_as_a_directory(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    (message,) = problems(model=str(folder))
    assert message == (f"parameter 'model' = '{folder}': {folder} is a directory, expected an .onnx file "
                       f"(or its .card.yaml)")


def test_a_missing_model_and_a_device_are_refused_naming_the_path(tmp_path):
    missing = tmp_path / "nope.onnx"
    (message,) = problems(model=str(missing))
    assert f"parameter 'model' = '{missing}'" in message and "does not exist" in message
    (message,) = problems(model="/dev/null")
    assert "/dev/null is not a regular file" in message


def test_engine_cache_dir_must_be_a_folder_or_not_exist_yet(tmp_path, untrained_model):
    model = untrained_model(32, 64)
    a_file = tmp_path / "cache"
    a_file.write_text("")
    assert problems(model=str(model), engine_cache_dir=str(tmp_path)) == []
    assert problems(model=str(model), engine_cache_dir=str(tmp_path / "later")) == []  # created when engines are built
    (message,) = problems(model=str(model), engine_cache_dir=str(a_file))
    assert message == f"parameter 'engine_cache_dir' = '{a_file}': {a_file} is a file, expected a folder"
    (message,) = problems(engine_cache_dir=str(a_file / "sub"))
    assert f"{a_file} is not a folder" in message


def test_defaults_and_a_real_model_pass(untrained_model):
    assert problems() == []
    assert problems(model=str(untrained_model(32, 64))) == []


def test_every_problem_is_reported_together(tmp_path):
    a_file = tmp_path / "cache"
    a_file.write_text("")
    assert len(problems(model=str(tmp_path), engine_cache_dir=str(a_file))) == 2


def test_the_node_refuses_a_directory_model_at_start_and_stays_alive(ros, tmp_path):
    from densehybrid_ros.ros.detector_node import DetectorNode

    node = DetectorNode(namespace="/file_params", parameter_overrides=[Parameter("model", value=str(tmp_path))])
    try:
        assert node.lifecycle_state == "unconfigured"
        assert f"{tmp_path} is a directory, expected an .onnx file" in node.error, node.error
        assert "not found" not in node.error
    finally:
        node.close()
        node.destroy_node()


@pytest.mark.slow
def test_the_node_process_says_so_at_start_up(tmp_path):
    """As deployed: the node in its own process, the directory given with -p model:=..."""
    from densehybrid_ros.ros.node_process import NodeProcess, prepare_ros_environment

    env = prepare_ros_environment()
    with NodeProcess("/file_params_proc", {"model": str(tmp_path)}, env=env) as proc:
        assert proc.wait_for_output("configure failed", 60.0), proc.output()
        line = next(line for line in proc.lines() if "configure failed" in line)
        assert f"parameter 'model' = '{tmp_path}': {tmp_path} is a directory, expected an .onnx file" in line, line
        assert proc.alive(), "a bad parameter leaves the node alive and unconfigured"
        code, _ = proc.stop()
    assert code == 0, proc.output()
