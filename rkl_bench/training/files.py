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


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write`` on a temporary file, then move it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_torch(path: Path, obj: Any) -> None:
    write_atomic(path, lambda f: torch.save(obj, f))


def load_torch(path: Path) -> Any:
    """Load a checkpoint this package wrote (``weights_only``: tensors, numbers, strings, containers)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def save_json(path: Path, obj: Any) -> None:
    write_atomic(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


def save_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    write_atomic(path, lambda f: f.write("".join(json.dumps(row) + "\n" for row in rows).encode()))
