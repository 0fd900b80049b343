"""The one-slot mailbox between the executor thread and the inference worker (ros/latest_frame.py)."""
import threading

from densehybrid_ros.ros.latest_frame import LatestFrameMailbox


def test_a_newer_frame_replaces_the_waiting_one_and_hands_it_back_as_a_drop():
    box = LatestFrameMailbox()
    assert box.put("f1") is None
    assert box.put("f2") == "f1"
    assert box.put("f3") == "f2"
    assert box.take(timeout=0) == "f3"
    assert box.take(timeout=0) is None       # the slot is empty after a take: nothing is served twice


def test_take_waits_for_a_frame_and_returns_none_on_timeout():
    box = LatestFrameMailbox()
    assert box.take(timeout=0.01) is None
    got = []
    consumer = threading.Thread(target=lambda: got.append(box.take(timeout=30)))
    consumer.start()
    box.put("frame")
    consumer.join(timeout=30)
    assert got == ["frame"]


def test_close_wakes_a_waiting_consumer_and_returns_the_frame_never_taken():
    box = LatestFrameMailbox()
    got = []
    consumer = threading.Thread(target=lambda: got.append(box.take(timeout=30)))
    consumer.start()
    assert box.close() is None
    consumer.join(timeout=30)
    assert not consumer.is_alive() and got == [None] and box.closed

    box = LatestFrameMailbox()
    box.put("pending")
    assert box.close() == "pending"            # counted by the node as a drop, not lost silently
    assert box.take(timeout=0) is None


def test_after_close_nothing_is_served():
    box = LatestFrameMailbox()
    box.close()
    box.put("late")
    assert box.take(timeout=0) is None


def test_every_frame_is_served_or_handed_back_exactly_once_under_contention():
    """A producer puts 5000 frames while a consumer takes; each frame ends up in exactly one of: taken, returned
    as replaced by `put`, returned by `close`. The queue can never hold more than one."""
    box = LatestFrameMailbox()
    taken, replaced = [], []
    done = threading.Event()

    def consume():
        while not done.is_set() or not box.closed:
            item = box.take(timeout=0.01)
            if item is not None:
                taken.append(item)
            if box.closed:
                return

    consumer = threading.Thread(target=consume)
    consumer.start()
    for i in range(5000):
        old = box.put(i)
        if old is not None:
            replaced.append(old)
    done.set()
    leftover = box.close()
    consumer.join(timeout=30)
    assert not consumer.is_alive()
    accounted = taken + replaced + ([leftover] if leftover is not None else [])
    assert sorted(accounted) == list(range(5000))
    assert taken == sorted(taken)                # frames are served in arrival order, never an older one later
