"""Test-wide settings: DDS stays on this machine with transports that carry camera-sized images between
processes (params/dds.env), and each pytest run gets its own ROS domain."""
import os

from densehybrid_ros.config.dds import apply_dds_env

# Before any rclpy import: Fast DDS reads these when a participant is created, and child processes (the node
# under test) inherit them.
apply_dds_env(override=True)
# Domain ids 0..101 are safe on Linux with the default port mapping; spread runs by pid so that parallel
# runs (a developer's and CI's) do not see each other's topics.
os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 90))


# -- shared fixtures ----------------------------------------------------------------------------------------------
import pytest  # noqa: E402 - after the DDS environment above, like every ROS import


def _remove_dead_processes_shared_memory() -> None:
    """Tests that kill processes on purpose (faults, watchdogs) leave their 64 MB Fast DDS segments in /dev/shm, which
    is RAM; remove those of earlier runs before this one and this run's at its end (docs/RELIABILITY.md, known
    issue 12). Only segments whose owner process has ended are touched."""
    from densehybrid_ros.ros.fastdds_shm import remove_stale_segments

    remove_stale_segments()


def pytest_sessionstart(session):
    _remove_dead_processes_shared_memory()


def pytest_sessionfinish(session, exitstatus):
    _remove_dead_processes_shared_memory()


@pytest.fixture(scope="session")
def untrained_model(tmp_path_factory):
    """`untrained_model(height, width, seed=0, **options)` -> an untrained .onnx (card beside it, as
    `densehybrid export --untrained` writes it), exported once per run for each set of arguments and shared by
    every test file: copy it before changing its folder."""
    from densehybrid_ros.ros.testing import export_untrained_model

    made = {}

    def make(height: int, width: int, seed: int = 0, **options):
        key = (height, width, seed, tuple(sorted(options.items())))
        if key not in made:
            folder = tmp_path_factory.mktemp(f"untrained_{height}x{width}_s{seed}")
            made[key] = export_untrained_model(folder / "untrained.onnx", height, width, seed=seed, **options)
        return made[key]

    return make


@pytest.fixture(scope="module")
def ros():
    """The default rclpy context for one test module (nodes created without `context=` use it)."""
    import rclpy

    rclpy.init()
    yield
    rclpy.try_shutdown()
