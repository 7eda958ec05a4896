"""Resume only Tune state this service wrote: digests of Tune's state files, and who may write the directory.

No Ray import here (``run.py`` checks a resume before Ray is paid for); the
callback that keeps the digests fresh during a run is ``tuner.StateDigests``.

``Tuner.restore`` unpickles files of the experiment directory: ``tuner.pkl``
(``ray.cloudpickle``), the newest ``experiment_state-*.json`` (JSON whose
trial entries are cloudpickle blobs), the search algorithm's state
``basic-variant-state-*.json`` (cloudpickle, despite the name) and, when a
callback has state, ``callback-states-*.pkl`` (Ray 2.60:
``tune/impl/tuner_internal.py``, ``tune/execution/tune_controller.py``,
``tune/utils/util.py``). Unpickling runs code, so a tampered file runs its
payload the moment Tune reads it. Those are exactly the ``*.pkl`` and
``*.json`` files at the top of the experiment directory (Tune copies that set
to its staging directory on restore, ``experiment_state.py``).

So the service keeps the SHA-256 of each such file in its own record
(``rkl_bench_experiment.json``, key ``tune_state``), and ``--resume`` checks
every one before Ray starts and again right before ``Tuner.restore``: a file
whose digest is not recorded, or any state file at all in a directory whose
record has none, is refused with one error line, unread.

When the record is refreshed, in Ray 2.60's order of events:

* ``tuner.pkl``: Tune writes it in ``Tuner(...)``; ``run.py`` records it
  right after, before ``fit``.
* experiment and search state: Tune writes them to its driver staging
  directory, then calls every callback's ``get_state`` (``CallbackList.save_to_dir``),
  then uploads the staging directory to the experiment directory.
  ``tuner.StateDigests`` is such a callback: its ``get_state`` records the
  digests of the staged files, so the record is on disk before the upload
  starts, and a driver killed at any moment leaves only recorded versions
  (the last :data:`KEEP` per file are accepted: an upload may still carry an
  older one). ``get_state`` returns ``None``, so it adds no state file of its own.
  A restored run gets the callback back from ``tuner.pkl``.
* After ``fit`` returns, ``run.py`` records the files as they are: a
  restored run with nothing left to do runs no step, so the callback never
  saw its final snapshot.
* On restore Tune copies every top-level ``*.json``/``*.pkl`` (this record
  too) into the staging directory and uploads that directory from then on,
  so the callback updates the staged copy of the record as well; otherwise
  the upload would put the stale copy back.

What is not covered (``docs/security.md``): ``callback-states-*.pkl``, which
Tune writes after the callbacks' ``get_state`` (no rkl-bench callback has state,
so rkl-bench runs never write one, and one found is refused); files in trial
directories (``params.pkl``, ``error.pkl``: Tune 2.60 does not read them on a
restore with ``resume_errored``; checkpoints load with ``weights_only=True``);
and the record itself: whoever can write the directory can rewrite it. That
is why a directory, or any directory above it, that other users can write is
refused too. Resuming an experiment directory means trusting whoever could
write it.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping, Union

from rkl_bench.errors import RklBenchError
from rkl_bench.layout import EXPERIMENT_RECORD_FILE, TUNER_FILE
from rkl_bench.storage import Location, native

Where = Union[Path, Location]
"""An experiment directory: a local path, or a location in an object store (``rkl_bench.storage``)."""

DIGESTS_KEY = "tune_state"
STATE_SUFFIXES = (".pkl", ".json")
"""Top-level files Tune unpickles (or may) on restore."""
KEEP = 16
"""Digests accepted per state file: the newest staged versions."""


def digest(path: Where) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def state_files(experiment_dir: Where) -> Iterator[Where]:
    """Files at the top of ``experiment_dir`` that Tune may unpickle on restore (not this service's record)."""
    experiment_dir = native(experiment_dir)
    entries = sorted(experiment_dir.iterdir()) if isinstance(experiment_dir, Path) else experiment_dir.children()
    for path in entries:
        if path.name != EXPERIMENT_RECORD_FILE and path.suffix in STATE_SUFFIXES:
            yield path


def read_record(experiment_dir: Where) -> dict[str, Any] | None:
    try:
        record = json.loads((native(experiment_dir) / EXPERIMENT_RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_record(directory: Where, record: Mapping[str, Any]) -> None:
    """``<directory>/rkl_bench_experiment.json``, atomically (never half-written; in an object
    store one PUT, which is atomic there)."""
    directory = native(directory)
    if isinstance(directory, Location):
        (directory / EXPERIMENT_RECORD_FILE).write_bytes((json.dumps(record, indent=2) + "\n").encode("utf-8"))
        return
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{EXPERIMENT_RECORD_FILE}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(record, indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, directory / EXPERIMENT_RECORD_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def record_digests(experiment_dir: Where, sources: list[Where], staging_dir: Path | None = None) -> None:
    """Add the digests of ``sources`` (state files, named as in the experiment directory) to the record.

    Each file keeps its newest :data:`KEEP` digests, and the digest of the
    version now in the experiment directory while it is an accepted one.
    The record is written to ``staging_dir`` too when Tune keeps a copy there.
    """
    experiment_dir = native(experiment_dir)
    record = read_record(experiment_dir)
    if record is None:
        return  # not an rkl-bench run directory (a Tuner built without run.py)
    accepted: dict[str, list[str]] = {k: list(v) for k, v in (record.get(DIGESTS_KEY) or {}).items()}
    for source in sources:
        if not source.is_file():
            continue
        old = accepted.get(source.name, [])
        current = experiment_dir / source.name
        keep = [digest(current)] if current.is_file() and old and digest(current) in old else []
        merged = list(dict.fromkeys([digest(source), *keep, *old]))
        accepted[source.name] = merged[: max(KEEP, len(keep) + 1)]
    record[DIGESTS_KEY] = accepted
    if staging_dir is not None and (staging_dir / EXPERIMENT_RECORD_FILE).is_file():
        write_record(staging_dir, record)
    write_record(experiment_dir, record)


def verify_tune_state(experiment_dir: Where) -> None:
    """Refuse to resume unless every Tune state file is one this service recorded (see the module doc).

    In an object store the files are read there, exactly as Tune will download them."""
    experiment_dir = native(experiment_dir)
    record = read_record(experiment_dir) or {}
    accepted = record.get(DIGESTS_KEY)
    files = list(state_files(experiment_dir))
    if not files:
        return
    if not isinstance(accepted, dict) or not accepted:
        raise RklBenchError(
            f"{experiment_dir / EXPERIMENT_RECORD_FILE} holds no digests of Tune's state files (the experiment was started by an "
            "older rkl-bench, or not by `rkl-bench run`), so resuming would unpickle files nobody vouched for; "
            "start a new experiment (another name or --storage)"
        )
    for path in files:
        if path.is_symlink() or not path.is_file():
            raise RklBenchError(f"{path} is not a regular file; Tune state must be the files this service wrote")
        if digest(path) not in accepted.get(path.name, ()):
            raise RklBenchError(
                f"{path} is not Tune state this service wrote (its SHA-256 is not in {EXPERIMENT_RECORD_FILE}), so it was "
                "not loaded: resuming would unpickle it and run whatever it holds; put back the original file "
                "or start a new experiment (another name or --storage)"
            )


def check_private(experiment_dir: Where) -> None:
    """Refuse a directory that other users can write (see ``docs/cluster.md``, "Security").

    Local directories only: in an object store, who can write the prefix is
    the bucket's policy, which this process cannot read; ``docs/cluster.md``
    says what that means for ``--resume``.

    Mode bits, not ``access()`` (which says yes to root for everything): the
    experiment directory and its state files must not be group- or
    world-writable and must belong to this user (or root); each directory
    above may be group- or world-writable only with the sticky bit (``/tmp``),
    which keeps others from renaming what they do not own.
    """
    experiment_dir = native(experiment_dir)
    if isinstance(experiment_dir, Location):
        return
    me = os.geteuid()
    for path in [experiment_dir, *state_files(experiment_dir)]:
        st = path.lstat()
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise RklBenchError(
                f"{path} can be written by other users (mode {stat.filemode(st.st_mode)}), so its Tune state "
                f"cannot be trusted; make it private (chmod go-w {path}) if only you could have written it, "
                "or start a new experiment elsewhere"
            )
        if st.st_uid not in (me, 0):
            raise RklBenchError(
                f"{path} belongs to another user (uid {st.st_uid}), so its Tune state cannot be trusted; "
                "resume only experiments you wrote, or start a new one"
            )
    for parent in experiment_dir.parents:
        st = parent.stat()
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
            raise RklBenchError(
                f"{parent} (above the experiment directory) can be written by other users "
                f"(mode {stat.filemode(st.st_mode)}, no sticky bit), who could swap the experiment; "
                "move the experiment to a private directory or fix the mode"
            )
