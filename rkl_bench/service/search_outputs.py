"""What a search leaves in its experiment directory: ``best_config.yaml`` (a spec ``rkl-bench run``
accepts), ``trials.csv`` (one row per trial) and ``search_summary.json`` (what the figures are drawn
from), all rewritten from the study at the end of every session, also an interrupted one. They are
written as local files; with object storage, into the working copy that ``study_remote`` uploads."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from rkl_bench.errors import RklBenchError
from rkl_bench.layout import BEST_CONFIG_FILE, SEARCH_SUMMARY_FILE, TRIALS_FILE
from rkl_bench.service.config import load_config
from rkl_bench.service.search_budget import objective_text
from rkl_bench.service.search_config import SearchConfig
from rkl_bench.service.study_attrs import INTERRUPTED_ATTR, RERUN_ATTR, TUNE_TRIAL_ATTR
from rkl_bench.storage import Location

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BestTrial:
    number: int
    value: float
    params: dict[str, Any]


@dataclass(frozen=True)
class SearchSummary:
    experiment_dir: Path | Location
    """Tune's experiment directory: local, or in an object store (``--storage s3://...``)."""
    storage: str
    study_name: str
    trials_run: int
    """Tune trials started by this session."""
    complete: int
    pruned: int
    failed: int
    interrupted: int
    """Trials this session left unfinished (stopped with Ctrl-C); ``--resume`` re-runs them."""
    num_samples: int
    best: BestTrial | None
    best_config: Path | None
    work_dir: Path | None = None
    """Where the study (by default) and the files above are on this machine: the experiment directory,
    or for object storage the working copy that is copied to it (``study_remote``)."""
    figures: tuple[Path, ...] = ()
    """The search figures drawn from the summary (PNGs; PDFs beside them)."""
    copied: tuple[str, ...] = ()
    """The files copied to the experiment directory in an object store at the end of the session."""

    @property
    def finished(self) -> int:
        return self.complete + self.pruned + self.failed


def summarise(
    config: SearchConfig,
    study: Any,
    url: str,
    experiment_dir: Path,
    trials_run: int = 0,
    published: Any = None,
) -> SearchSummary:
    """Count the study's trials and write the best config, the trial table and the summary
    (``search_summary.json``, from which ``rkl_bench.report.search_figures`` draws) into the local
    ``experiment_dir`` (for object storage: the working copy, see ``study_remote``; ``published`` is
    then the bucket's experiment directory, which the best config's "Run it" line names)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = None
    if complete:
        top = max(complete, key=lambda t: (t.value, -t.number))
        best = BestTrial(top.number, float(top.value), dict(top.params))
    importances, importance_trials, importance_step = importances_of(
        study, complete, config.stages[0] if config.staged and len(config.stages) > 1 else None)
    shown = None if published is None else f"{str(published).rstrip('/')}/{BEST_CONFIG_FILE}"
    best_path = write_best_config(config, best, url, experiment_dir / BEST_CONFIG_FILE, shown) if best else None
    rows = [_trial_row(t, config.experiment.steps if config.staged else None) for t in trials]
    write_text(experiment_dir / TRIALS_FILE, _csv(rows, config.search.names, pair_labels(config), config.staged))
    summary_data = {
        "study_name": config.study_name,
        "storage": url,
        "objective": objective_text(config),
        "aggregate": config.search.objective.aggregate,
        "clock": "steps" if config.staged else "pairs",
        "pair_labels": pair_labels(config),
        "num_samples": config.search.num_samples,
        "best": None if best is None else vars(best),
        "importances": importances,
        "importances_from": importance_trials,
        "importances_at": importance_step,
        "space": {p.name: p.as_dict() for p in config.search.space},
        "trials": rows,
    }
    write_text(experiment_dir / SEARCH_SUMMARY_FILE, json.dumps(summary_data, indent=2, default=str) + "\n")
    states = [t.state for t in trials]
    return SearchSummary(
        experiment_dir=experiment_dir,
        storage=url,
        study_name=config.study_name,
        trials_run=trials_run,
        complete=states.count(TrialState.COMPLETE),
        pruned=states.count(TrialState.PRUNED),
        failed=sum(1 for t in trials if t.state == TrialState.FAIL and not t.user_attrs.get(INTERRUPTED_ATTR)),
        # Trials left RUNNING by an earlier session were failed when this one began.
        interrupted=states.count(TrialState.RUNNING),
        num_samples=config.search.num_samples,
        best=best,
        best_config=best_path,
        work_dir=experiment_dir,
    )


def _trial_row(trial: Any, staged_steps: int | None = None) -> dict[str, Any]:
    """A trial as plain data; ``staged_steps`` is a staged search's steps per pair (None otherwise)."""
    intermediate = {int(k): float(v) for k, v in sorted(trial.intermediate_values.items())}
    clock = max(intermediate, default=0)
    staged = staged_steps is not None
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": None if trial.value is None else float(trial.value),
        # A staged trial's clock is steps per pair; every pair is done once it reaches ``steps``.
        "pairs_done": (len(trial.user_attrs.get("pair_scores") or []) if clock >= staged_steps else 0) if staged else clock,
        **({"steps_reached": clock} if staged else {}),
        "pair_scores": trial.user_attrs.get("pair_scores"),
        "params": dict(trial.params),
        "intermediate": intermediate,
        "tune_trial_id": trial.user_attrs.get(TUNE_TRIAL_ATTR),
        "initial_point": bool(trial.user_attrs.get("initial_point")),
        "rerun_of": trial.user_attrs.get(RERUN_ATTR),
        "seconds": None if trial.duration is None else trial.duration.total_seconds(),
    }


def pair_labels(config: SearchConfig) -> list[str]:
    """Column names of the per-pair scores in ``trials.csv``: ``score:<dataset>`` (plus ``@<seed>`` with several seeds)."""
    from rkl_bench.service.search_trial import search_pairs

    specs = config.experiment.datasets
    seeds = config.experiment.seeds
    pairs = search_pairs(list(specs), seeds)
    return [f"score:{spec}" + (f"@{seed}" if len(seeds) > 1 else "") for spec, seed in pairs]


def _csv(rows: list[dict[str, Any]], names: Sequence[str], labels: Sequence[str] = (), staged: bool = False) -> str:
    """One row per trial: its state, objective, progress, parameters (empty where a
    conditional one was not sampled) and, where recorded, each pair's score at the
    trial's last clock tick (the scores behind ``value``)."""
    out = io.StringIO()
    progress = ["pairs_done", "steps_reached"] if staged else ["pairs_done"]
    columns = ["number", "state", "value", *progress, *names, *labels, "tune_trial_id", "initial_point", "rerun_of", "seconds"]
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        scores = row.get("pair_scores") or []
        writer.writerow({
            **{k: row[k] for k in columns if k in row},
            **{n: row["params"].get(n) for n in names},
            **{label: score for label, score in zip(labels, scores)},
        })
    return out.getvalue()


MIN_TRIALS_FOR_IMPORTANCES = 10


def importances_of(study: Any, complete: list[Any],
                   first_rung: int | None = None) -> tuple[dict[str, float] | None, int, int | None]:
    """``(importances, trials used, step)``: over the COMPLETE trials' objectives when there are
    :data:`MIN_TRIALS_FOR_IMPORTANCES` of them (``step`` None), else, in a staged search, over the
    running scores at its first rung ``first_rung`` (steps per pair), which every trial past it
    reported, pruned or not (``step`` = the rung); ``(None, 0, None)`` when neither has enough trials.

    Why the rung: with ASHA halving at each rung, a 24-trial study of three rungs completes about
    six trials, too few for an importance estimate; its first rung scores all of them on the same
    budget. Those are importances for the early score, which the figure's title says.
    """
    values = _importances(study, complete)
    if values is not None or first_rung is None:
        return values, len(complete) if values else 0, None
    import optuna
    from optuna.trial import TrialState

    at_rung = optuna.create_study(direction=study.direction)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        value = trial.intermediate_values.get(first_rung)
        if value is not None and math.isfinite(value):
            at_rung.add_trial(optuna.trial.create_trial(params=trial.params, distributions=trial.distributions,
                                                        value=float(value)))
    scored = at_rung.get_trials(deepcopy=False)
    values = _importances(at_rung, scored)
    return values, len(scored) if values else 0, first_rung if values else None


def _importances(study: Any, complete: list[Any]) -> dict[str, float] | None:
    """Parameter importances over COMPLETE trials (Optuna's PED-ANOVA); None below
    :data:`MIN_TRIALS_FOR_IMPORTANCES`.

    PED-ANOVA asks which values the top ``target_quantile`` of trials took; Optuna advises
    at least 5 trials there, so the quantile is ``max(0.1, 5 / n)`` for ``n`` trials (the
    default 0.1 from 50 trials on). Fewer than 10 trials give no estimate worth drawing.
    """
    import optuna

    if len(complete) < MIN_TRIALS_FOR_IMPORTANCES:
        return None
    evaluator = optuna.importance.PedAnovaImportanceEvaluator(target_quantile=max(0.1, 5 / len(complete)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = optuna.importance.get_param_importances(study, evaluator=evaluator)  # COMPLETE trials only
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:
        logger.info("no parameter importances: %s", exc)
        return None
    return {name: float(value) for name, value in values.items()}


def write_best_config(config: SearchConfig, best: BestTrial, url: str, path: Path, shown: str | None = None) -> Path:
    """The experiment spec with the best trial's hyper-parameters, checked by ``load_config``; its
    header's "Run it" line names ``shown`` (where the file is published, e.g. a bucket) or ``path``."""
    data = config.experiment.to_dict()
    data["name"] = f"{config.name}-best"
    data["algorithms"] = {config.algo: config.hyperparams(best.params)}
    header = (
        f"# Best trial of study {config.study_name!r} ({url}): trial {best.number}, objective {best.value:.3f}\n"
        f"# = {objective_text(config)}.\n"
        f"# Searched: {', '.join(f'{k}={v!r}' for k, v in best.params.items())}.\n"
        f"# Run it (and change datasets/seeds/steps for a bigger grid): rkl-bench run {shown or path}\n"
    )
    text = header + yaml.safe_dump(data, sort_keys=False)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    try:
        load_config(tmp)
    except RklBenchError as exc:
        tmp.unlink(missing_ok=True)
        raise RklBenchError(f"internal: the best configuration does not load back ({exc})") from None
    os.replace(tmp, path)
    return path


def write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
