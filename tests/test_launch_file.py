"""The launch files, checked without launch_ros (it cannot be installed from PyPI): parsed with ast, every parameter
they set must be declared by the real node and every remapping must name a topic the real node subscribes to, and
the node process must get the DDS settings of params/dds.env. Where launch_ros imports (a ROS 2 distro install),
the launch file is also run for real."""
import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rclpy
import yaml
from rclpy.parameter import Parameter


ROOT = Path(__file__).resolve().parents[1]
DETECTOR_LAUNCH = ROOT / "launch" / "detector.launch.py"
TWO_CAMERAS_LAUNCH = ROOT / "launch" / "two_cameras.launch.py"


def _launch_importable() -> str:
    """"" when launch and launch_ros import in a fresh interpreter, else why not. find_spec is not enough: a
    launch_ros that is present but cannot import (a missing message package) must skip the test, not fail it."""
    done = subprocess.run([sys.executable, "-c", "import launch, launch_ros"], capture_output=True, text=True,
                          timeout=60)
    return "" if done.returncode == 0 else (done.stderr.strip().splitlines() or ["import failed"])[-1]


LAUNCH_ROS_MISSING = _launch_importable()
# The launch service must run in a main thread (it installs signal handlers): it runs in a child process.
LAUNCH_SCRIPT = """
import sys
from launch import LaunchDescription, LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
service = LaunchService()
service.include_launch_description(LaunchDescription([IncludeLaunchDescription(
    PythonLaunchDescriptionSource(sys.argv[1]), launch_arguments={"camera": "launch_cam", "model": sys.argv[2]}.items())]))
sys.exit(service.run())
"""


def module_literals(path: Path) -> dict:
    """Module-level NAME = <literal> assignments of a launch file, evaluated safely."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return out


def node_calls(path: Path) -> list[ast.Call]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") in
            ("Node", "LifecycleNode")]


def literal_keys_in(node: ast.AST) -> set[str]:
    """String keys of dict literals and first elements of tuple literals inside `node`."""
    keys = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Dict):
            keys |= {k.value for k in n.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
        if isinstance(n, ast.Tuple) and n.elts and isinstance(n.elts[0], ast.Constant) and \
                isinstance(n.elts[0].value, str):
            keys.add(n.elts[0].value)
    return keys


def function_def(path: Path, name: str) -> ast.FunctionDef:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
    assert found, f"{path.name} has no function {name}()"
    return found[0]


def launch_description_items(path: Path) -> list[str]:
    """The names (variables, or the functions called) added up into the LaunchDescription that
    generate_launch_description returns, in order: `LaunchDescription(declared + dds_settings() + [...])`."""
    ret = next(n for n in ast.walk(function_def(path, "generate_launch_description")) if isinstance(n, ast.Return))
    call = ret.value
    assert isinstance(call, ast.Call) and call.func.id == "LaunchDescription"
    items: list[str] = []

    def flatten(node):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            flatten(node.left)
            flatten(node.right)
        elif isinstance(node, ast.Call):
            items.append(node.func.id)
        elif isinstance(node, ast.Name):
            items.append(node.id)
        elif isinstance(node, ast.List):
            items.extend(e.func.id if isinstance(e, ast.Call) else ast.dump(e) for e in node.elts)

    flatten(call.args[0])
    return items


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from densehybrid_ros.ros.testing import export_untrained_model
    return export_untrained_model(tmp_path_factory.mktemp("model") / "untrained.onnx", 64, 128)


@pytest.fixture(scope="module")
def real_node_interface(model):
    """Parameters and subscribed topics of real nodes, one per input transport."""
    from densehybrid_ros.ros.detector_node import DetectorNode
    rclpy.init()
    params, topics = set(), set()
    try:
        for transport in ("raw", "compressed"):
            ns = f"/launch_check_{transport}"
            node = DetectorNode(namespace=ns, parameter_overrides=[
                Parameter("model", value=str(model)), Parameter("threshold_source", value="parameter"),
                Parameter("input_transport", value=transport), Parameter("backend_threads", value=1)])
            try:
                assert node.lifecycle_state == "active", node.error
                params |= set(node.list_parameters([], 0).names)
                for name, _ in node.get_subscriber_names_and_types_by_node(node.get_name(), ns):
                    topics.add(name[len(ns) + 1:] if name.startswith(ns + "/") else name)
            finally:
                node.close()
                node.destroy_node()
    finally:
        rclpy.try_shutdown()
    return params, topics


def test_launch_files_are_valid_python_with_a_launch_description():
    for path in (DETECTOR_LAUNCH, TWO_CAMERAS_LAUNCH):
        tree = ast.parse(path.read_text(), filename=str(path))
        assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)


def test_launch_arguments_cover_camera_topic_params_model_backend_and_sim_time():
    args = module_literals(DETECTOR_LAUNCH)["ARGUMENTS"]
    assert {"camera", "image_topic", "params_file", "model", "backend", "use_sim_time"} <= set(args)
    assert all(len(text) > 10 for _, text in args.values())


def test_every_parameter_the_launch_file_sets_is_declared_by_the_node(real_node_interface):
    declared, _ = real_node_interface
    literals = module_literals(DETECTOR_LAUNCH)
    set_by_arguments = set(literals["PARAMETER_ARGUMENTS"])
    set_by_literals = set()
    for call in node_calls(DETECTOR_LAUNCH):
        for kw in call.keywords:
            if kw.arg == "parameters":
                set_by_literals |= literal_keys_in(kw.value)
    assert set_by_arguments, "the launch file sets no parameters?"
    assert (set_by_arguments | set_by_literals) <= declared, (set_by_arguments | set_by_literals) - declared
    # Every launch argument used for a parameter is a declared launch argument.
    assert set(literals["PARAMETER_ARGUMENTS"].values()) <= set(literals["ARGUMENTS"])
    # And the params file the launch loads by default sets only declared parameters.
    shipped = yaml.safe_load((ROOT / "params" / "detector.yaml").read_text())["/**"]["ros__parameters"]
    assert set(shipped) <= declared


def test_every_remapping_targets_a_topic_the_node_subscribes_to(real_node_interface):
    _, subscribed = real_node_interface
    literals = module_literals(DETECTOR_LAUNCH)
    remapped = set(literals["REMAPPING_ARGUMENTS"])
    for call in node_calls(DETECTOR_LAUNCH):
        for kw in call.keywords:
            if kw.arg == "remappings":
                remapped |= literal_keys_in(kw.value)
    assert remapped == {"image", "image/compressed", "camera_info"}
    assert remapped <= subscribed, (remapped, subscribed)
    assert set(literals["REMAPPING_ARGUMENTS"].values()) <= set(literals["ARGUMENTS"])
    assert set(literals["REMAPPING_SUFFIX"]) == set(literals["REMAPPING_ARGUMENTS"])


def test_the_node_is_started_from_the_package_executable():
    literals = module_literals(DETECTOR_LAUNCH)
    assert literals["PACKAGE"] == "densehybrid_ros" and literals["NODE_EXECUTABLE"] == "detector"
    setup = (ROOT / "setup.py").read_text()
    assert "detector = densehybrid_ros.ros.detector_node:main" in setup
    assert len(node_calls(DETECTOR_LAUNCH)) == 1


def test_two_camera_example_passes_only_arguments_the_detector_launch_declares():
    detector_args = set(module_literals(DETECTOR_LAUNCH)["ARGUMENTS"])
    literals = module_literals(TWO_CAMERAS_LAUNCH)
    cameras = literals["CAMERAS"]
    assert len(cameras) == 2 and len({c["camera"] for c in cameras.values()}) == 2
    for arguments in cameras.values():
        assert set(arguments) <= detector_args
    assert set(literals["SHARED_ARGUMENTS"]) <= detector_args
    assert "detector.launch.py" in TWO_CAMERAS_LAUNCH.read_text()


def test_the_node_process_gets_the_dds_settings_before_it_starts():
    """detector.launch.py puts params/dds.env into the environment of the node it launches: SetEnvironmentVariable
    actions, ahead of the action that creates the node."""
    items = launch_description_items(DETECTOR_LAUNCH)
    assert "dds_settings" in items and "OpaqueFunction" in items, items
    assert items.index("dds_settings") < items.index("OpaqueFunction"), items
    tree = ast.parse(DETECTOR_LAUNCH.read_text())
    imports = {(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert ("densehybrid_ros.config.dds", "apply_dds_env") in imports
    assert ("launch.actions", "SetEnvironmentVariable") in imports


def test_dds_settings_give_the_shipped_values_and_keep_what_the_environment_already_sets(monkeypatch):
    """dds_settings() of the launch file, run for real; SetEnvironmentVariable (launch is not installed here) is
    replaced by a (name, value) pair."""
    from densehybrid_ros.config.dds import apply_dds_env, read_dds_env

    module = ast.Module(body=[function_def(DETECTOR_LAUNCH, "dds_settings")], type_ignores=[])
    namespace = {"SetEnvironmentVariable": lambda name, value: (name, value), "apply_dds_env": apply_dds_env,
                 "os": os}
    exec(compile(module, str(DETECTOR_LAUNCH), "exec"), namespace)
    shipped = read_dds_env()
    for key in shipped:
        monkeypatch.delenv(key, raising=False)
    before = dict(os.environ)
    assert dict(namespace["dds_settings"]()) == shipped
    assert dict(os.environ) == before, "the launch file must not change the environment of `ros2 launch` itself"
    assert Path(shipped["FASTDDS_DEFAULT_PROFILES_FILE"]).is_file()

    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "SUBNET")  # a vehicle's own choice wins
    settings = dict(namespace["dds_settings"]())
    assert "ROS_AUTOMATIC_DISCOVERY_RANGE" not in settings
    assert settings == {k: v for k, v in shipped.items() if k != "ROS_AUTOMATIC_DISCOVERY_RANGE"}


def test_the_two_camera_example_gets_the_dds_settings_through_the_detector_launch():
    items = launch_description_items(TWO_CAMERAS_LAUNCH)
    assert "includes" in items
    calls = [n for n in ast.walk(ast.parse(TWO_CAMERAS_LAUNCH.read_text())) if isinstance(n, ast.Call)]
    assert any(getattr(c.func, "id", "") == "IncludeLaunchDescription" for c in calls)
    assert "SetEnvironmentVariable" not in TWO_CAMERAS_LAUNCH.read_text(), \
        "one place sets the DDS settings (detector.launch.py); two would drift"


@pytest.mark.skipif(bool(LAUNCH_ROS_MISSING), reason=f"launch/launch_ros do not import ({LAUNCH_ROS_MISSING}; no "
                    "PyPI wheel, ROS 2 distro installs have them): the launch file is checked by parsing only")
def test_launch_file_runs_for_real(model):  # pragma: no cover - needs a ROS 2 distro install
    # Without the profile in its environment, the launched node can only have it from the launch file.
    env = {k: v for k, v in os.environ.items() if k != "FASTDDS_DEFAULT_PROFILES_FILE"}
    # Its own process group, which gets the SIGINT below as a terminal's Ctrl-C reaches `ros2 launch` and the node
    # together (launch itself does not pass a SIGINT on to its processes: it expects the terminal to have sent it).
    launch = subprocess.Popen([sys.executable, "-c", LAUNCH_SCRIPT, str(DETECTOR_LAUNCH), str(model)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    rclpy.init()
    try:
        probe = rclpy.create_node("launch_probe")
        deadline = time.monotonic() + 30
        found = False
        while time.monotonic() < deadline and not found:
            found = ("detector", "/launch_cam") in probe.get_node_names_and_namespaces()
            time.sleep(0.2)
        assert found, "the launched node did not appear"
        probe.destroy_node()
        # The node process got the DDS settings (its environment, from /proc).
        environs = []
        for proc in Path("/proc").iterdir():
            try:
                if b"__ns:=/launch_cam" in (proc / "cmdline").read_bytes():
                    environs.append((proc / "environ").read_bytes().split(b"\0"))
            except OSError:
                continue
        assert environs, "no process with __ns:=/launch_cam"
        assert any(e.startswith(b"FASTDDS_DEFAULT_PROFILES_FILE=") for env in environs for e in env)
    finally:
        rclpy.try_shutdown()
        os.killpg(launch.pid, signal.SIGINT)  # as Ctrl-C on `ros2 launch`
        try:
            out, _ = launch.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            launch.kill()
            out, _ = launch.communicate()
            raise AssertionError(f"the launch service did not stop within 20 s of SIGINT:\n{out}")
    assert launch.returncode == 0, out
    # The node stopped on the SIGINT itself, within launch's 5 s, not on the SIGTERM launch escalates to.
    assert "escalating to 'SIGTERM'" not in out and "process has finished cleanly" in out, out
