"""stopped_by_signal: every way rclpy reports a stop requested by a signal ends a spin quietly, and a real fault does
not. spin_until_signal: the KeyboardInterrupt of that signal, arriving after the spin has ended, does not interrupt
the stop. run_until_signal: the same for any spin loop (the bag recorder's, camera_stream's listener)."""
import signal
import threading

import pytest
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

from densehybrid_ros.ros.signals import RCLError, run_until_signal, spin_until_signal, stopped_by_signal


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


@pytest.mark.parametrize("raised", [RCLError, RuntimeError])
def test_an_error_while_the_context_stays_valid_propagates(raised):
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        with pytest.raises(raised):
            with stopped_by_signal(context, grace_s=0.2):
                raise raised("a real failure")
    finally:
        rclpy.shutdown(context=context)


def _shut_down_later(context, seconds: float) -> None:
    threading.Timer(seconds, rclpy.try_shutdown, kwargs=dict(context=context)).start()


@pytest.mark.parametrize("raised", [RCLError("failed to initialize wait set: the given context is not valid"),
                                    RuntimeError("Unable to convert call argument '0' to Python object")])
def test_an_error_just_before_the_signal_thread_shuts_the_context_down_is_a_stop(raised):
    # The KeyboardInterrupt of a SIGINT landing inside take_message's conversion comes out as this RuntimeError,
    # and rclpy's signal thread may shut the context down just after.
    context = rclpy.Context()
    rclpy.init(context=context)
    _shut_down_later(context, 0.2)
    with stopped_by_signal(context):
        raise raised


def test_other_errors_propagate():
    with pytest.raises(ValueError):
        with stopped_by_signal():
            raise ValueError("not a stop")


@pytest.fixture
def python_signal_handlers():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def _busy(n: int = 20000) -> int:
    total = 0
    for i in range(n):  # bytecodes: where Python raises a pending KeyboardInterrupt
        total += i
    return total


@pytest.fixture
def executor_stopped_from_another_thread():
    """A real executor whose context is shut down 0.2 s into its spin from another thread, as rclpy's signal thread
    does on SIGINT: the spin ends without a KeyboardInterrupt, which Python raises later."""
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("late_signal", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    _shut_down_later(context, 0.2)
    yield executor, context
    executor.shutdown()
    node.destroy_node()


def test_a_keyboard_interrupt_after_the_spin_ended_does_not_interrupt_the_stop(python_signal_handlers,
                                                                                executor_stopped_from_another_thread):
    executor, context = executor_stopped_from_another_thread
    spin_until_signal(executor, context)
    # Python's KeyboardInterrupt for the same SIGINT comes during the teardown, as does a second Ctrl-C.
    signal.raise_signal(signal.SIGINT)
    _busy()
    signal.raise_signal(signal.SIGTERM)
    _busy()


def test_a_spin_once_loop_is_stopped_the_same_way(python_signal_handlers, executor_stopped_from_another_thread):
    # The bag recorder's loop: what follows it (closing the bag) must run whole when the late KeyboardInterrupt comes.
    executor, context = executor_stopped_from_another_thread
    rounds = []

    def loop():
        while True:  # only the stop ends it
            executor.spin_once(timeout_sec=0.05)
            rounds.append(1)

    run_until_signal(loop, context)
    signal.raise_signal(signal.SIGINT)
    _busy()
    assert rounds, "the loop never ran"


def test_the_bare_spin_lets_that_keyboard_interrupt_escape_into_the_teardown(python_signal_handlers,
                                                                             executor_stopped_from_another_thread):
    # The control: the same stop around the plain spin, with Python's own SIGINT handler in place.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    executor, context = executor_stopped_from_another_thread
    with stopped_by_signal(context):
        executor.spin()
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
        _busy()


def test_a_fault_of_the_spin_still_propagates(python_signal_handlers):
    class Faulty:
        def spin(self):
            raise ValueError("not a stop")

    with pytest.raises(ValueError):
        spin_until_signal(Faulty())
