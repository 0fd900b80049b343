"""stopped_by_signal: every way rclpy reports a stop requested by a signal ends a spin quietly, and a real fault does
not."""
import pytest
import rclpy
from rclpy.executors import ExternalShutdownException

from densehybrid_ros.ros.signals import RCLError, stopped_by_signal


@pytest.mark.parametrize("raised", [KeyboardInterrupt, ExternalShutdownException])
def test_a_requested_stop_ends_the_block_quietly(raised):
    with stopped_by_signal():
        raise raised()


def test_an_rcl_error_after_the_context_was_shut_down_is_a_stop():
    context = rclpy.Context()
    rclpy.init(context=context)
    rclpy.shutdown(context=context)  # what the signal handler does before the wait set fails
    with stopped_by_signal(context):
        raise RCLError("failed to initialize wait set: the given context is not valid")


def test_an_rcl_error_while_the_context_is_valid_propagates():
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        with pytest.raises(RCLError):
            with stopped_by_signal(context):
                raise RCLError("a real failure")
    finally:
        rclpy.shutdown(context=context)


def test_other_errors_propagate():
    with pytest.raises(ValueError):
        with stopped_by_signal():
            raise ValueError("not a stop")
