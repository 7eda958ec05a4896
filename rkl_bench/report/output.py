"""Write a report directory all at once, or not at all.

Everything goes into a hidden temporary directory next to the target, which
is renamed into place only when complete; on any error it is removed. A
marker file tells a report directory apart from anything else, so a report
may replace an older report but never an unrelated directory a mistyped
``--out`` points at.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from rkl_bench.errors import RklBenchError
from rkl_bench.storage import shown

MARKER = ".rkl-bench-report"


def check_replaceable(out_dir: Path) -> None:
    """Raise unless ``out_dir`` is absent, empty, or an earlier report."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise RklBenchError(f"--out {out_dir} is a file; choose a directory path for the report")
    if any(out_dir.iterdir()) and not (out_dir / MARKER).is_file():
        raise RklBenchError(f"--out {out_dir} exists and is not a report; choose another --out or empty it first")


@contextmanager
def atomic_dir(out_dir: Path) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces ``out_dir``."""
    check_replaceable(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        (tmp / MARKER).write_text("made by `rkl-bench report`; the next report to this path replaces it\n")
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
            os.replace(out_dir, old / "report")
            os.replace(tmp, out_dir)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def display_path(path: str | Path, root: str | Path | None = None) -> str:
    """``path`` as a report shows it: the URI it was copied from when it is a local copy of an
    object store's files (``storage.mirror``); else relative to ``root`` (default: the working
    directory, the repository for a shipped report) when under it, else its last two parts; never
    an absolute path of the machine that made the report."""
    resolved = Path(path).expanduser().resolve()
    remote = shown(resolved)
    if remote != str(resolved):
        return remote
    try:
        return str(resolved.relative_to(Path(root or Path.cwd()).resolve()))
    except ValueError:
        return "/".join(resolved.parts[-2:])
