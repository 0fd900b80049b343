"""A full disk while writing an mcap bag keeps the whole chunks as a readable bag (docs/BAGS.md, issue 15).

rosbags' mcap writer puts the summary and footer at the end of the file, so a write that fails leaves a file no reader
opens. The bag writer cuts the file back to its last checkpoint (whole, flushed chunks) and finishes it there: with
rosbags' own summary when that fits, else with the smallest valid ending (no summary; readers scan the chunks).

A full disk without root: this process's file size limit (RLIMIT_FSIZE, soft limit only, restored after; SIGXFSZ
ignored) makes a write past it fail with EFBIG where ENOSPC would.
"""
import resource
import signal
from contextlib import contextmanager

import numpy as np
import pytest

from densehybrid_ros.bag.files import IMAGE, DiskFullError, create_bag, image_message, open_bag

FRAME = (64, 128)  # 24 kB rgb8 frames


@contextmanager
def file_size_limit(limit):
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)


def frame(i):
    return image_message(np.full((*FRAME, 3), i % 251, np.uint8), "rgb8", 1_000_000_000 + i, "cam")


def record(out, limit_after_checkpoint, checkpoint_every=10, frames=400):
    """Write frames with a checkpoint every `checkpoint_every`; the file size limit is set at the first checkpoint
    after 50 frames to that checkpoint's file size plus `limit_after_checkpoint`. Returns (the error, frames
    checkpointed before the limit was set, frames written)."""
    written, checkpointed = 0, 0
    limit_set = None
    with pytest.raises(DiskFullError) as err:
        with create_bag(out, "mcap", salvage=True) as bag:
            bag.add_topic("/cam/image", IMAGE)
            bag.checkpoint()
            for i in range(frames):
                bag.write("/cam/image", 1_000_000_000 + i, frame(i))
                written += 1
                if written % checkpoint_every == 0:
                    bag.checkpoint()
                    checkpointed = written
                    if written >= 50 and limit_set is None:
                        mcap = next(out.parent.glob(f".{out.name}.partial-*/{out.name}/*.mcap"))
                        limit_set = file_size_limit(mcap.stat().st_size + limit_after_checkpoint)
                        limit_set.__enter__()
                        limit_checkpoint = checkpointed
    try:
        return err.value, limit_checkpoint, written
    finally:
        if limit_set is not None:
            limit_set.__exit__(None, None, None)


def read_back(path):
    with open_bag(path) as bag:
        count = bag.verify()
        frames = [(ns - 1_000_000_000, bytes(m.data[:1])) for _, _, ns, m in bag.decoded(["/cam/image"])]
        assert bag.topics["/cam/image"].count == count
    return count, frames


@pytest.mark.parametrize("room", [600_000, 100], ids=["summary_fits", "no_room_for_the_summary"])
def test_mcap_keeps_every_checkpointed_frame_readable(tmp_path, room):
    out = tmp_path / "drive"
    error, before_limit, written = record(out, room)
    recovered = tmp_path / "drive.recovered"
    assert error.recovered == recovered, str(error)
    assert f"writing bag {out} stopped" in str(error) and str(recovered) in str(error), str(error)
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["drive.recovered"]
    count, frames = read_back(recovered)
    assert error.messages == count and f"the {count} messages" in str(error)
    assert before_limit <= count < written, (before_limit, count, written)
    assert count % 10 == 0, "whole checkpoints only"
    assert frames == [(i, bytes([i % 251])) for i in range(count)], "the first frames, in order, bytes intact"
    (mcap,) = recovered.glob("*.mcap")
    summary_start = int.from_bytes(mcap.read_bytes()[-37:][9:17], "little")
    if room == 100:
        assert count == before_limit, "nothing after the last checkpoint that fitted"
        assert summary_start == 0, "ended without a summary (it did not fit)"
    else:
        assert summary_start > 0, "rosbags' own summary and index"
