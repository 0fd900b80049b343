"""How a ROS 2 process ends cleanly on Ctrl-C or SIGTERM.

rclpy's signal handler shuts the context down, and the spinning executor then reports the stop in one of three
ways, depending on where the signal lands: KeyboardInterrupt, ExternalShutdownException, or — when it lands while
the executor builds its wait set — RCLError "failed to initialize wait set: the given context is not valid".
All three are a requested stop; only an RCLError while the context is still valid is a real fault. Measured on the
node: about 4% of busy exits took the RCLError path and ended with exit code 1 before this was handled.

One SIGINT reaches the process twice: rclpy's handler shuts the context down from its own thread, and Python raises
KeyboardInterrupt in the main thread at its next bytecode check. When the spin ends the first way, the
KeyboardInterrupt is still pending and lands wherever the main thread is next: in the handling of the first, or in
the teardown that follows. `spin_until_signal` mutes signals once the spin has ended, so neither becomes a fault.

When the KeyboardInterrupt lands while rclpy converts a received message into Python (inside `take_message`),
pybind11 reports the failed conversion as RuntimeError "Unable to convert call argument '0' to Python object" and
the interrupt is gone (2 of 40 busy SIGINT stops on a loaded machine; 0 of 280 since). rclpy's signal thread shuts
the context down at about the same time, possibly just after the error reaches us: an RCLError or RuntimeError out
of the spin is therefore a stop if the context goes down within STOP_GRACE_S, and a fault otherwise.
"""
from __future__ import annotations

import signal
import sys
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.impl.implementation_singleton import rclpy_implementation

RCLError = rclpy_implementation.RCLError
# How long an error out of the spin may precede the signal thread's context shutdown and still count as the stop.
STOP_GRACE_S = 1.0


def _shut_down_within(context: Any, seconds: float) -> bool:
    # A loop of its own: the wait helpers of ros/testing.py and ros/node_process.py are test support, not node code.
    end = time.monotonic() + seconds
    while rclpy.ok(context=context):
        if time.monotonic() >= end:
            return False
        time.sleep(0.01)
    return True


@contextmanager
def stopped_by_signal(context: Any = None, grace_s: float = STOP_GRACE_S) -> Iterator[None]:
    """Around a spin: a stop requested by a signal ends the block quietly; any other error propagates."""
    try:
        yield
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError as error:  # RCLError is one
        if not _shut_down_within(context, grace_s):
            raise
        if not isinstance(error, RCLError):
            # Not expected from a stop other than the way the module docstring describes: keep it visible.
            print(f"stopping on a signal; the spin ended with {type(error).__name__}: {error}", file=sys.stderr)


def _ignore(signum: int, frame: Any) -> None:
    """A signal during the bounded stop: it is already stopping (and a watchdog bounds the stop)."""


def ignore_further_signals() -> None:
    """From the main thread, once the stop has begun: a second Ctrl-C or SIGTERM, or the pending KeyboardInterrupt
    of the first, must not cut the teardown short. A Python-level no-op handler, not SIG_IGN: Python reports a
    signal that is pending when its handler becomes SIG_IGN as an error on stderr."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _ignore)


def run_until_signal(body: Callable[[], None], context: Any = None) -> None:
    """`body` (a spin, or a loop of spin_once) in the main thread until it returns or a signal stops it; returns
    with further signals muted, so what follows (writing a summary, closing a bag) runs whole. Raises only a real
    fault of the spin."""
    try:
        try:
            with stopped_by_signal(context):
                body()
        finally:
            ignore_further_signals()
    except KeyboardInterrupt:
        # The pending KeyboardInterrupt of the stop, landing after the spin had ended by ExternalShutdownException or
        # RCLError, possibly before the handlers above were all replaced.
        ignore_further_signals()


def spin_until_signal(executor: Any, context: Any = None) -> None:
    """`executor.spin()` in the main thread until a signal stops it; returns with further signals muted."""
    run_until_signal(executor.spin, context)
