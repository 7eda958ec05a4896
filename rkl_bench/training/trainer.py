"""One learner on one dataset: gradient steps, evaluation, checkpoints.

:class:`Trainer` is the part of a run that does not care who drives it. The
single-run loop (:mod:`rkl_bench.training.single_run`) and the Ray Tune
trainable both call ``train_steps``, ``evaluate``, ``save`` and ``restore``,
so the two produce the same numbers for the same seed.

Random streams of a run, all fixed by its seed:

* the learner's own (initialisation, target noise): ``make_learner(seed=...)``;
* minibatch indices: :class:`~rkl_bench.data.dataset.TensorSampler` seeded
  with the plain seed (the convention of :func:`rkl_bench.algos.nets.derive_seed`);
* evaluation episodes: :func:`eval_seed` of ``(seed, step)``, so a resumed run
  evaluates at step ``k`` exactly as an uninterrupted one does.

A checkpoint holds the learner's and the sampler's ``state_dict``, the step,
and whatever the caller adds under ``extra`` (the single-run loop keeps its
loss sums and clock there).

Devices (``device``: ``cpu``, ``cuda``, ``cuda:N``; :mod:`rkl_bench.algos.devices`):
the learner and the sampler's table live there (the dataset moves to the
device once, when the trainer is built; batch indices are drawn there).
Checkpoints are saved from the CPU and load on any device; evaluation rolls
out a CPU copy of the actor.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from rkl_bench.algos.devices import cpu_copy, resolve_device, to_cpu
from rkl_bench.algos.base import act_with
from rkl_bench.algos.nets import derive_seed
from rkl_bench.algos.registry import make_learner
from rkl_bench.data.dataset import OfflineDataset, TensorSampler
from rkl_bench.errors import RklBenchError
from rkl_bench.evaluation import EvalResult, Evaluator
from rkl_bench.training.files import load_torch, save_torch
from rkl_bench.training.metrics import LossMeter

DEFAULT_BATCH_SIZE = 256
"""Used when a learner's config has no ``batch_size`` (TD3+BC's value)."""

CHECKPOINT_FORMAT = 1


def eval_seed(seed: int, step: int) -> int:
    """Reset seed of the first evaluation episode at ``step`` of run ``seed`` (31 bits)."""
    return derive_seed(seed, f"eval@{step}") >> 32


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's contents; a file from elsewhere is a clear error."""
    state = load_torch(path)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise RklBenchError(f"{path} is not an rkl_bench training checkpoint; delete it or use another --out")
    return state


class Trainer:
    """A learner, its minibatch sampler and an evaluator for one (algo, dataset, seed).

    ``checkpoint`` (the dict of :func:`read_checkpoint`) builds the learner
    straight from its saved state, skipping construction-time fitting
    (TD3+RKL's behaviour model). ``env_id`` is where :meth:`evaluate` rolls
    the policy out; None for a run without evaluation.
    """

    def __init__(
        self,
        algo: str,
        dataset: OfflineDataset,
        hyperparams: Mapping[str, Any] | None,
        seed: int,
        *,
        env_id: str | None = None,
        device: str = "cpu",
        progress: bool = False,
        checkpoint: Mapping[str, Any] | None = None,
    ) -> None:
        self.algo = algo
        self.seed = int(seed)
        self.device = resolve_device(device)
        self.env_id = env_id
        self.env_family = dataset.env
        self.state_mean, self.state_std = dataset.state_stats()
        self.learner = make_learner(
            algo,
            dataset,
            hyperparams,
            self.seed,
            str(self.device),
            progress,
            state_mean=self.state_mean,
            state_std=self.state_std,
            state=None if checkpoint is None else checkpoint["learner"],
        )
        batch_size = getattr(getattr(self.learner, "config", None), "batch_size", DEFAULT_BATCH_SIZE)
        self.sampler = TensorSampler(dataset, batch_size, self.seed, self.state_mean, self.state_std, self.device)
        self.step = 0
        self._evaluator: Evaluator | None = None
        if checkpoint is not None:
            self._load(checkpoint, learner=False)

    # ------------------------------------------------------------- training
    def train_steps(self, n: int, meter: LossMeter | None = None) -> dict[str, float]:
        """``n`` gradient steps; the mean of each loss over them.

        Each step's losses are also added to ``meter`` when given, so a caller
        can average over a longer stretch than one call.
        """
        local = LossMeter()
        update, sample = self.learner.update, self.sampler.sample
        for _ in range(n):
            losses = update(sample())
            local.add(losses)
            if meter is not None:
                meter.add(losses)
            self.step += 1
        return local.means()

    # ----------------------------------------------------------- evaluation
    def evaluate(self, episodes: int, seed: int | None = None) -> EvalResult:
        """Roll out the current policy; ``seed`` defaults to :func:`eval_seed` ``(seed, step)``."""
        if self.env_id is None:
            raise RklBenchError("this run has no evaluation environment; train with evaluation off (--no-eval)")
        if self._evaluator is None:
            self._evaluator = Evaluator(self.env_id, env_family=self.env_family)
        return self._evaluator.evaluate(
            self.policy(),
            episodes,
            eval_seed(self.seed, self.step) if seed is None else seed,
            self.state_mean,
            self.state_std,
        )

    def policy(self) -> Callable[[np.ndarray], np.ndarray]:
        """What evaluation rolls out: the learner's ``act``, or on a GPU a CPU copy of its actor (same maths)."""
        if self.device.type == "cpu":
            return self.learner.act
        actor = cpu_copy(self.learner.actor)
        return partial(act_with, actor, obs_dim=self.learner.obs_dim)

    def close(self) -> None:
        if self._evaluator is not None:
            self._evaluator.close()
            self._evaluator = None

    # ---------------------------------------------------------- checkpoints
    def save(self, path: Path, extra: Mapping[str, Any] | None = None) -> None:
        """Write a checkpoint atomically (a crash mid-save keeps the previous one)."""
        save_checkpoint(path, self.algo, self.seed, self.step, self.learner, self.sampler, extra)

    def _load(self, checkpoint: Mapping[str, Any], learner: bool) -> None:
        check_checkpoint_of(checkpoint, self.algo, self.seed)
        if learner:
            self.learner.load_state_dict(checkpoint["learner"])
        self.sampler.load_state_dict(checkpoint["sampler"], int(checkpoint["step"]))
        self.step = int(checkpoint["step"])


def save_checkpoint(path: Path, algo: str, seed: int, step: int, learner: Any, sampler: TensorSampler,
                    extra: Mapping[str, Any] | None = None) -> None:
    """One run's checkpoint, written atomically, every tensor saved from the CPU (it loads on any device)."""
    save_torch(
        Path(path),
        {
            "format": CHECKPOINT_FORMAT,
            "algo": algo,
            "seed": seed,
            "step": step,
            "learner": to_cpu(learner.state_dict()),
            "sampler": to_cpu(sampler.state_dict()),
            "extra": dict(extra or {}),
        },
    )


def check_checkpoint_of(checkpoint: Mapping[str, Any], algo: str, seed: int) -> None:
    """Refuse a checkpoint of another algorithm or seed."""
    if checkpoint["algo"] != algo or checkpoint["seed"] != seed:
        raise RklBenchError(
            f"checkpoint is for {checkpoint['algo']} seed {checkpoint['seed']}, "
            f"not {algo} seed {seed}; use the run's own checkpoint"
        )
