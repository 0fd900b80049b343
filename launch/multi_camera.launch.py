"""One `multi_detector` node for several cameras: one model, one batched inference per round.

    densehybrid batch-graph --model models/densehybrid_lite0_synthetic.onnx     # once: the graph with a batch axis
    ros2 launch densehybrid_ros multi_camera.launch.py
    ros2 launch densehybrid_ros multi_camera.launch.py cameras:=front,rear,left,right model:=/opt/models/x_batch.onnx

The node reads camera `c` from `/<c>/<camera_image_topic>` and publishes its outputs on `/<c>/detector/...`, the
topics two_cameras.launch.py's per-camera nodes publish, so consumers do not change. It reads the detector's
params file (every detector parameter applies to every camera) and then params/multi_camera.yaml (cameras,
topics). The node process gets the DDS settings of params/dds.env, as detector.launch.py's does.
"""
import os
from pathlib import Path

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

from densehybrid_ros.config.dds import apply_dds_env

PACKAGE = "densehybrid_ros"
NODE_EXECUTABLE = "multi_detector"
NODE_NAME = "multi_detector"

ARGUMENTS = {
    "cameras": ("", "Camera namespaces, comma separated (front,rear,left); empty keeps the multi-camera params file."),
    "params_file": ("", "Detector parameters (default: the package's params/detector.yaml)."),
    "multi_camera_params_file": ("", "Multi-camera parameters (default: the package's params/multi_camera.yaml)."),
    "model": ("", "Model with a batch axis (.onnx or .card.yaml); empty keeps the params files' value (default: "
                  "the batch copy of the shipped model)."),
    "use_sim_time": ("false", "Use /clock (bag replay)."),
    "log_level": ("info", "Logging level of the node."),
}


def _share(*parts: str) -> str:
    try:
        from ament_index_python.packages import get_package_share_directory
        return str(Path(get_package_share_directory(PACKAGE), *parts))
    except Exception:  # noqa: BLE001 - running from a source checkout
        return str(Path(__file__).resolve().parents[1].joinpath(*parts))


def _launch_setup(context, *args, **kwargs):
    arg = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    overrides = {"use_sim_time": arg["use_sim_time"].lower() == "true"}
    if arg["cameras"]:
        overrides["cameras"] = [c.strip() for c in arg["cameras"].split(",") if c.strip()]
    if arg["model"]:
        overrides["model"] = arg["model"]
    node = LifecycleNode(
        package=PACKAGE,
        executable=NODE_EXECUTABLE,
        name=NODE_NAME,
        namespace="",
        parameters=[arg["params_file"] or _share("params", "detector.yaml"),
                    arg["multi_camera_params_file"] or _share("params", "multi_camera.yaml"), overrides],
        arguments=["--ros-args", "--log-level", arg["log_level"]],
        output="screen",
        emulate_tty=True,
    )
    return [node]


def generate_launch_description() -> LaunchDescription:
    declared = [DeclareLaunchArgument(name, default_value=default, description=text)
                for name, (default, text) in ARGUMENTS.items()]
    # params/dds.env for the node process, minus what the environment already sets (a vehicle's own profile wins).
    dds = [SetEnvironmentVariable(key, value) for key, value in apply_dds_env(dict(os.environ)).items()]
    return LaunchDescription(declared + dds + [OpaqueFunction(function=_launch_setup)])
