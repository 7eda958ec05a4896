"""A part of an experiment grid: some of its learners and datasets (``rkl-bench run --learners/--datasets``).

A grid too long for one session, or split over clusters, runs in parts.
Each part is the same experiment (name, seeds, budget, evaluation,
resources: every trial config equal to the whole grid's) narrowed to some
learner columns and dataset rows. With ``--resume ARCHIVE`` a part runs the
cells of its own that the whole grid's archive lacks, and its export merges
back into that archive, which keeps the whole grid's record
(:func:`rkl_bench.training.archive.sub_grid_difference`). A part also lets
a fresh machine start training as soon as the files of its datasets are
made, instead of making every file of the grid first.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from rkl_bench.errors import RklBenchError
from rkl_bench.service.config import ExperimentConfig


def grid_part(config: ExperimentConfig, learners: Sequence[str] = (), datasets: Sequence[str] = ()) -> ExperimentConfig:
    """``config`` narrowed to ``learners`` (its ``algorithms`` keys, as ``td3_rkl@tuned``) and ``datasets``
    (its dataset entries, as written); an empty selection keeps that axis whole. The grid's order is kept."""
    where = config.path or config.name
    for flag, chosen, names in (("--learners", learners, tuple(config.algorithms)), ("--datasets", datasets, config.datasets)):
        unknown = [name for name in chosen if name not in names]
        if unknown:
            raise RklBenchError(f"{flag}: {', '.join(unknown)} not in {where} (it has {', '.join(names)})")
    return dataclasses.replace(
        config,
        algorithms={name: hyper for name, hyper in config.algorithms.items() if not learners or name in learners},
        datasets=tuple(name for name in config.datasets if not datasets or name in datasets),
    )


def names_list(text: str) -> list[str]:
    """A flag's comma-separated names (``a,b``; spaces ignored); empty names are an error."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise ValueError(f"empty name in {text!r}")
    return names
