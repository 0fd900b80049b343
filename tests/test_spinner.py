"""The test-support Spinner (ros/testing.py): a callback that raises fails the test with its traceback instead of
leaving it to time out."""
import pytest
import rclpy
from rclpy.node import Node

from densehybrid_ros.ros.testing import Spinner, wait_for


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.try_shutdown()


def test_an_exception_in_a_callback_is_raised_by_check_and_stop(ros):
    node = Node("spinner_crash")
    ticks = []

    def crash():
        ticks.append(1)
        raise ZeroDivisionError("the callback's own error")

    node.create_timer(0.01, crash)
    spinner = Spinner(node)
    try:
        assert wait_for(lambda: spinner.error is not None, 10.0), "the timer never fired"
        with pytest.raises(RuntimeError, match="exception in a callback") as info:
            spinner.check()
        assert isinstance(info.value.__cause__, ZeroDivisionError)
    finally:
        with pytest.raises(RuntimeError) as stopped:
            spinner.stop()
        node.destroy_node()
    assert "the callback's own error" in str(stopped.value.__cause__)


def test_a_healthy_spin_stops_quietly(ros):
    node = Node("spinner_ok")
    ticks = []
    node.create_timer(0.01, lambda: ticks.append(1))
    spinner = Spinner(node)
    assert wait_for(lambda: len(ticks) >= 3, 10.0)
    spinner.stop()
    spinner.check()
    node.destroy_node()


def test_shutting_the_context_down_under_a_spin_is_not_an_error():
    rclpy.init()
    node = Node("spinner_shutdown")
    spinner = Spinner(node)
    rclpy.try_shutdown()
    spinner.stop()
    assert spinner.error is None
