"""``K`` seeds of one (algorithm, dataset) trained together in one process: :class:`SeedTrainer`.

The training-layer face of :mod:`rkl_bench.algos.seeds` (``seeds_per_trial``).
Everything a caller sees is per seed and the same as a :class:`~rkl_bench.training.trainer.Trainer`
of that seed would give: its learner (``learners[k]``), its sampler stream,
its checkpoint (:meth:`SeedTrainer.save`, the format of ``Trainer.save``: a
seed trained here resumes as an ordinary run and the reverse), its
evaluation (a CPU copy of its actor, episodes seeded ``eval_seed(seed, step)``)
and its loss means. The seeds advance together, so there is one ``step``.

The dataset moves to the device once for all seeds (one table for the
sampler, one copy of the rows for the learners).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from rkl_bench.algos.base import act_with
from rkl_bench.algos.devices import cpu_copy, resolve_device
from rkl_bench.algos.registry import make_learners
from rkl_bench.algos.seeds import SeedStack, check_stackable
from rkl_bench.data.dataset import OfflineDataset, SeedSampler
from rkl_bench.errors import RklBenchError
from rkl_bench.evaluation import EvalResult, Evaluator
from rkl_bench.training.metrics import LossMeter
from rkl_bench.training.trainer import DEFAULT_BATCH_SIZE, check_checkpoint_of, eval_seed, save_checkpoint


class SeedTrainer:
    """Learners of ``seeds`` (one algorithm, dataset and hyper-parameters), their samplers and evaluation.

    ``checkpoints[k]`` (a :func:`~rkl_bench.training.trainer.read_checkpoint`
    dict, or None) resumes seed ``k``; the seeds must resume from the same
    step. ``compile`` compiles the vectorised update (:class:`~rkl_bench.algos.seeds.SeedStack`).
    """

    def __init__(
        self,
        algo: str,
        dataset: OfflineDataset,
        hyperparams: Mapping[str, Any] | None,
        seeds: Sequence[int],
        *,
        env_id: str | None = None,
        device: str = "cpu",
        progress: bool = False,
        checkpoints: Sequence[Mapping[str, Any] | None] | None = None,
        compile: bool = True,
    ) -> None:
        self.algo = algo
        self.seeds = [int(seed) for seed in seeds]
        if len(set(self.seeds)) != len(self.seeds) or not self.seeds:
            raise RklBenchError(f"seeds trained together must be distinct (and at least one), got {self.seeds}")
        check_stackable(algo, len(self.seeds))
        self.device = resolve_device(device)
        self.env_id = env_id
        self.env_family = dataset.env
        self.state_mean, self.state_std = dataset.state_stats()
        checkpoints = list(checkpoints) if checkpoints is not None else [None] * len(self.seeds)
        if len(checkpoints) != len(self.seeds):
            raise ValueError(f"{len(self.seeds)} seeds but {len(checkpoints)} checkpoints")
        for seed, checkpoint in zip(self.seeds, checkpoints):
            if checkpoint is not None:
                check_checkpoint_of(checkpoint, algo, seed)
        steps = {int(c["step"]) if c is not None else 0 for c in checkpoints}
        if len(steps) != 1:
            raise RklBenchError(
                f"seeds {self.seeds} of {algo} resume from different steps ({sorted(steps)}); seeds trained "
                "together go on from one step"
            )
        self.learners = make_learners(
            algo, dataset, hyperparams, self.seeds, str(self.device), progress,
            state_mean=self.state_mean, state_std=self.state_std,
            states=[None if c is None else c["learner"] for c in checkpoints],
        )
        batch_size = getattr(self.learners[0].config, "batch_size", DEFAULT_BATCH_SIZE)
        self.sampler = SeedSampler(dataset, batch_size, self.seeds, self.state_mean, self.state_std, self.device)
        self.step = steps.pop()
        for sampler, checkpoint in zip(self.sampler.samplers, checkpoints):
            if checkpoint is not None:
                sampler.load_state_dict(checkpoint["sampler"], self.step)
        self.stack = SeedStack(self.learners, compile=compile)
        self._evaluator: Evaluator | None = None

    @property
    def seed(self) -> int:
        """The first of the seeds: what names them together (a Tune trial's ``seed``)."""
        return self.seeds[0]

    # ------------------------------------------------------------- training
    def train_steps(self, n: int, meters: Sequence[LossMeter] | None = None) -> list[dict[str, float]]:
        """``n`` updates of every seed; per seed the mean of each loss over them (also added to ``meters[k]``)."""
        local = [LossMeter() for _ in self.seeds]
        update, sample = self.stack.update, self.sampler.sample
        for _ in range(n):
            for k, losses in enumerate(update(sample())):
                local[k].add(losses)
                if meters is not None:
                    meters[k].add(losses)
            self.step += 1
        return [meter.means() for meter in local]

    # ----------------------------------------------------------- evaluation
    def policy(self, k: int) -> Callable[[np.ndarray], np.ndarray]:
        """Seed ``k``'s deterministic policy on the CPU (a copy: training may go on)."""
        self.stack.sync()
        actor = cpu_copy(self.learners[k].actor)
        return lambda observations: act_with(actor, observations, self.learners[k].obs_dim)

    def evaluate(self, k: int, episodes: int, seed: int | None = None) -> EvalResult:
        """Roll out seed ``k``'s policy; ``seed`` defaults to :func:`eval_seed` ``(its seed, step)``."""
        if self.env_id is None:
            raise RklBenchError("this run has no evaluation environment; train with evaluation off (--no-eval)")
        if self._evaluator is None:
            self._evaluator = Evaluator(self.env_id, env_family=self.env_family)
        return self._evaluator.evaluate(
            self.policy(k), episodes, eval_seed(self.seeds[k], self.step) if seed is None else seed,
            self.state_mean, self.state_std,
        )

    def close(self) -> None:
        if self._evaluator is not None:
            self._evaluator.close()
            self._evaluator = None

    # ---------------------------------------------------------- checkpoints
    def learner(self, k: int) -> Any:
        """Seed ``k``'s learner, up to date (its ``state_dict()`` is a checkpoint of an ordinary run)."""
        self.stack.sync()
        return self.learners[k]

    def save(self, k: int, path: Path, extra: Mapping[str, Any] | None = None) -> None:
        """Seed ``k``'s checkpoint, in the format of ``Trainer.save`` (atomic, from the CPU)."""
        save_checkpoint(path, self.algo, self.seeds[k], self.step, self.learner(k), self.sampler.samplers[k], extra)
