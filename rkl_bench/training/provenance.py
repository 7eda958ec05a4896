"""The code a result row came from: package version, git commit, evaluation-loop version.

Every row carries these (``docs/architecture.md``, "Result rows"), so scores
from different code can be told apart: the evaluation loop of the speed work
changed scores in their last digits, and nothing recorded it then.

``git_commit`` is the checkout's ``HEAD`` when the package runs from a git
checkout (``git_dirty``: tracked files changed since), ``None`` for an
installed package. Looked up once per process (``git`` runs at most twice).
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

from rkl_bench import __version__
from rkl_bench.evaluation.rollouts import EVAL_LOOP_VERSION

CODE_KEYS = ("package_version", "git_commit", "git_dirty", "eval_loop_version")


@functools.lru_cache(maxsize=1)
def code_fields() -> dict[str, Any]:
    """``{package_version, git_commit, git_dirty, eval_loop_version}`` of the running code."""
    commit, dirty = _git_state(Path(__file__).resolve().parents[2])
    return {
        "package_version": __version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "eval_loop_version": EVAL_LOOP_VERSION,
    }


def _git_state(root: Path) -> tuple[str | None, bool | None]:
    if not (root / ".git").exists():
        return None, None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return (head or None), bool(status.strip())
