"""One slot per camera between the executor thread (producer) and the batching worker (consumer).

The multi-camera version of latest_frame.py: a camera's new frame replaces its own waiting frame (handed back to
be counted as a drop), never another camera's; the worker takes every waiting frame at once and batches them. A
camera that stops publishing just has an empty slot, so it never delays the others; nothing waits for a batch to
fill.
"""
from __future__ import annotations

import threading
from typing import Generic, Hashable, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class LatestFrames(Generic[K, T]):
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._items: dict[K, T] = {}
        self._closed = False

    def put(self, key: K, item: T) -> T | None:
        """Store `item` in `key`'s slot; return the unprocessed item of that slot it replaced (a drop), or None."""
        with self._cond:
            replaced = self._items.get(key)
            self._items[key] = item
            self._cond.notify()
            return replaced

    def take_all(self, timeout: float | None = None) -> dict[K, T]:
        """Every waiting item (emptying the slots), in the order their slots filled; {} after `timeout` seconds with
        none or once closed."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            if self._closed:
                return {}
            items, self._items = self._items, {}
            return items

    def close(self) -> dict[K, T]:
        """Wake the consumer for good; return the items never taken."""
        with self._cond:
            self._closed = True
            items, self._items = self._items, {}
            self._cond.notify_all()
            return items

    @property
    def closed(self) -> bool:
        return self._closed
