"""Atomic file writes: a run directory never holds a half-written file.

Everything is written to a temporary file in the target's directory, flushed
to disk, then moved over the target with ``os.replace`` (atomic on POSIX). An
interruption at any moment leaves either the old file or the new one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

import torch

from rkl_bench.errors import RklBenchError
from rkl_bench.safe_load import load_torch_file


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write`` on a temporary file, then move it to ``path``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise write_error(path, exc) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_error(path: Path, exc: OSError) -> RklBenchError:
    """A failed write (full disk, lost permission) as one line; the previous file is still in place."""
    return RklBenchError(
        f"cannot write {path} ({exc.strerror or exc}); the previous version is kept: free disk space "
        "or fix the permissions, then run the same command again to go on from the last checkpoint"
    )


def save_torch(path: Path, obj: Any) -> None:
    write_atomic(path, lambda f: torch.save(obj, f))


def load_torch(path: Path, fix: str = "delete it or use another --out") -> Any:
    """Load a checkpoint this package wrote (``weights_only``: tensors, numbers, strings, containers);
    any other file is one :class:`~rkl_bench.errors.RklBenchError` line and never runs code."""
    return load_torch_file(path, fix)


def save_json(path: Path, obj: Any) -> None:
    write_atomic(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


def save_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    write_atomic(path, lambda f: f.write("".join(json.dumps(row) + "\n" for row in rows).encode()))


def check_writable_dir(path: Path, flag: str) -> None:
    """``path`` is (or can become) a directory this process can write; else one error line naming ``flag``.

    Nothing is created: the nearest existing directory on the way is probed
    with a temporary file (mode bits alone say nothing to root, and a
    read-only or full file system only shows on a real write).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RklBenchError(f"{flag} {path} is a file, not a directory; pass a directory (it is made if missing)")
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise RklBenchError(f"{flag} {path} cannot be made: {probe} is a file, not a directory; pass another path")
    try:
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".rkl_bench_probe_")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise RklBenchError(
            f"{flag} {path} cannot be written ({exc.strerror or exc} in {probe}); pass a directory you can write"
        ) from None
