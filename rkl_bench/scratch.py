"""Scratch directories that do not outlive their process, even one killed with SIGKILL.

A Tune trial keeps short-lived files on local disk: each row's checkpoint
before Tune takes it, and a staged search trial's per-pair states (tens of MB).
``finally: rmtree`` removes them when a trial ends or fails, but not when Ray
kills the worker (a stopped run, a lost node), and /tmp filled with them
(300 MB from one day's interrupted study). So every scratch directory lives
under ``<tmp>/rkl_bench_scratch-<uid>/<pid>-<start>/``, named after the
process that made it (its pid and start time, so a reused pid is not taken
for the same process), and each new one first removes the folders of
processes that are gone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def scratch_root() -> Path:
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"rkl_bench_scratch-{uid}"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (``/proc/<pid>/stat`` field 22), None if not running."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(owner: str) -> bool:
    pid_text, _, start = owner.partition("-")
    if not pid_text.isdigit():
        return True  # not ours to judge
    pid = int(pid_text)
    if Path("/proc").is_dir():
        return _start_time(pid) == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def sweep() -> list[Path]:
    """Remove the scratch folders of processes that no longer run; returns what was removed."""
    root = scratch_root()
    removed = []
    for folder in root.glob("*") if root.is_dir() else ():
        if folder.is_dir() and not _alive(folder.name):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def scratch_dir(prefix: str) -> Path:
    """A new private directory for this process's short-lived files (remove it when done)."""
    sweep()
    pid = os.getpid()
    root = scratch_root()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    owner = root / f"{pid}-{_start_time(pid) or 0}"
    owner.mkdir(exist_ok=True, mode=0o700)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=owner))
