"""The package as ROS 2 and pip see it: colcon builds the ament_python package, the CLI answers --help."""
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from densehybrid_ros.cli import SUMMARIES, available_commands, main

ROOT = Path(__file__).resolve().parents[1]


def test_package_xml_is_format_3_ament_python_with_runtime_dependencies():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "densehybrid_ros"
    assert root.find("export/build_type").text == "ament_python"
    deps = {e.text for e in root.findall("exec_depend")}
    assert {"rclpy", "sensor_msgs", "diagnostic_msgs", "python3-numpy", "python3-opencv"} <= deps


@pytest.mark.slow
def test_colcon_builds_the_workspace_and_installs_launch_params_models_and_executables(tmp_path):
    colcon = Path(sys.executable).with_name("colcon")
    if not colcon.exists():
        colcon = shutil.which("colcon")
    assert colcon, "colcon is a dev requirement (requirements/dev.txt)"
    proc = subprocess.run(
        [str(colcon), "--log-base", str(tmp_path / "log"), "build", "--base-paths", "src",
         "--build-base", str(tmp_path / "build"), "--install-base", str(tmp_path / "install")],
        cwd=ROOT / "ros2_ws", capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    share = tmp_path / "install/densehybrid_ros/share/densehybrid_ros"
    assert (share / "package.xml").is_file()
    assert (tmp_path / "install/densehybrid_ros/share/ament_index/resource_index/packages/densehybrid_ros").exists()
    for sub, pattern in [("launch", "*.launch.py"), ("params", "*.yaml"), ("rviz", "*.rviz")]:
        if list((ROOT / sub).glob(pattern)):
            assert list((share / sub).glob(pattern)), f"{sub}/ not installed"
    # The DDS settings the launch files apply to the node (camera-sized images between processes).
    for name in ("dds.env", "fastdds.xml"):
        assert (share / "params" / name).is_file(), f"params/{name} not installed"
    lib = tmp_path / "install/densehybrid_ros/lib/densehybrid_ros"
    assert (lib / "detector").is_file() and (lib / "densehybrid").is_file()  # `ros2 run densehybrid_ros detector`


def test_cli_lists_its_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in available_commands():
        assert name in out


def test_unknown_command_is_refused_with_the_valid_ones(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(SUMMARIES))
def test_every_available_command_has_help(name):
    if name not in available_commands():
        pytest.skip(f"command {name} is not part of this install")
    proc = subprocess.run([sys.executable, "-m", "densehybrid_ros.cli", name, "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"densehybrid {name}" in proc.stdout
