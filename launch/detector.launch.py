"""Start one `detector` node for one camera.

    ros2 launch densehybrid_ros detector.launch.py camera:=front image_topic:=image_raw
    ros2 launch densehybrid_ros detector.launch.py camera:=front model:=/opt/models/city.onnx use_sim_time:=true
    ros2 launch densehybrid_ros detector.launch.py camera:=sim model:=<package>/models/densehybrid_lite0_synthetic.onnx

With the params file's empty `model`, the node runs the package's default model (DEFAULT_MODEL_NAME in
ros/detector_node.py, from its models/ folder). The synthetic world's drives and bags need the synthetic-world
model named as above. A camera whose aspect ratio differs from the model's input is stretched to it (docs/NODE.md,
"Frame size and aspect ratio"): give such a camera a model exported at its aspect.

The node runs in the camera's namespace (/<camera>/detector, outputs /<camera>/detector/overlay, ...), reads the
params file, and its inputs `image`, `image/compressed` and `camera_info` are remapped to the camera driver's
topics. Launch arguments left empty do not override the params file. The node configures and activates itself
(`autostart`), so no lifecycle manager is needed; it is started as a LifecycleNode so launch can still drive
its transitions.

The node process gets the DDS settings of the package's params/dds.env (a Fast DDS profile whose transports carry
camera-sized images between processes; with the defaults a 1.5 MB frame from the camera driver never arrives).
Settings already in the environment that runs `ros2 launch` are kept, so a vehicle's own profile wins. The camera
driver needs the same settings: see the README.
"""
import os
from pathlib import Path

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

from densehybrid_ros.config.dds import apply_dds_env

PACKAGE = "densehybrid_ros"
NODE_EXECUTABLE = "detector"
NODE_NAME = "detector"

# Launch argument -> (default, description).
ARGUMENTS = {
    "camera": ("camera", "Camera name: the namespace of the node and of the camera's topics."),
    "image_topic": ("image_raw", "Raw image topic of the camera, relative to its namespace or absolute."),
    "camera_info_topic": ("camera_info", "CameraInfo topic of the camera, relative to its namespace or absolute."),
    "params_file": ("", "Parameters file (default: the package's params/detector.yaml)."),
    "model": ("", "Model .onnx or .card.yaml; empty keeps the params file's value (its empty value: the package's "
                  "default model)."),
    "backend": ("", "onnxruntime | tensorrt | torch; empty keeps the params file's value."),
    "input_transport": ("", "raw | compressed; empty keeps the params file's value."),
    "use_sim_time": ("false", "Use /clock (bag replay)."),
    "log_level": ("info", "Logging level of the node."),
}

# Node parameter <- launch argument, set only when the argument is not empty.
PARAMETER_ARGUMENTS = {
    "model": "model",
    "backend": "backend",
    "input_transport": "input_transport",
    "use_sim_time": "use_sim_time",
}

# Node input topic -> launch argument naming the camera's topic (compressed follows image_transport's
# "<image>/compressed" naming).
REMAPPING_ARGUMENTS = {
    "image": "image_topic",
    "image/compressed": "image_topic",
    "camera_info": "camera_info_topic",
}
REMAPPING_SUFFIX = {"image": "", "image/compressed": "/compressed", "camera_info": ""}


def default_params_file() -> str:
    try:
        from ament_index_python.packages import get_package_share_directory
        return str(Path(get_package_share_directory(PACKAGE)) / "params" / "detector.yaml")
    except Exception:  # noqa: BLE001 - running from a source checkout
        return str(Path(__file__).resolve().parents[1] / "params" / "detector.yaml")


def dds_settings() -> list:
    """params/dds.env for the processes launched after these actions, minus what the environment already sets."""
    return [SetEnvironmentVariable(key, value) for key, value in apply_dds_env(dict(os.environ)).items()]


def _typed(value: str):
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return value


def _launch_setup(context, *args, **kwargs):
    arg = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    overrides = {param: _typed(arg[name]) for param, name in PARAMETER_ARGUMENTS.items() if arg[name] != ""}
    remappings = [(topic, arg[name] + REMAPPING_SUFFIX[topic]) for topic, name in REMAPPING_ARGUMENTS.items()]
    node = LifecycleNode(
        package=PACKAGE,
        executable=NODE_EXECUTABLE,
        name=NODE_NAME,
        namespace=arg["camera"],
        parameters=[arg["params_file"] or default_params_file(), overrides],
        remappings=remappings,
        arguments=["--ros-args", "--log-level", arg["log_level"]],
        output="screen",
        emulate_tty=True,
    )
    return [node]


def generate_launch_description() -> LaunchDescription:
    declared = [DeclareLaunchArgument(name, default_value=default, description=text)
                for name, (default, text) in ARGUMENTS.items()]
    return LaunchDescription(declared + dds_settings() + [OpaqueFunction(function=_launch_setup)])
