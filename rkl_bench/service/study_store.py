"""The Optuna study behind a search: its storage, and opening, creating and checking it (the user
attributes kept on it are ``study_attrs``).

Only the driver talks to the study (trials report through Tune), so SQLite in the experiment
directory is enough on a cluster too; ``search.storage`` may name any RDB URL or ``journal:<file>``.
A resumed study must have been started by the same search (:func:`open_study` compares the record
kept in :data:`RECORD_ATTR`), so a resume never mixes two searches' trials.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from rkl_bench.errors import RklBenchError
from rkl_bench.service.search_budget import objective_text
from rkl_bench.service.search_config import JOURNAL_PREFIX, SearchConfig
from rkl_bench.service.study_attrs import INTERRUPTED_ATTR, RECORD_ATTR


def storage_file(url: str) -> Path | None:
    """The file behind a SQLite or journal storage; None for a database server."""
    if url.startswith(JOURNAL_PREFIX):
        return Path(url[len(JOURNAL_PREFIX):])
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):])
    return None


def open_storage(url: str, must_exist: bool = False) -> Any:
    """An Optuna storage for ``url`` (RDB URL or ``journal:<file>``); a clear error if it cannot open."""
    import optuna

    if url.startswith(JOURNAL_PREFIX):
        from optuna.storages.journal import JournalFileBackend

        path = Path(url[len(JOURNAL_PREFIX):])
        if must_exist and not path.is_file():
            raise RklBenchError(f"nothing to resume: journal file {path} does not exist; run without --resume to start")
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        if must_exist and not path.is_file():
            raise RklBenchError(f"nothing to resume: study database {path} does not exist; run without --resume to start")
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as exc:  # noqa: BLE001 - drivers and servers fail in many ways; one line says which
        raise RklBenchError(f"cannot open the study storage {url} ({type(exc).__name__}: {exc}); check search.storage") from None


def open_study(storage: Any, name: str, url: str, record: dict[str, Any], resume: bool) -> Any:
    """The existing study when resuming (checked against ``record``); None for a new one."""
    import optuna

    exists = name in {s.study_name for s in storage.get_all_studies()}
    if not resume:
        if exists:
            raise RklBenchError(
                f"study {name!r} already exists in {url}; pass --resume to continue it, "
                "or set search.study_name (or the config's name) to start another"
            )
        return None
    if not exists:
        raise RklBenchError(f"nothing to resume: no study {name!r} in {url}; run without --resume to start it")
    study = optuna.load_study(study_name=name, storage=storage)
    recorded = study.user_attrs.get(RECORD_ATTR)
    if recorded != record:
        raise RklBenchError(
            f"study {name!r} in {url} was started with a different search ({differences(recorded, record)} differ); "
            "resume with the original config (only search.num_samples and search.max_concurrent may change), "
            "or start a new study under another name"
        )
    return study


def differences(recorded: Any, record: dict[str, Any]) -> str:
    if not isinstance(recorded, dict):
        return "the study was not started by rkl-bench tune; everything"
    keys = []
    for part in ("config", "search"):
        old, new = recorded.get(part) or {}, record.get(part) or {}
        keys += [f"{'search.' if part == 'search' else ''}{k}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if recorded.get("dataset_specs") != record.get("dataset_specs"):
        keys.append("dataset specs")
    return ", ".join(keys) or "nothing visible"


def create_study(storage: Any, config: SearchConfig, record: dict[str, Any]) -> Any:
    import optuna

    study = optuna.create_study(storage=storage, study_name=config.study_name, direction="maximize")
    study.set_user_attr(RECORD_ATTR, record)
    study.set_user_attr("objective", objective_text(config))
    for point in config.search.initial_points:
        study.enqueue_trial(dict(point), user_attrs={"initial_point": True})
    return study


def load_study(storage: Any, name: str) -> Any:
    import optuna

    return optuna.load_study(study_name=name, storage=storage)


def finished_count(study: Any) -> int:
    """Trials that count against ``num_samples``: COMPLETE, PRUNED and FAIL (but not interrupted ones)."""
    from optuna.trial import TrialState

    return sum(
        1
        for t in study.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        or (t.state == TrialState.FAIL and not t.user_attrs.get(INTERRUPTED_ATTR))
    )


def quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

