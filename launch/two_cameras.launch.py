"""Two detectors, front and rear camera, one process each, sharing one params file.

    ros2 launch densehybrid_ros two_cameras.launch.py
    ros2 launch densehybrid_ros two_cameras.launch.py params_file:=/etc/vehicle/detector.yaml

Each node lives in its camera's namespace (/front/detector, /rear/detector); both publish to /diagnostics, where
the status names tell them apart. The shipped params file uses the '/**' wildcard, so it applies to both.
Each included detector.launch.py gives its node the DDS settings of params/dds.env (camera-sized images between
processes).
"""
from pathlib import Path

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

CAMERAS = {
    # camera namespace -> launch arguments of detector.launch.py
    "front": {"camera": "front", "image_topic": "image_raw", "camera_info_topic": "camera_info"},
    "rear": {"camera": "rear", "image_topic": "image_raw", "camera_info_topic": "camera_info"},
}
SHARED_ARGUMENTS = ("params_file", "model", "use_sim_time")


def generate_launch_description() -> LaunchDescription:
    detector_launch = str(Path(__file__).resolve().with_name("detector.launch.py"))
    declared = [
        DeclareLaunchArgument("params_file", default_value="", description="Parameters for both detectors."),
        DeclareLaunchArgument("model", default_value="", description="Model for both detectors."),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="Use /clock (bag replay)."),
    ]
    includes = []
    for camera, arguments in CAMERAS.items():
        shared = {name: LaunchConfiguration(name) for name in SHARED_ARGUMENTS}
        includes.append(IncludeLaunchDescription(
            PythonLaunchDescriptionSource(detector_launch),
            launch_arguments={**arguments, **shared}.items(),
        ))
    return LaunchDescription(declared + includes)
