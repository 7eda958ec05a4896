"""``rkl-bench results status ARCHIVE``: where a grid that runs in parts stands, from its archive alone.

A grid such as ``tune_configs/table2_mixtures.yaml`` runs over sessions,
machines and clusters, one part at a time, and its archive is the one
thing that travels between them. Whoever picks it up next asks: which
cells are in, what do they say so far, which code made them, what is left
and what fits in the hours this machine has. The archive's experiment
record holds the whole grid's config and dataset specs, so the answer
needs no config file, no dataset file and no Ray:

* one line naming the grid and how many of its seed runs the archive holds;
* a table, dataset by learner, of the final normalised score (mean of the
  seeds held, their count beside it; ``-`` for a cell with none); with
  ``last_evals`` (``--last-evals K``) each seed's score is the mean of its
  last K evaluations instead, the report's ``--final last-evals --k K``, so
  the interim table is read by both of the verdict's rules;
* the commits the held seed runs were made at, with counts (a grid run in
  parts is made by several; dirty trees are named);
* the work and time left (:func:`~rkl_bench.service.grid_budget.budget_lines`,
  as ``run`` prints it), and with ``time_limit`` the trials that fit in it on
  ``slots`` run slots, in the grid's order
  (:func:`~rkl_bench.service.time_limit.plan_grid`, as ``run --time-limit``
  plans them): what to pass to ``run --datasets/--learners`` next;
* with ``running`` (``--running DIR``), the trials in flight in those
  experiment directories (:mod:`.grid_running`): step reached, recent speed,
  time left and newest checkpoint; the plan leaves them out and counts their
  slots as held until they should end, and finished trials there that the
  archive lacks are counted done (and named, to export).

:func:`markdown_table` is the same score table for a document or an issue
(``results status --markdown``): each cell the mean of the seeds held with
every seed's score in brackets, so an interim table such as
``docs/reproduction.md``'s is pasted, not transcribed.
"""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from rkl_bench.errors import RklBenchError
from rkl_bench.service.config import ExperimentConfig, parse_config
from rkl_bench.service.grid_budget import archived_rates, budget_lines, concurrent_trials, rate_of
from rkl_bench.service.grid_cells import grid_cells
from rkl_bench.service.grid_running import UnfinishedTrial, experiment_progress, in_flight, progress_lines
from rkl_bench.service.time_limit import plan_grid
from rkl_bench.storage import Location
from rkl_bench.training.archive import Archive, load_archive

MISSING = "-"


def grid_status(path: str | Path | Location, *, time_limit: float | None = None, slots: int | None = None,
                running: Sequence[str | Path] = (), last_evals: int = 1) -> list[str]:
    """The lines ``results status`` prints for the archive at ``path`` (see the module doc).

    ``slots`` is the trials run at once for the time left and the plan (default: this machine's CPUs
    over a trial's, as a local ``run`` would); ``time_limit`` (seconds) adds the plan of what fits.
    ``running``: experiment directories of parts in flight (:mod:`.grid_running`): their unfinished
    trials are listed, and the plan leaves them out and keeps their slots until they should end.
    ``last_evals``: how many of each seed's last evaluations its score averages (1: the final one).
    """
    archive = load_archive(path)
    config, specs = archive_grid(archive, path)
    progress = [experiment_progress(directory) for directory in running]
    cells = grid_cells(config, specs)
    held = set(archive.trials) & cells
    slots = slots or concurrent_trials(config, None) or 1
    lines = [f"{path}: grid {config.name} ({len(config.algorithms)} learners x {len(specs)} datasets x "
             f"{len(config.seeds)} seeds, {config.steps:,} steps): {len(held)} of {len(cells)} seed runs held"]
    lines += score_table(archive, config, specs, last_evals)
    lines.append(commits_line(archive, held))
    rates = archived_rates(archive)
    done_there = {t.key for p in progress for t in p.finished} & cells
    lines += budget_lines(config, specs, held | done_there, rates, slots)
    lines += progress_lines(progress, held, cells)
    running_now = in_flight(progress, cells)
    skip = held | done_there | {key for t in running_now for key in t.keys}
    if time_limit is not None and len(skip) < len(cells):
        busy = [in_flight_seconds(t, config, rates) for t in running_now]
        plan = plan_grid(config, specs, skip, rates, time_limit, slots, busy)
        lines.append(f"in {time_limit / 3600:.2f} h on {slots} run slot(s): {len(plan.run)} trial(s) fit (the last ends "
                     f"about {plan.ends_after / 3600:.2f} h from the start), {len(plan.deferred)} left for later")
        if plan.run:
            lines.append("fits: " + ", ".join(f"{t.algo} on {t.dataset.split('/')[-1]} (seeds "
                                              f"{','.join(map(str, t.seeds))}, {t.seconds / 3600:.1f} h)" for t in plan.run))
    return lines


def in_flight_seconds(trial: UnfinishedTrial, config: ExperimentConfig, rates: dict[str, float]) -> float:
    """How long a trial in flight should still hold its slot: its own recent speed, else (no row yet,
    or no speed in its rows) the archive's rate for its whole length; 0 when neither is known."""
    if trial.seconds_left is not None:
        return trial.seconds_left
    rate = rate_of(trial.algo, rates)
    return 0.0 if rate is None else len(trial.seeds) * config.steps / rate


def archive_grid(archive: Archive, path: Any) -> tuple[ExperimentConfig, tuple[str, ...]]:
    """The grid an archive belongs to: the config and dataset specs of its experiment record."""
    record = archive.record
    if not record or not isinstance(record.get("config"), dict) or not isinstance(record.get("dataset_specs"), list):
        raise RklBenchError(f"{path}: the archive has no experiment record (config and dataset specs), so its grid is unknown; "
                            "export it again with this version")
    config = parse_config(record["config"], str(record["config"].get("name") or "experiment"))
    return config, tuple(str(spec) for spec in record["dataset_specs"])


def score_table(archive: Archive, config: ExperimentConfig, specs: Sequence[str], last_evals: int = 1) -> list[str]:
    """Dataset rows by learner columns: mean score of the seeds held (:func:`seed_score`), ``(n)`` their count."""
    algos = list(config.algorithms)
    header = ["dataset", *algos]
    body = []
    for entry, spec in zip(config.datasets, specs):
        row = [entry]
        for algo in algos:
            _, scores = seed_scores(archive, algo, spec, config.seeds, last_evals)
            row.append(f"{statistics.fmean(scores):.1f} ({len(scores)})" if scores else MISSING)
        body.append(row)
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    what = "final normalised score" if last_evals == 1 else f"normalised score over each seed's last {last_evals} evaluations"
    title = f"{what}, mean of the seeds held (how many of {len(config.seeds)}):"
    return [title] + ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
                      for line in [header, *body]]


def markdown_table(path: str | Path | Location, last_evals: int = 1) -> list[str]:
    """The score table of the archive at ``path`` as Markdown: one row per dataset of the grid, one column
    per learner; a cell is the mean score (:func:`seed_score`) of the seeds held and, in brackets, each
    seed's in seed order (``-`` for a seed not held yet); an empty cell when none is held."""
    archive = load_archive(path)
    config, specs = archive_grid(archive, path)
    algos = list(config.algorithms)
    lines = ["| dataset | " + " | ".join(algos) + " |", "|---|" + "---:|" * len(algos)]
    for entry, spec in zip(config.datasets, specs):
        cells = []
        for algo in algos:
            per_seed, scores = seed_scores(archive, algo, spec, config.seeds, last_evals)
            seeds = " / ".join(MISSING if score is None else f"{score:.1f}" for score in per_seed)
            cells.append(f"{statistics.fmean(scores):.1f} ({seeds})" if scores else "")
        lines.append(f"| {entry} | " + " | ".join(cells) + " |")
    return lines


def seed_scores(archive: Archive, algo: str, spec: str, seeds: Sequence[int],
                last_evals: int = 1) -> tuple[list[float | None], list[float]]:
    """A cell's score per seed (``None`` where not held) and the scores held, in seed order."""
    per_seed = [seed_score(archive, (algo, spec, seed), last_evals) for seed in seeds]
    return per_seed, [score for score in per_seed if score is not None]


def seed_score(archive: Archive, key: tuple[str, str, int], last_evals: int = 1) -> float | None:
    """A held seed run's score: the mean normalised score of its last ``last_evals`` evaluation rows
    (rows are kept in step order; all of them when it has fewer), by default its final evaluation's.
    ``None``: not held, or no score in its rows."""
    if last_evals < 1:
        raise RklBenchError(f"the evaluations a score averages must be at least 1, got {last_evals}")
    trial = archive.trials.get(key)
    scores = [row["normalized_score"] for row in (trial.rows if trial is not None else [])
              if row.get("normalized_score") is not None]
    return statistics.fmean(float(score) for score in scores[-last_evals:]) if scores else None


def commits_line(archive: Archive, held: set[tuple[str, str, int]]) -> str:
    """Which commits made the held seed runs (their last row's ``git_commit``), most first."""
    made: Counter[str] = Counter()
    dirty: Counter[str] = Counter()
    for key in held:
        rows = archive.trials[key].rows
        last = rows[-1] if rows else {}
        commit = str(last.get("git_commit") or "unknown")[:7]
        made[commit] += 1
        if last.get("git_dirty"):
            dirty[commit] += 1
    if not made:
        return "code: no seed runs held yet"
    shown = ", ".join(f"{commit} {count}" + (f" ({dirty[commit]} from a dirty tree)" if dirty[commit] else "")
                      for commit, count in sorted(made.items(), key=lambda item: (-item[1], item[0])))
    return f"code: {sum(made.values())} seed runs from {len(made)} commit(s): {shown}"
