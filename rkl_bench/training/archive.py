"""Results archives: an experiment's finished trials as plain result rows, no checkpoints.

An experiment directory holds Tune's state, checkpoints and one
``result.json`` per trial: hundreds of MB, tied to the machine and the Ray
version that wrote it. An archive holds what a report and a resume need, in
a few MB of text that can be committed, merged and shared::

    results/<name>/
      archive.json    # format, the experiment record (config + dataset specs), one entry per trial
      rows.jsonl      # every result row of every archived trial, one JSON object a line

* A trial is archived once **finished** (its last row reached its
  ``total_steps``); running or failed trials are left for the experiment to
  finish. Each entry names the trial by ``(algo, dataset, seed)``, holds the
  trial's config (learner, hyper-parameters, settings; what a resume checks)
  and, for learners with per-state weights, ``lambdas``: per dataset
  component a histogram of lambda(s) (:data:`LAMBDA_BINS` equal bins on
  [0, 1]) and its mean, instead of one float per dataset row.
* Rows keep the result-row contract (docs/architecture.md) and drop Tune's
  bookkeeping (``training_iteration``, ``date``, ``pid``, ``config``...).
* **Merging.** Exporting into an existing archive adds the trials it lacks.
  The experiment records must be equal, or one a part of the other's grid
  (the same experiment with fewer learners or datasets,
  :func:`sub_grid_difference`; the archive keeps the whole grid's record),
  and a trial found in both must have
  equal rows (the same seed and config give the same numbers): anything else
  is an error naming the trial, since keeping either copy would be a guess.
  Two partial archives of one experiment (two clusters, two machines) merge
  into the archive a single complete run makes.
* Written atomically (a temporary directory renamed into place): a stopped
  export leaves the previous archive whole. A local export holds a lock
  beside the archive (``.NAME.lock``) from reading it to renaming the new
  one in, so concurrent exports into one archive all land.

* **Where.** The experiment directory and the archive may be local paths or
  object-store URIs (``s3://bucket/results/NAME``; ``rkl_bench.storage``).
  A remote experiment's result files are copied to a temporary directory and
  read there; a remote archive is read in place and written by building it
  locally and uploading ``rows.jsonl`` before ``archive.json``.
* **Torn uploads.** An object store has no rename, so an upload stopped
  between the two files leaves either ``rows.jsonl`` alone (a first export)
  or a new ``rows.jsonl`` beside the older ``archive.json`` (a merge).
  ``archive.json`` records the SHA-256 of the ``rows.jsonl`` it was written
  with (``rows_sha256``), and every reader checks it: either case is one
  error naming the archive (:func:`load_archive`, :func:`check_not_torn`),
  never rows read against the wrong index. Exporting again into a prefix
  that holds ``rows.jsonl`` alone replaces it (nothing whole was there);
  archives written before the digest existed are read without that check.

Nothing in an archive is executed: it is JSON (and ``lambdas.npz`` is read
with ``allow_pickle=False``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from rkl_bench.errors import RklBenchError
from rkl_bench.layout import (
    ARCHIVE_FILE,
    EXPERIMENT_RECORD_FILE,
    GROUP_LAMBDAS_FILE,
    LAMBDAS_FILE,
    RESULT_FILE,
    ROWS_FILE,
)
from rkl_bench.storage import Location, check_reachable, location, mirror, upload_dir

ARCHIVE_FORMAT = 1
ROWS_DIGEST_KEY = "rows_sha256"
"""``archive.json`` key: the SHA-256 of the ``rows.jsonl`` written with it (absent in older archives)."""
IDENTITY_KEYS = ("config", "dataset_specs")
"""The record keys that define an experiment; an archive keeps only these (not the machine's Tune state digests)."""
CELL_KEY = "cell"
"""The trial-config key of a grid that runs only some of its trials (``rkl-bench run --resume ARCHIVE``)."""
LAMBDA_BINS = 50
TUNE_KEYS = frozenset({
    "timestamp", "checkpoint_dir_name", "should_checkpoint", "done", "training_iteration", "trial_id", "date",
    "time_this_iter_s", "time_total_s", "pid", "hostname", "node_ip", "config", "time_since_restore",
    "iterations_since_restore", "timesteps_total", "episodes_total", "timesteps_since_restore", "experiment_tag",
    "warmup_time",
})
"""Tune's own keys in ``result.json`` lines: not result-row fields, not archived."""

TrialKey = tuple[str, str, int]


@dataclass
class ArchivedTrial:
    """One finished trial: its identity, config, rows and lambda(s) summary."""

    algo: str
    dataset: str
    seed: int
    config: dict[str, Any]
    rows: list[dict[str, Any]]
    lambdas: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def key(self) -> TrialKey:
        return (self.algo, self.dataset, self.seed)

    def entry(self) -> dict[str, Any]:
        """Its ``archive.json`` entry (the rows go to ``rows.jsonl``)."""
        return {"algo": self.algo, "dataset": self.dataset, "seed": self.seed, "rows": len(self.rows),
                "final_step": self.rows[-1]["step"], "config": self.config, "lambdas": self.lambdas}


@dataclass
class Archive:
    """An archive in memory: the experiment record and its finished trials by key."""

    record: dict[str, Any] | None
    trials: dict[TrialKey, ArchivedTrial]

    @property
    def name(self) -> str | None:
        return None if self.record is None else (self.record.get("config") or {}).get("name")


@dataclass(frozen=True)
class ExportSummary:
    out: Path | Location
    added: int
    kept: int
    unfinished: int
    """Trials of the experiment left out because they have not finished."""
    bytes: int


# ------------------------------------------------------------------ reading
def is_archive(path: str | Path | Location) -> bool:
    return (location(path) / ARCHIVE_FILE).is_file()


def is_torn(path: str | Path | Location) -> bool:
    """``rows.jsonl`` without ``archive.json``: the first upload of an archive, stopped before its last file."""
    root = location(path)
    return (root / ROWS_FILE).is_file() and not (root / ARCHIVE_FILE).is_file()


def check_not_torn(path: str | Path | Location) -> None:
    """One error line when ``path`` holds a torn archive upload (see the module doc), instead of
    reading it as an empty or foreign directory."""
    if is_torn(path):
        raise RklBenchError(
            f"{path}: {ROWS_FILE} without {ARCHIVE_FILE}: an archive upload that stopped before its last file; "
            "export it again (`rkl-bench results export EXPERIMENT --out` this location)"
        )


def load_archive(path: str | Path | Location) -> Archive:
    """Read an archive (a local path or a URI); every problem is one :class:`RklBenchError` naming the file."""
    root = location(path, "archive")
    meta_file, rows_file = root / ARCHIVE_FILE, root / ROWS_FILE
    meta = _read_json(meta_file)
    if not isinstance(meta, dict) or meta.get("format") != ARCHIVE_FORMAT or not isinstance(meta.get("trials"), list):
        raise RklBenchError(f"{meta_file} is not an rkl_bench results archive (format {ARCHIVE_FORMAT})")
    rows_by_key: dict[TrialKey, list[dict[str, Any]]] = {}
    try:
        data = rows_file.read_bytes()
        lines = data.decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RklBenchError(f"cannot read {rows_file} ({exc})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            key = (str(row["algo"]), str(row["dataset"]), int(row["seed"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise RklBenchError(f"{rows_file}:{number}: not a result row; the archive is damaged (export it again)") from None
        rows_by_key.setdefault(key, []).append(row)
    recorded = meta.get(ROWS_DIGEST_KEY)
    if recorded is not None and recorded != rows_digest(data):
        raise RklBenchError(
            f"{root}: {ROWS_FILE} is not the one {ARCHIVE_FILE} was written with (its SHA-256 differs): an upload "
            "stopped between the two files, or a file changed by hand; export into a new --out, "
            "or delete this archive and export it again from its experiment directories"
        )
    trials: dict[TrialKey, ArchivedTrial] = {}
    for entry in meta["trials"]:
        try:
            key = (str(entry["algo"]), str(entry["dataset"]), int(entry["seed"]))
            rows = rows_by_key.pop(key, [])
            if len(rows) != int(entry["rows"]):
                raise RklBenchError(f"{root}: {display_name(key)} lists {entry['rows']} rows, {ROWS_FILE} holds {len(rows)}; "
                                    "the archive is damaged (export it again)")
            trials[key] = ArchivedTrial(*key, dict(entry.get("config") or {}), rows, dict(entry.get("lambdas") or {}))
        except (KeyError, TypeError, ValueError):
            raise RklBenchError(f"{meta_file}: a trial entry lacks algo, dataset, seed or rows") from None
    if rows_by_key:
        raise RklBenchError(f"{rows_file}: rows of {display_name(next(iter(rows_by_key)))} have no trial entry in {ARCHIVE_FILE}")
    return Archive(identity(meta.get("record")), trials)


def experiment_trials(experiment_dir: str | Path) -> tuple[list[ArchivedTrial], int]:
    """The finished trials of an experiment directory, and how many are not finished."""
    root = Path(experiment_dir).expanduser()
    finished, unfinished = [], 0
    for result in sorted(root.rglob(RESULT_FILE)):
        for trial in trial_dir_rows(result.parent).finished():
            if isinstance(trial, ArchivedTrial):
                finished.append(trial)
            else:
                unfinished += 1
    return finished, unfinished


@dataclass(frozen=True)
class TrialDirRows:
    """The result rows of one Tune trial directory, read as they are (finished or not)."""

    directory: Path
    by_seed: dict[int, list[dict[str, Any]]]
    """Each seed's rows in file order (Tune's keys dropped); a torn last line is left out."""
    config: dict[str, Any]
    torn: bool
    """The last line was cut off (a writer mid-line, or one that died)."""
    modified: float
    """When ``result.json`` was last written (seconds since the epoch)."""
    clock: dict[int, list[float | None]] = field(default_factory=dict)
    """Tune's ``time_total_s`` of each row of ``by_seed`` (the trial's wall clock, summed over restores;
    None where absent): not a result-row field, so kept beside the rows for progress estimates."""

    def finished(self) -> list[ArchivedTrial | None]:
        """One :class:`ArchivedTrial` per seed that reached its ``total_steps``, None per other seed
        (all None when the last line is torn: a writer died, so nothing is known to be the end). One
        trial, or one per seed of a trial of seeds trained together (``seeds_per_trial``: its rows
        name their seeds)."""
        if self.torn or not self.by_seed:
            return [None] * max(1, len(self.by_seed))
        trials: list[ArchivedTrial | None] = []
        for seed, rows in self.by_seed.items():
            if rows[-1].get("total_steps") is None or rows[-1]["step"] < rows[-1]["total_steps"]:
                trials.append(None)
                continue
            first = rows[0]
            own = {**self.config, "seed": seed} if "seeds" in self.config else self.config
            lambdas = self.directory / GROUP_LAMBDAS_FILE.format(seed=seed)  # a seed trained with others has its own
            trials.append(ArchivedTrial(str(first["algo"]), str(first["dataset"]), seed, own, rows,
                                        _lambda_histograms(lambdas if lambdas.is_file() else self.directory / LAMBDAS_FILE)))
        return trials


def trial_dir_rows(directory: Path) -> TrialDirRows:
    """Read ``directory``'s ``result.json``: rows by seed, the trial config, whether the last line is torn.

    An unreadable line before the last is an error naming it (the rows are damaged)."""
    by_seed: dict[int, list[dict[str, Any]]] = {}
    clock: dict[int, list[float | None]] = {}
    config: dict[str, Any] = {}
    path = directory / RESULT_FILE
    modified = path.stat().st_mtime
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    torn = False
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                torn = True
                break
            raise RklBenchError(f"{path}:{number}: unreadable result line before the last; "
                                "the trial's rows are damaged") from None
        if not isinstance(raw, dict) or raw.get("normalized_score") is None:
            continue
        config = raw.get("config") or config
        config = {k: v for k, v in config.items() if k != CELL_KEY}
        row = {k: v for k, v in raw.items() if k not in TUNE_KEYS}
        by_seed.setdefault(int(row["seed"]), []).append(row)
        total = raw.get("time_total_s")
        clock.setdefault(int(row["seed"]), []).append(float(total) if isinstance(total, (int, float)) else None)
    return TrialDirRows(directory, by_seed, config, torn, modified, clock)


def _lambda_histograms(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    edges = np.linspace(0.0, 1.0, LAMBDA_BINS + 1)
    out = {}
    with np.load(path, allow_pickle=False) as data:
        for component in sorted(data.files):
            values = np.asarray(data[component], dtype=np.float64)
            counts, _ = np.histogram(np.clip(values, 0.0, 1.0), bins=edges)
            out[component] = {"bins": LAMBDA_BINS, "range": [0.0, 1.0], "counts": counts.tolist(),
                              "mean": float(values.mean()) if values.size else math.nan, "rows": int(values.size)}
    return out


# ------------------------------------------------------------------ writing
def export_results(experiment_dir: str | Path | Location, out: str | Path | Location) -> ExportSummary:
    """Archive the finished trials of ``experiment_dir`` into ``out`` (merging with an archive there);
    either may be a URI (see the module doc)."""
    source_loc = location(experiment_dir, "experiment directory")
    target_loc = location(out, "--out")
    if source_loc.is_local and target_loc.is_local:
        return _export_local(source_loc.local, target_loc.local)
    check_reachable(target_loc, "--out")
    if (not target_loc.is_local and target_loc.is_nonempty_dir() and not is_archive(target_loc)
            and not _only_rows(target_loc)):
        raise RklBenchError(f"{target_loc} exists and is not a results archive; choose another --out")
    with mirror([source_loc], "experiment directory") as (source,):
        if target_loc.is_local:
            return _export_local(source, target_loc.local)
        with tempfile.TemporaryDirectory(prefix="rkl_bench_export_") as tmp:
            staged = Path(tmp) / (target_loc.name or "archive")
            if is_archive(target_loc):  # merge with the remote archive: start from a copy of it
                staged.mkdir()
                for name in (ARCHIVE_FILE, ROWS_FILE):
                    (staged / name).write_bytes((target_loc / name).read_bytes())
            done = _export_local(source, staged)
            target_loc.makedirs()
            upload_dir(staged, target_loc, order=lambda p: (p.name == ARCHIVE_FILE, str(p)))
            return dataclasses.replace(done, out=target_loc)


def _export_local(source: Path, out: Path) -> ExportSummary:
    source = source.expanduser()
    if not source.is_dir():
        raise RklBenchError(f"experiment directory {source} does not exist (or is not a directory)")
    record_file = source / EXPERIMENT_RECORD_FILE
    record = identity(_read_json(record_file)) if record_file.is_file() else None
    finished, unfinished = experiment_trials(source)
    if not finished and not is_archive(out):
        raise RklBenchError(f"{source}: no finished trial to archive ({unfinished} unfinished); nothing written")
    target = Path(out).expanduser()
    with archive_lock(target):  # read, merge and write as one step: another export may be writing it too
        archive = load_archive(target) if is_archive(target) else Archive(record, {})
        if target.exists() and not is_archive(target) and any(target.iterdir()) and not _only_rows(location(target)):
            raise RklBenchError(f"{target} exists and is not a results archive; choose another --out")
        merged, added = merge_archives([archive, Archive(record, {t.key: t for t in finished})], where=str(target))
        size = write_archive(merged, target)
    return ExportSummary(target, added, len(merged.trials) - added, unfinished, size)


@contextlib.contextmanager
def archive_lock(target: Path) -> Iterator[None]:
    """Hold an exclusive lock on the local archive ``target`` (a ``.NAME.lock`` file beside it) while
    it is read, merged and rewritten, so that two exports into it at once (two parts of a grid on one
    machine, ``rkl-bench run --export-to``) both land instead of the later write dropping the other's
    trials. Not inside the archive: the archive directory is replaced on every write."""
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = target.parent / f".{target.name}.lock"
    try:
        handle = open(lock, "a+b")
    except OSError as exc:
        raise RklBenchError(f"cannot write the archive: cannot open its lock file {lock} ({exc.strerror})") from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _only_rows(root: Location) -> bool:
    """A torn first upload (``rows.jsonl`` and nothing else): what an export may replace."""
    return [child.name for child in root.children()] == [ROWS_FILE]


def merge_archives(archives: Sequence[Archive], where: str = "the archives") -> tuple[Archive, int]:
    """One archive holding every trial of ``archives`` (the first's trials first); returns it and
    how many trials the later ones added. The merged record is the one whose grid holds every other's
    (equal records, or sub-grids of it: :func:`sub_grid_difference`); records that are not, or one trial
    with unequal rows, is an error."""
    records = [identity(a.record) for a in archives if a.record is not None]
    record = next((r for r in records if all(sub_grid_difference(r, other) is None for other in records)), None)
    if record is None and records:
        first = records[0]
        other = next(r for r in records if sub_grid_difference(first, r) is not None)
        differ = min((sub_grid_difference(first, other), sub_grid_difference(other, first)),
                     key=lambda text: len((text or "").split(", ")))  # the shorter account of the two
        raise RklBenchError(f"{where}: the experiments differ ({differ}); archives merge "
                            "only for one experiment config, or a part of its grid (fewer learners or datasets)")
    trials: dict[TrialKey, ArchivedTrial] = {}
    added = 0
    for index, archive in enumerate(archives):
        for key, trial in archive.trials.items():
            if key in trials:
                if comparable_rows(trials[key].rows) != comparable_rows(trial.rows):
                    raise RklBenchError(f"{where}: {display_name(key)} is in both with different rows; keep one copy "
                                        "(the same seed and config must give the same numbers)")
                continue
            trials[key] = trial
            added += index > 0
    return Archive(record, dict(sorted(trials.items()))), added


def write_archive(archive: Archive, out: Path) -> int:
    """Write ``archive`` to ``out`` atomically; returns its size in bytes."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(out.parent, os.W_OK):
        raise RklBenchError(f"cannot write the archive: {out.parent} is not writable")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        rows = "".join(json.dumps(row, sort_keys=True, allow_nan=True) + "\n"
                       for trial in archive.trials.values() for row in sorted(trial.rows, key=lambda r: r["step"]))
        data = rows.encode("utf-8")
        meta = {"format": ARCHIVE_FORMAT, "record": archive.record, ROWS_DIGEST_KEY: rows_digest(data),
                "trials": [t.entry() for t in archive.trials.values()]}
        (tmp / ROWS_FILE).write_bytes(data)
        (tmp / ARCHIVE_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True, allow_nan=True) + "\n", encoding="utf-8")
        size = sum(f.stat().st_size for f in tmp.iterdir())
        os.chmod(tmp, 0o755)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return size


# ----------------------------------------------------------------- helpers
def rows_digest(data: bytes) -> str:
    """The SHA-256 ``archive.json`` keeps of its ``rows.jsonl`` (hex)."""
    return hashlib.sha256(data).hexdigest()


def identity(record: Any) -> dict[str, Any] | None:
    """The keys of an experiment record that define the experiment (see :data:`IDENTITY_KEYS`)."""
    if not isinstance(record, dict):
        return None
    return {key: record[key] for key in IDENTITY_KEYS if key in record}


GRID_AXES = ("algorithms", "datasets")
"""The config keys a part of a grid may narrow (:func:`sub_grid_difference`)."""


def sub_grid_difference(full: Mapping[str, Any], part: Mapping[str, Any]) -> str | None:
    """``None`` when ``part``'s grid is ``full``'s or a part of it, else what differs.

    A part of a grid is the same experiment (name, seeds, budget, evaluation,
    resources...) with some of its learners (each with the same
    hyper-parameters) and some of its datasets (with the same specs): its
    trials are trials of the full grid, config for config. A grid split
    over machines or sessions this way merges back into one archive, and a
    part run with ``--resume ARCHIVE`` skips the trials the archive holds.
    """
    whole, mine = full.get("config") or {}, part.get("config") or {}
    differ = sorted(key for key in (set(whole) | set(mine)) - set(GRID_AXES) if whole.get(key) != mine.get(key))
    algorithms = whole.get("algorithms") or {}
    differ += [f"learner {name}" for name, hyper in sorted((mine.get("algorithms") or {}).items())
               if name not in algorithms or algorithms[name] != hyper]
    if not set(mine.get("datasets") or ()) <= set(whole.get("datasets") or ()):
        differ.append("datasets")
    if not set(part.get("dataset_specs") or ()) <= set(full.get("dataset_specs") or ()):
        differ.append("dataset specs")
    return ", ".join(differ) or None


def comparable_rows(rows: Iterable[Mapping[str, Any]]) -> list[tuple]:
    """Rows without the fields that differ between two honest runs of one trial (clocks, nodes)."""
    volatile = {"wall_time", "steps_per_second", "setup_seconds", "eval_seconds", "node_id", "eval_actor_restarts"}
    return [tuple(sorted((k, repr(v)) for k, v in row.items() if k not in volatile)) for row in sorted(rows, key=lambda r: r["step"])]


def display_name(key: TrialKey) -> str:
    """``algo on dataset seed N``: how messages name a trial."""
    return f"{key[0]} on {key[1]} seed {key[2]}"


def _read_json(path: Path | Location) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RklBenchError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RklBenchError(f"cannot read {path} ({exc})") from None
