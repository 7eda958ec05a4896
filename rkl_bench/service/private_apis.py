"""Every use of a private Ray or Optuna API, in one place, with the versions it was written against.

The service needs a few things neither library offers publicly. Each is one
function here, so an upgrade of Ray or Optuna is checked against this file
alone (the service tests exercise every function below):

* Ray Tune's ``OptunaSearch`` keeps its Optuna trials, its study and its set
  of finished trials in private attributes; :class:`~rkl_bench.service.study_search.StudySearch`
  extends it and reads them.
* Optuna marks a trial FAIL only through its storage, by the trial's storage
  id (``study._storage``, ``FrozenTrial._trial_id``): what the search does to
  trials a stopped session left RUNNING.
* A Tune trial's working directory (the one Tune syncs into the trial
  directory with every checkpoint) and its storage filesystem (what a search
  trial downloads an earlier session's checkpoint through) are only in the
  train session (``ray.train._internal.session``).
* A new session's ASHA starts with empty rungs; the earlier sessions' results
  are written into its rungs (``_brackets``, ``_rungs``), so a resumed study
  prunes as one uninterrupted study would.
* Token authentication (``ray_auth.py``): whether a GCS accepts this
  process's credentials is asked with Ray's own GCS client
  (``ray._raylet.GcsClient``), and turning token mode on in a process that
  imported Ray already re-reads Ray's cached config (``ray._raylet.Config``).
* A local-only Ray switches off cluster mode in ``ray._private.ray_constants``
  when Ray was already imported, and the connect timeout silences a warning of
  the ``ray._private.worker`` logger.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

WRITTEN_AGAINST = {"ray": "2.60.0", "optuna": "5.0.0"}
"""The versions these accesses were written and tested against."""
RAY_WORKER_LOGGER = "ray._private.worker"


# ------------------------------------------------------------ Tune's OptunaSearch
def searcher_trials(search: Any) -> dict[str, Any]:
    """Tune trial id -> the Optuna trial ``OptunaSearch`` asked for it."""
    return search._ot_trials


def searcher_study(search: Any) -> Any:
    """The Optuna study ``OptunaSearch`` samples from and tells results to."""
    return search._ot_study


def searcher_completed(search: Any) -> set[str]:
    """Tune trial ids ``OptunaSearch`` has already told the study about."""
    return search._completed_trials


# -------------------------------------------------------------------- Tune's ASHA
def seed_asha_rungs(scheduler: Any, history: dict[int, list[float]]) -> int:
    """Record earlier results in an ``ASHAScheduler``'s rungs: ``history`` maps a milestone (the
    scheduler's time attribute) to the values trials reached there. Returns how many were recorded."""
    recorded = 0
    for bracket in scheduler._brackets:
        for milestone, rung in bracket._rungs:
            for index, value in enumerate(history.get(int(milestone), ())):
                rung[f"earlier_session_{index}"] = value
                recorded += 1
    return recorded


# ------------------------------------------------------------------------ Optuna
def fail_trial(study: Any, trial: Any, attr: str) -> None:
    """Mark ``trial`` (a RUNNING ``FrozenTrial`` of ``study``) FAIL, with user attribute ``attr = True``."""
    from optuna.trial import TrialState

    storage = study._storage
    storage.set_trial_user_attr(trial._trial_id, attr, True)
    storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)


# -------------------------------------------------------------------------- Ray
def trial_working_directory() -> Path:
    """The running Tune trial's working directory (see ``trainable.trial_artifact_dir``)."""
    from ray.train._internal.session import get_session

    return Path(get_session().storage.trial_working_directory)


def trial_storage() -> tuple[Any, str]:
    """The running Tune trial's storage: its pyarrow filesystem and the storage path in it
    (``RunConfig.storage_path``); ``(None, "")`` outside a trial."""
    from ray.train._internal.session import get_session

    session = get_session()
    if session is None or getattr(session, "storage", None) is None:
        return None, ""
    return session.storage.storage_filesystem, session.storage.storage_fs_path


def disable_imported_cluster_mode() -> None:
    """Switch off Ray's cluster mode in an already imported Ray (Ray reads the constant at every lookup)."""
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False


# ------------------------------------------------------------ token authentication
def gcs_verdict(address: str) -> str:
    """``accepted`` or ``refused`` (an authentication error) for a GCS client of this process at ``address``;
    ``unknown <error>`` otherwise. Ray reads ``RAY_AUTH_MODE`` once per process: call it in a fresh one."""
    import ray._raylet as raylet

    try:
        client = raylet.GcsClient(address=address, cluster_id=None)
        client.internal_kv_keys(b"rkl-bench-probe", namespace=None, timeout=5)
    except raylet.AuthenticationError:
        return "refused"
    except Exception as exc:  # noqa: BLE001 - reported as unknown
        return f"unknown {type(exc).__name__}"
    return "accepted"


def reload_ray_auth_mode() -> None:
    """After ``RAY_AUTH_MODE`` changed: make an already imported Ray read it again (a no-op before the import)."""
    raylet = sys.modules.get("ray._raylet")
    if raylet is not None:
        raylet.Config.initialize("")
