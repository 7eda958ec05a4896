"""Loss averaging between result rows, and the ``metrics.jsonl`` log.

Learners return a dict of losses per update, and not every key on every step
(TD3's actor loss exists only on actor steps), so each key is averaged over
the steps where it appeared. The running sums are part of the checkpoint: a
resumed run averages exactly the numbers an uninterrupted run would.

``metrics.jsonl`` holds one JSON object per result row (keys in
``docs/architecture.md``, "Result rows"), appended and flushed to disk as
each row is made. On resume the log is cut back to the checkpoint's step so
rows written after the checkpoint are not duplicated.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from rkl_bench.errors import RklBenchError
from rkl_bench.training.files import save_jsonl, write_error


class LossMeter:
    """Per-key running means of learner losses."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, losses: Mapping[str, float]) -> None:
        for key, value in losses.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
            self.counts[key] = self.counts.get(key, 0) + 1

    def means(self) -> dict[str, float]:
        return {key: self.sums[key] / self.counts[key] for key in self.sums}

    def state_dict(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "counts": dict(self.counts)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.sums = dict(state["sums"])
        self.counts = dict(state["counts"])


def append_row(path: Path, row: Mapping[str, Any]) -> None:
    """Append one row and make it durable before the checkpoint that follows it."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise write_error(path, exc) from None


def read_rows(path: Path) -> list[dict[str, Any]]:
    """All complete rows of a log. A torn last line (a crash mid-write) is dropped; an
    unreadable line before the last is an error, never a silent loss of the rows after it."""
    if not path.exists():
        return []
    lines = path.read_bytes().decode("utf-8", errors="replace").split("\n")
    rows = []
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if isinstance(row, dict) and "step" in row:
            rows.append(row)
        elif index < len(lines) - 1:
            raise RklBenchError(
                f"{path}:{index + 1}: not a result row (torn or edited); fix or delete that line, "
                "or use another --out"
            )
    return rows


def truncate_rows(path: Path, last_step: int) -> list[dict[str, Any]]:
    """Keep only rows with ``step <= last_step`` (rewritten atomically); returns them."""
    kept = [row for row in read_rows(path) if row["step"] <= last_step]
    if path.exists():
        save_jsonl(path, kept)
    return kept
