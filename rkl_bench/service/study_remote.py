"""A search whose ``--storage`` is an object store: its study and summaries live on the driver and are
copied to the bucket.

Tune writes a search's trial directories into the bucket from every node, like a grid's. The
Optuna study cannot live there: SQLite needs a local file (it locks and rewrites pages in place,
which no object store does), and only the driver talks to the study anyway. So the driver keeps a
**working copy** of the search's files on its own disk and uploads them into the experiment
directory in the bucket, next to Tune's trial directories::

    s3://bucket/prefix/<name>/            the experiment directory (Tune's trials, from every node)
        optuna.db                         a consistent snapshot of the study
        rkl_bench_search.json             what defines the search (uploaded before any trial)
        trials.csv, search_summary.json, best_config.yaml, figures/
    $RKL_BENCH_STUDY_DIR/<location>/      the working copy on the driver, one directory per experiment
                                          (default ~/.cache/rkl_bench/studies/s3_bucket_prefix_<name>)

**When it is copied.** The search record and the study before any trial starts; a snapshot of
``optuna.db`` after every finished trial (:class:`StudySnapshots`, a Tune callback: the searcher has told the
study before Tune calls it); everything at the end of a session, an interrupted one (Ctrl-C) too,
and the study alone when a session ends on an error. The snapshot is made with SQLite's backup API
(:func:`sqlite_snapshot`), so it is a consistent database even while the driver writes, and it is
one PUT, which an object store shows whole or not at all.

**Which copy ``--resume`` goes on from** (:func:`choose_copy`). On a new machine (no working copy)
the bucket's ``optuna.db`` is downloaded. When both exist, each is read as a study and the one that
holds the other is used: at least as many trials, and every trial the other had finished, with the
same state, value and parameters. That is the newer copy (a working copy whose last upload failed;
a bucket another machine has gone on with). Equal copies use the working copy. When neither holds
the other (two machines went on from one snapshot) the resume is refused with one line naming both,
since taking either would lose the other's trials. A study kept in ``search.storage`` (a database
server, a journal file) is the user's to place: only the summaries are copied then.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ray import tune

from rkl_bench.errors import RklBenchError
from rkl_bench.layout import (
    BEST_CONFIG_FILE,
    FIGURES_DIR,
    SEARCH_RECORD_FILE,
    SEARCH_SUMMARY_FILE,
    STUDY_FILE,
    TRIALS_FILE,
)
from rkl_bench.service.study_attrs import RECORD_ATTR
from rkl_bench.storage import Location

logger = logging.getLogger(__name__)

STUDY_DIR_ENV = "RKL_BENCH_STUDY_DIR"
STUDY_DIR_DEFAULT = Path("~/.cache/rkl_bench/studies")
OUTPUT_FILES = (SEARCH_RECORD_FILE, TRIALS_FILE, SEARCH_SUMMARY_FILE, BEST_CONFIG_FILE)
"""The summaries uploaded beside the study (and ``figures/``)."""
SQLITE_SIDE_FILES = ("-journal", "-wal", "-shm")


def study_dir_root() -> Path:
    """Where working copies of remote searches live: ``$RKL_BENCH_STUDY_DIR`` or ``~/.cache/rkl_bench/studies``."""
    return Path(os.environ.get(STUDY_DIR_ENV) or STUDY_DIR_DEFAULT).expanduser()


@dataclass(frozen=True)
class StudyView:
    """What a copy of a study says about its trials, for comparing two copies."""

    where: str
    trials: int
    finished: dict[int, tuple[str, Any, str]]
    """Trial number -> (state, value, parameters) of every finished trial."""
    record: Any


@dataclass(frozen=True)
class RemoteStudy:
    """A search's experiment directory in an object store and its working copy on this machine."""

    remote: Location
    work_dir: Path

    @classmethod
    def of(cls, experiment_dir: Location) -> "RemoteStudy":
        """The working copy for ``experiment_dir``: one directory per location under :func:`study_dir_root`."""
        slug = re.sub(r"[^A-Za-z0-9.-]+", "_", str(experiment_dir)).strip("_")
        return cls(experiment_dir, (study_dir_root() / slug).resolve())

    @property
    def study_file(self) -> Path:
        return self.work_dir / STUDY_FILE

    # ------------------------------------------------------------ before a session
    def check_fresh(self) -> None:
        """A new search (no ``--resume``): a working copy left here for this location is refused, not
        overwritten: its study may be the only one (an upload that never reached the bucket)."""
        if self.work_dir.is_dir() and any(self.work_dir.iterdir()):
            raise RklBenchError(
                f"{self.work_dir} holds a working copy of a search of {self.remote}, but the bucket holds no "
                f"experiment there; pass --resume to go on from it (and copy it to the bucket), or delete {self.work_dir} "
                "to start afresh"
            )

    def fetch(self, study_name: str, announce: Callable[[str], None] | None = None) -> None:
        """Make the working copy's ``optuna.db`` the copy ``--resume`` goes on from (see the module doc)."""
        say = announce or logger.info
        remote_file = self.remote / STUDY_FILE
        have_remote = remote_file.is_file()
        have_local = self.study_file.is_file()
        if not have_remote and not have_local:
            raise RklBenchError(
                f"nothing to resume: no study at {remote_file}, nor a working copy at {self.study_file}; "
                "run without --resume to start"
            )
        if not have_remote:
            say(f"study: {remote_file} does not exist; going on from the working copy {self.study_file} "
                "(copied to the bucket as the search goes on)")
            return
        self.work_dir.mkdir(parents=True, exist_ok=True)
        download = self.work_dir / f".{STUDY_FILE}.download"
        download.write_bytes(remote_file.read_bytes())
        try:
            theirs = read_view(download, study_name, str(remote_file))
            if not have_local:
                use_remote = True
                say(f"study: downloaded {remote_file} ({theirs.trials} trial(s)) to {self.study_file}")
            else:
                mine = read_view(self.study_file, study_name, str(self.study_file))
                use_remote = choose_copy(mine, theirs) == "remote"
                if use_remote:
                    say(f"study: the bucket's copy {remote_file} ({theirs.trials} trial(s)) is newer than the working "
                        f"copy {self.study_file} ({mine.trials}); going on from the bucket's")
                else:
                    newer = "the same as" if (mine.trials, mine.finished) == (theirs.trials, theirs.finished) else "newer than"
                    say(f"study: the working copy {self.study_file} ({mine.trials} trial(s)) is {newer} the bucket's "
                        f"{remote_file} ({theirs.trials}); going on from the working copy")
            if use_remote:
                for suffix in SQLITE_SIDE_FILES:  # a journal of the old file must not be applied to the new one
                    Path(f"{self.study_file}{suffix}").unlink(missing_ok=True)
                os.replace(download, self.study_file)
        finally:
            download.unlink(missing_ok=True)

    # -------------------------------------------------------------- copying out
    def start(self, with_study: bool) -> None:
        """The search record (and the study, ``with_study``) in the bucket before any trial runs, so a
        driver lost before its first trial finished leaves a search that resumes anywhere; a bucket
        this driver cannot write is one error line."""
        try:
            (self.remote / SEARCH_RECORD_FILE).write_bytes((self.work_dir / SEARCH_RECORD_FILE).read_bytes())
            if with_study:
                self.upload_study()
        except OSError as exc:
            raise RklBenchError(f"--storage {self.remote}: cannot write the search's files there ({exc}); "
                                "check the credentials' write access to the bucket") from None

    def upload_study(self) -> None:
        """A consistent snapshot of the working copy's study, uploaded as ``<experiment>/optuna.db``."""
        (self.remote / STUDY_FILE).write_bytes(sqlite_snapshot(self.study_file))

    def publish(self, with_study: bool) -> list[str]:
        """Upload the study (``with_study``), the summaries and ``figures/`` that exist in the working copy;
        returns the names uploaded."""
        names = []
        if with_study and self.study_file.is_file():
            self.upload_study()
            names.append(STUDY_FILE)
        for name in OUTPUT_FILES:
            if (self.work_dir / name).is_file():
                (self.remote / name).write_bytes((self.work_dir / name).read_bytes())
                names.append(name)
        figures = self.work_dir / FIGURES_DIR
        for path in sorted(figures.iterdir()) if figures.is_dir() else []:
            if path.is_file() and not path.name.startswith("."):
                (self.remote / FIGURES_DIR / path.name).write_bytes(path.read_bytes())
                names.append(f"{FIGURES_DIR}/{path.name}")
        return names

    def upload_quietly(self, with_study: bool = True) -> list[str]:
        """:meth:`publish`, where a failure is a warning (the working copy holds everything, and the next
        session copies it again) and must not hide another error (a session ending on one)."""
        try:
            return self.publish(with_study)
        except (OSError, sqlite3.Error, RklBenchError) as exc:
            logger.warning("could not copy the search's files to %s (%s); they are in %s, and --resume copies them",
                           self.remote, exc, self.work_dir)
            return []


def sqlite_snapshot(file: Path) -> bytes:
    """The SQLite database ``file`` as one consistent image (SQLite's online backup), made beside it;
    a missing file is an error (never an empty database)."""
    fd, name = tempfile.mkstemp(prefix=f".{file.name}.", suffix=".snapshot", dir=file.parent)
    os.close(fd)
    try:
        source = sqlite3.connect(f"{file.resolve().as_uri()}?mode=rw", uri=True)
        try:
            target = sqlite3.connect(name)
            try:
                source.backup(target)
            finally:
                target.close()
        finally:
            source.close()
        return Path(name).read_bytes()
    finally:
        Path(name).unlink(missing_ok=True)


def read_view(file: Path, study_name: str, where: str) -> StudyView:
    """The trials of study ``study_name`` in the SQLite file ``file`` (``where`` names it in messages)."""
    import optuna

    try:
        storage = optuna.storages.RDBStorage(f"sqlite:///{file}")
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file, in one line
        raise RklBenchError(f"{where} is not an Optuna study database ({type(exc).__name__}: {exc})") from None
    try:
        if study_name not in {s.study_name for s in storage.get_all_studies()}:
            raise RklBenchError(f"{where} holds no study {study_name!r}; is it the copy of another search?")
        study = optuna.load_study(study_name=study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        finished = {
            t.number: (t.state.name, t.value, repr(sorted(t.params.items()))) for t in trials if t.state.is_finished()
        }
        return StudyView(where, len(trials), finished, study.user_attrs.get(RECORD_ATTR))
    finally:
        storage.engine.dispose()


def holds(newer: StudyView, older: StudyView) -> bool:
    """``newer`` has at least ``older``'s trials, and every trial ``older`` had finished, finished alike."""
    return newer.trials >= older.trials and all(newer.finished.get(n) == v for n, v in older.finished.items())


def choose_copy(local: StudyView, remote: StudyView) -> str:
    """``"local"`` or ``"remote"``: the copy ``--resume`` goes on from (see the module doc); one error
    line when they are of different searches or neither holds the other."""
    if local.record != remote.record:
        raise RklBenchError(
            f"the working copy {local.where} and the bucket's {remote.where} are studies of different searches; "
            f"delete the one that is not this search's (the working copy: rm {local.where})"
        )
    if holds(local, remote):
        return "local"
    if holds(remote, local):
        return "remote"
    raise RklBenchError(
        f"the working copy {local.where} ({local.trials} trial(s)) and the bucket's {remote.where} ({remote.trials}) "
        "each hold finished trials the other lacks (two sessions went on from one copy?); going on from either "
        f"loses the other's: delete the one to drop (rm {local.where}, or the object in the bucket) and resume again"
    )


class StudySnapshots(tune.Callback):
    """Uploads a snapshot of the study after every finished or failed trial (see the module doc); a
    failed upload is a warning, and the next trial's (or the session's last) upload tries again."""

    def __init__(self, study: RemoteStudy) -> None:
        self.study = study

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._snapshot()

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._snapshot()

    def _snapshot(self) -> None:
        try:
            self.study.upload_study()
        except (OSError, sqlite3.Error, RklBenchError) as exc:
            logger.warning("could not copy the study to %s: %s", self.study.remote, exc)


def publish_names(names: Sequence[str]) -> str:
    """``optuna.db, trials.csv, ..., figures/ (8 files)``: the upload in one line's worth."""
    figures = [n for n in names if n.startswith(f"{FIGURES_DIR}/")]
    rest = [n for n in names if n not in figures]
    return ", ".join(rest + ([f"{FIGURES_DIR}/ ({len(figures)} files)"] if figures else []))
