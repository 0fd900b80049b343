"""A one-slot mailbox between the executor thread (producer) and the inference worker (consumer).

Latest frame wins: a frame that arrives while an older one still waits replaces it, and the older one is handed
back to the caller so it can be counted as a drop. The queue can therefore never grow, and the latency of a served
frame is bounded by one inference plus the wait for the one in progress, whatever the camera rate.
"""
from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestFrameMailbox(Generic[T]):
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False

    def put(self, item: T) -> T | None:
        """Store `item`; return the unprocessed item it replaced (a drop), or None."""
        with self._cond:
            replaced, self._item = self._item, item
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> T | None:
        """The waiting item (emptying the slot), or None after `timeout` seconds or once closed."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return None if self._closed else item

    def close(self) -> T | None:
        """Wake the consumer for good; return an item that was never taken."""
        with self._cond:
            self._closed = True
            item, self._item = self._item, None
            self._cond.notify_all()
            return item

    @property
    def closed(self) -> bool:
        return self._closed
