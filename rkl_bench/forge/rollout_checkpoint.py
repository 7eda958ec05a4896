"""The finished episodes of a rollout, kept on disk so that an interrupted ``datasets make`` goes on.

A full forge component is a million rows (tens of minutes of one core with a
SAC policy on a slow machine); an interruption used to lose all of it. Since
episode ``k`` of a rollout depends only on ``k`` (its reset seed, its noise
stream) and on what the rollout is (env, policy, seed, episode length, the
policy block), the episodes finished before a stop are exactly those a rerun
would make: they are kept and only the others are rolled out again, so the
dataset is byte-identical to an uninterrupted one (tested).

Layout: a folder with ``key.json`` (what the rollout is) and append-only
``chunk-NNNNN.npz`` files, each holding the episodes finished since the last
one, written to a temporary name and renamed, so a stop mid-write loses only
that chunk. Chunks are read with ``allow_pickle=False``: nothing in them runs.
A folder whose key differs (other policy, seed, format) is cleared, saying so.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CHUNK_FORMAT = 1
"""Bump when the chunk layout changes; older folders are then cleared, not misread."""


@dataclass
class Episode:
    """A finished episode's rows (float64 as the env gives them; actions float32)."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminal: bool

    def __len__(self) -> int:
        return len(self.rewards)


class RolloutCheckpoint:
    """Append-only store of one rollout's finished episodes, by episode index."""

    def __init__(self, folder: Path, key: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.key = {"chunk_format": CHUNK_FORMAT, **key}
        self._chunks = 0

    def load(self) -> dict[int, Episode]:
        """The episodes kept by earlier runs of the same rollout ({} if none, or if they are of another)."""
        key_file = self.folder / "key.json"
        if not key_file.is_file():
            return {}
        try:
            recorded = json.loads(key_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            recorded = None
        if recorded != self.key:
            print(f"{self.folder}: kept episodes are of another rollout; starting it afresh", flush=True)
            self.clear()
            return {}
        episodes: dict[int, Episode] = {}
        for chunk in sorted(self.folder.glob("chunk-*.npz")):
            try:
                with np.load(chunk, allow_pickle=False) as data:
                    episodes.update(_episodes_of(data))
            except (OSError, ValueError, KeyError) as exc:
                print(f"{chunk}: unreadable ({type(exc).__name__}); its episodes are rolled out again", flush=True)
                continue
            self._chunks = max(self._chunks, int(chunk.stem.split("-")[1]) + 1)
        return episodes

    def save(self, episodes: dict[int, Episode]) -> None:
        """Append ``episodes`` (index -> rows) as one chunk."""
        if not episodes:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        key_file = self.folder / "key.json"
        if not key_file.is_file():
            _write_atomic(key_file, json.dumps(self.key, sort_keys=True).encode())
        indices = sorted(episodes)
        parts = [episodes[i] for i in indices]
        arrays = {
            "indices": np.asarray(indices, np.int64),
            "lengths": np.asarray([len(p.rewards) for p in parts], np.int64),
            "terminal": np.asarray([bool(p.terminal) for p in parts]),
            "observations": np.concatenate([p.observations for p in parts]),
            "actions": np.concatenate([p.actions for p in parts]),
            "rewards": np.concatenate([p.rewards for p in parts]),
            "next_observations": np.concatenate([p.next_observations for p in parts]),
        }
        final = self.folder / f"chunk-{self._chunks:05d}.npz"
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, final)
        self._chunks += 1

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        self._chunks = 0


def _episodes_of(data: Any) -> dict[int, Episode]:
    bounds = np.concatenate([[0], np.cumsum(data["lengths"])])
    fields = {name: data[name] for name in ("observations", "actions", "rewards", "next_observations")}
    out = {}
    for j, index in enumerate(data["indices"].tolist()):
        a, b = int(bounds[j]), int(bounds[j + 1])
        out[index] = Episode(*(fields[name][a:b] for name in fields), terminal=bool(data["terminal"][j]))
    return out


def _write_atomic(path: Path, payload: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(payload)
    os.replace(tmp, path)
