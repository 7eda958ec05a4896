"""Evaluation off the training thread: a per-trial pool of Ray actors doing rollouts.

A trial hands the pool a :class:`PolicySnapshot` (a CPU copy of the policy
network plus the dataset's state normalisation) and goes on training; it
collects the result before it reports the row of that step. So the score in
the row of step ``k`` is the score of the weights at step ``k``, however long
the rollouts took.

Scores never depend on timing or on which actor ran what: the episodes of one
evaluation are assigned up front, block ``j`` (contiguous episodes
``a_j .. b_j - 1``) to actor ``j``, and episode ``i`` is always reset with
``seed + i`` (:mod:`rkl_bench.evaluation.rollouts` guarantees the return does
not depend on how many sub-envs ran it either). Concatenating the blocks
gives exactly what one :class:`~rkl_bench.evaluation.Evaluator` would.

An actor that dies (node lost, OOM, ``ray.kill``) is replaced by a fresh one
in the same slot and its block is submitted again; the actors keep no state
but cached envs, so the retry returns the same numbers. After
:data:`MAX_ATTEMPTS` failures of one block the evaluation fails, which fails
the trial, which Tune restarts from its last checkpoint.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray
import torch
from ray.exceptions import RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

from rkl_bench.algos.inference import actor_actions
from rkl_bench.errors import RklBenchError
from rkl_bench.evaluation import EvalResult, Evaluator

MAX_ATTEMPTS = 3
"""Tries per block of episodes before an evaluation gives up."""


@dataclass(frozen=True)
class PolicySnapshot:
    """What an evaluation needs of a learner: its deterministic policy network
    (normalised observations in, actions out) and the normalisation."""

    actor: torch.nn.Module
    state_mean: np.ndarray
    state_std: np.ndarray

    @classmethod
    def of(cls, actor: torch.nn.Module, state_mean: np.ndarray, state_std: np.ndarray) -> "PolicySnapshot":
        """A frozen CPU copy of ``actor``: training may go on changing the original."""
        frozen = copy.deepcopy(actor).to("cpu").requires_grad_(False).eval()
        return cls(frozen, np.asarray(state_mean, np.float32), np.asarray(state_std, np.float32))

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        """The same computation as the learners' ``act`` (``act_with``), so scores match the single-run loop's."""
        return actor_actions(self.actor, np.asarray(observations, np.float32))


@ray.remote
class EvalActor:
    """Rollouts on cached envs; stateless apart from the cache, so any actor can run any block."""

    def __init__(self, envs_per_actor: int) -> None:
        torch.set_num_threads(1)
        # D4RL data is scored on the v4 envs on purpose (rkl_bench.data.envs);
        # gymnasium's "out of date" warning would repeat in every actor's log.
        warnings.filterwarnings("ignore", message=".*is out of date.*")
        self.envs_per_actor = envs_per_actor
        self.evaluators: dict[tuple[str, str | None], Evaluator] = {}

    def evaluate(
        self, policy: PolicySnapshot, env_id: str, env_family: str | None, episodes: int, seed: int
    ) -> EvalResult:
        key = (env_id, env_family)
        if key not in self.evaluators:
            self.evaluators[key] = Evaluator(env_id, self.envs_per_actor, env_family=env_family)
        return self.evaluators[key].evaluate(policy, episodes, seed, policy.state_mean, policy.state_std)


def episode_blocks(episodes: int, count: int) -> list[tuple[int, int]]:
    """``(first episode, number of episodes)`` per actor: ``count`` contiguous, near-equal blocks."""
    edges = np.linspace(0, episodes, count + 1).round().astype(int)
    return [(int(a), int(b - a)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


@dataclass
class PendingEvaluation:
    """An evaluation in flight: the policy (kept alive in the object store until
    collected), its blocks, and per block the actor and the result future."""

    step: int
    seed: int
    episodes: int
    policy: Any
    blocks: list[tuple[int, int]]
    actors: list[Any] = field(default_factory=list)
    futures: list[Any] = field(default_factory=list)


class EvalPool:
    """``count`` evaluation actors owned by one trial.

    With ``cpus > 0`` each actor takes its own bundle of the trial's
    placement group (bundle ``1 + slot``; bundle 0 is the trial's); with
    ``cpus == 0`` actors reserve nothing and are placed on the trial's node
    when it can take them, so weights and results never leave the node.
    """

    def __init__(self, count: int, envs_per_actor: int, cpus: float, env_id: str, env_family: str | None) -> None:
        self.envs_per_actor = envs_per_actor
        self.cpus = cpus
        self.env_id = env_id
        self.env_family = env_family
        self.replaced = 0
        """Actors replaced after dying (reported in the rows as ``eval_actor_restarts``)."""
        self.actors = [self._spawn(slot) for slot in range(count)]

    def _spawn(self, slot: int) -> Any:
        placement_group = ray.util.get_current_placement_group()
        if self.cpus > 0 and placement_group is not None:
            strategy: Any = PlacementGroupSchedulingStrategy(placement_group, placement_group_bundle_index=1 + slot)
        else:
            strategy = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
        # num_gpus=0: rollouts run on the CPU (a GPU trial's policy snapshots are CPU copies), and
        # an actor never takes a share of the trial's GPU.
        return EvalActor.options(num_cpus=self.cpus, num_gpus=0, scheduling_strategy=strategy).remote(self.envs_per_actor)

    def submit(self, policy: PolicySnapshot, step: int, episodes: int, seed: int) -> PendingEvaluation:
        """Start evaluating ``policy`` on episodes ``0 .. episodes-1`` (episode ``i`` seeded ``seed + i``)."""
        pending = PendingEvaluation(step, seed, episodes, ray.put(policy), episode_blocks(episodes, len(self.actors)))
        for slot in range(len(pending.blocks)):
            pending.actors.append(None)
            pending.futures.append(None)
            self._submit_block(pending, slot)
        return pending

    def _submit_block(self, pending: PendingEvaluation, slot: int) -> None:
        first, n = pending.blocks[slot]
        actor = self.actors[slot]
        pending.actors[slot] = actor
        pending.futures[slot] = actor.evaluate.remote(pending.policy, self.env_id, self.env_family, n, pending.seed + first)

    def collect(self, pending: PendingEvaluation) -> EvalResult:
        """Wait for every block (replacing dead actors and retrying), then merge them in episode order."""
        parts: list[EvalResult] = []
        for slot in range(len(pending.blocks)):
            for attempt in range(1, MAX_ATTEMPTS + 1):
                try:
                    parts.append(ray.get(pending.futures[slot]))
                    break
                except RayActorError as exc:
                    if attempt == MAX_ATTEMPTS:
                        raise RklBenchError(
                            f"evaluation of step {pending.step} failed: its actor died {MAX_ATTEMPTS} times ({exc})"
                        ) from None
                    if pending.actors[slot] is self.actors[slot]:
                        self.actors[slot] = self._spawn(slot)
                        self.replaced += 1
                    self._submit_block(pending, slot)
        return merge_results(parts, pending.seed)

    def close(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []


_KEPT_POOL: EvalPool | None = None
"""The pool of the last trial this worker process ran (see :func:`trial_pool`)."""


def trial_pool(count: int, envs_per_actor: int, cpus: float, env_id: str, env_family: str | None) -> EvalPool:
    """The evaluation pool for a trial starting in this worker process.

    Tune reuses a finished trial's worker for the next trial (``reuse_actors``);
    the actors of its pool are env-agnostic, so when they reserve no CPUs
    (``cpus == 0``, nothing tied to the old trial's placement group) and the
    next trial asks for the same number, they are kept: no process start, no
    second import of torch and MuJoCo per trial. Otherwise a new pool.
    """
    global _KEPT_POOL
    kept, _KEPT_POOL = _KEPT_POOL, None
    if kept is not None and cpus == 0 and kept.cpus == 0 and (len(kept.actors), kept.envs_per_actor) == (count, envs_per_actor):
        kept.env_id, kept.env_family, kept.replaced = env_id, env_family, 0
        return kept
    if kept is not None:
        kept.close()
    return EvalPool(count, envs_per_actor, cpus, env_id, env_family)


def release_pool(pool: EvalPool) -> None:
    """A trial is done with ``pool``: keep it for the next trial in this worker if it reserves no CPUs."""
    global _KEPT_POOL
    if pool.cpus == 0 and pool.actors:
        _KEPT_POOL = pool
    else:
        pool.close()


def merge_results(parts: list[EvalResult], seed: int) -> EvalResult:
    """Blocks of one evaluation, in episode order, as one result (blocks ran side by side: seconds is the longest)."""
    scored = all(part.normalized_scores is not None for part in parts)
    return EvalResult(
        env_id=parts[0].env_id,
        seed=seed,
        returns=np.concatenate([part.returns for part in parts]),
        lengths=np.concatenate([part.lengths for part in parts]),
        normalized_scores=np.concatenate([part.normalized_scores for part in parts]) if scored else None,
        env_steps=sum(part.env_steps for part in parts),
        seconds=max(part.seconds for part in parts),
    )
