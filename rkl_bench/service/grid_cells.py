"""The trials of an experiment grid and the order they run in (one place for run, tuner and plans)."""

from __future__ import annotations

from typing import Collection, Sequence

from rkl_bench.service.config import ExperimentConfig
from rkl_bench.training.archive import TrialKey


def grid_cells(config: ExperimentConfig, specs: Sequence[str]) -> set[TrialKey]:
    """Every (learner, dataset spec, seed) seed run of the grid ``config`` describes."""
    return {(algo, spec, seed) for algo in config.algorithms for spec in specs for seed in config.seeds}


def seed_groups(seeds: Sequence[int], size: int) -> list[list[int]]:
    """``seeds`` in order, cut into groups of ``size`` (the last may be smaller): the seeds each trial trains."""
    seeds = list(seeds)
    return [seeds[i : i + size] for i in range(0, len(seeds), size)]


def trial_order(config: ExperimentConfig, specs: Sequence[str],
                skip: Collection[TrialKey] = ()) -> list[tuple[str, str, list[int]]]:
    """The trials of the grid less ``skip``, as (algo, dataset spec, seeds), in the order they run:
    dataset by dataset, every learner on a dataset, its seeds left in groups of ``seeds_per_trial``."""
    return [(algo, spec, group) for spec in specs for algo in config.algorithms
            for group in seed_groups([s for s in config.seeds if (algo, spec, s) not in skip], config.seeds_per_trial)]
