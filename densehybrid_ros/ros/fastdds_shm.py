"""Fast DDS shared-memory segments whose owner process is gone.

Why this exists: params/fastdds.xml gives every participant a 64 MB shared-memory segment (a 1920x1080 frame is
6 MB and several must fit in flight). Fast DDS removes a segment when its participant is destroyed, but a process
that is killed (SIGKILL, the OOM killer, a watchdog's os._exit, a crash) leaves it in /dev/shm, and /dev/shm is
RAM. Measured on the development machine: a day of test runs left 679 such segments, 20.8 GB, and the next test
run was killed for lack of memory. /dev/shm is emptied at boot, so a vehicle only meets this when its nodes are
restarted many times without a reboot; a test machine meets it every day.

How a dead owner is recognised (the rule of Fast DDS's own `fastdds shm clean`): each segment `fastdds_<id>` has a
lock file `fastdds_<id>_el` that the owner holds with flock(LOCK_EX) for as long as it lives; the kernel drops the
lock when the process ends, however it ends. A lock file we can lock ourselves therefore belongs to a dead owner,
and its segment can go. Segments of live processes are never touched.
"""
from __future__ import annotations

import fcntl
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

SHM_DIR = Path("/dev/shm")
# Segment names are "fastdds_" + 16 hex digits; ports ("fastdds_port<n>") are small and managed by Fast DDS itself.
_SEGMENT = re.compile(r"^fastdds_[0-9a-f]{16}$")


@dataclass
class ShmCleanReport:
    removed: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    in_use: int = 0          # segments left alone: owner alive, or not ours to remove

    def summary(self) -> str:
        return (f"removed {len(self.removed)} Fast DDS shared-memory segments of dead processes "
                f"({self.freed_bytes / 1e6:.0f} MB); {self.in_use} in use left alone")


def owner_is_alive(lock_file: Path) -> bool:
    """True while the process that created the segment holds its lock file (or when we cannot tell)."""
    try:
        fd = os.open(lock_file, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # BlockingIOError: held by its owner
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def segments_in(shm_dir: Path = SHM_DIR) -> set[str]:
    try:
        return {n for n in os.listdir(shm_dir) if _SEGMENT.match(n)}
    except OSError:
        return set()


def _dead_owner(shm_dir: Path, name: str) -> bool:
    lock_file = shm_dir / (name + "_el")
    # No lock file: being created right now (Fast DDS makes the lock first) or not ours to judge.
    return lock_file.exists() and not owner_is_alive(lock_file)


def stale_segments(shm_dir: Path = SHM_DIR) -> list[tuple[str, int]]:
    """(name, bytes) of every segment whose owner process has ended."""
    out = []
    for name in sorted(segments_in(shm_dir)):
        if _dead_owner(shm_dir, name):
            try:
                out.append((name, (shm_dir / name).stat().st_size))
            except FileNotFoundError:
                pass
    return out


def remove_stale_segments(shm_dir: Path = SHM_DIR) -> ShmCleanReport:
    """Remove every Fast DDS segment (and its lock file) whose owner process has ended."""
    stale = stale_segments(shm_dir)
    report = ShmCleanReport(in_use=len(segments_in(shm_dir)) - len(stale))
    for name, size in stale:
        try:
            (shm_dir / name).unlink()
            (shm_dir / (name + "_el")).unlink(missing_ok=True)
        except FileNotFoundError:
            continue  # another process cleaned it first
        except OSError:
            # Another user's segment in the sticky /dev/shm: theirs to remove. Start-up must not fail for it.
            report.in_use += 1
            continue
        report.removed.append(name)
        report.freed_bytes += size
    return report
