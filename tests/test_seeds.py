"""Vectorised seeds (rkl_bench/algos/seeds.py, training/seed_trainer.py): K seeds in one update.

The acceptance test: each seed trained in a stack has, after several updates
(actor steps included), the parameters, targets, Adam moments and metrics
of the same seed trained alone on its plain path, within float tolerance
(batched matrix multiplies and fused Adam round differently). Then: the
per-seed batches are those of a seed's own sampler (bit for bit), a seed's
checkpoint from a stack is an ordinary checkpoint (a Trainer goes on from
it), a stack resumed from its seeds' checkpoints continues bit-exactly, and
learners the stack cannot train are refused.

The stacks here run the vmapped update uncompiled (``compile=False``: the
same function ``torch.compile`` gets); the compiled one is checked in a
``slow`` test.
"""

from __future__ import annotations

import pytest
import torch

from rkl_bench.algos import make_learner, make_learners
from rkl_bench.algos.seeds import SeedStack, check_stackable, seed_batch
from rkl_bench.data.dataset import SeedSampler, TensorSampler
from rkl_bench.errors import RklBenchError
from rkl_bench.training.seed_trainer import SeedTrainer
from rkl_bench.training.trainer import Trainer, read_checkpoint
from test_fast_paths import synthetic_dataset

SEEDS = [3, 0, 11]
STEPS = 7  # actor steps at 2, 4, 6 for TD3; ends on a critic-only step
TINY = {"hidden_dim": 32, "batch_size": 32, "update_path": "plain"}
HP = {
    "td3_bc": TINY,
    "td3_rkl": {**TINY, "behaviour_steps": 40, "behaviour_hidden_dim": 16, "regulariser": "squared"},
    "bc": TINY,
    # The tuning study's forms (its best settings are a column of tune_configs/table2_mixtures.yaml).
    "td3_rkl@kernel": {**TINY, "behaviour_steps": 40, "behaviour_hidden_dim": 16, "regulariser": "kernel",
                       "rkl_alpha": 0.5, "kernel_sigma": 0.4, "zeta1": 12.0, "zeta2": 1.5, "beta_normalization": "range"},
    "td3_rkl@mse": {**TINY, "behaviour_steps": 40, "behaviour_hidden_dim": 16, "regulariser": "mse", "zeta1": 10.0},
}


@pytest.fixture(scope="module")
def dataset():
    return synthetic_dataset()


def learned_tensors(learner) -> dict[str, torch.Tensor]:
    """Every parameter of every module (targets included) and every Adam moment, by name."""
    out = {}
    for name in learner.modules:
        for i, p in enumerate(learner.parameters_of(name)):
            out[f"{name}.{i}"] = p.detach().clone()
    for name, optimizer in learner.optimizers.items():
        for i, p in enumerate(optimizer.param_groups[0]["params"]):
            state = optimizer.state[p]
            if not state:  # before the first update
                continue
            out[f"{name}.exp_avg.{i}"] = state["exp_avg"].clone()
            out[f"{name}.exp_avg_sq.{i}"] = state["exp_avg_sq"].clone()
            out[f"{name}.step.{i}"] = torch.as_tensor(float(state["step"]))
    return out


def alone(algo, dataset, seed, steps):
    """Seed ``seed`` trained by itself on the plain path: its tensors and each update's metrics."""
    mean, std = dataset.state_stats()
    learner = make_learner(algo.split("@")[0], dataset, HP[algo], seed, state_mean=mean, state_std=std)
    sampler = TensorSampler(dataset, HP[algo]["batch_size"], seed, mean, std)
    metrics = [learner.update(sampler.sample()) for _ in range(steps)]
    return learned_tensors(learner), metrics


@pytest.mark.parametrize("algo", ["td3_bc", "td3_rkl", "bc", "td3_rkl@kernel", "td3_rkl@mse"])
def test_each_seed_of_a_stack_equals_the_seed_trained_alone(dataset, algo):
    mean, std = dataset.state_stats()
    learners = make_learners(algo.split("@")[0], dataset, HP[algo], SEEDS, state_mean=mean, state_std=std)
    before = [learned_tensors(learner) for learner in learners]
    stack = SeedStack(learners, compile=False)
    sampler = SeedSampler(dataset, HP[algo]["batch_size"], SEEDS, mean, std)
    metrics = [stack.update(sampler.sample()) for _ in range(STEPS)]
    stack.sync()

    for k, seed in enumerate(SEEDS):
        expected, expected_metrics = alone(algo, dataset, seed, STEPS)
        got = learned_tensors(learners[k])
        assert got.keys() == expected.keys()
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-5, msg=f"seed {seed}: {name}")
        for step, (mine, theirs) in enumerate(zip((m[k] for m in metrics), expected_metrics)):
            assert mine.keys() == theirs.keys(), step
            for key in theirs:
                assert mine[key] == pytest.approx(theirs[key], rel=1e-4, abs=1e-5), (seed, step, key)
        # The updates moved the weights (the comparison is not of two untouched initialisations).
        moved = max(float((got[n] - before[k][n]).abs().max()) for n in got if ".exp_avg" not in n and ".step" not in n)
        assert moved > 1e-4
    first_layer = [learned_tensors(learner)["actor.0"] for learner in learners]
    assert not torch.equal(first_layer[0], first_layer[1]), "two seeds of the stack trained the same weights"


def test_seed_sampler_draws_each_seeds_own_batches(dataset):
    mean, std = dataset.state_stats()
    stacked = SeedSampler(dataset, 16, SEEDS, mean, std)
    alone_samplers = [TensorSampler(dataset, 16, seed, mean, std) for seed in SEEDS]
    for _ in range(3):
        batch = stacked.sample()
        assert batch.observations.shape == (len(SEEDS), 16, dataset.obs_dim)
        assert batch.indices.shape == (len(SEEDS), 16)
        for k, sampler in enumerate(alone_samplers):
            mine, theirs = seed_batch(batch, k), sampler.sample()
            for field in ("observations", "actions", "rewards", "next_observations", "not_dones", "indices"):
                assert torch.equal(getattr(mine, field), getattr(theirs, field)), (k, field)
    assert all(s.table is stacked.table for s in stacked.samplers), "each seed must share the one table"


def test_a_seeds_checkpoint_from_a_stack_resumes_as_an_ordinary_run(dataset, tmp_path):
    algo, hp = "td3_rkl", HP["td3_rkl"]
    trainer = SeedTrainer(algo, dataset, hp, SEEDS, compile=False)
    trainer.train_steps(3)
    for k in range(len(SEEDS)):
        trainer.save(k, tmp_path / f"seed{k}.pt", {"note": k})
    trainer.train_steps(4)
    stacked = [learned_tensors(trainer.learner(k)) for k in range(len(SEEDS))]

    # Seed 1 on its own, from the stack's checkpoint: an ordinary Trainer.
    checkpoint = read_checkpoint(tmp_path / "seed1.pt")
    assert checkpoint["seed"] == SEEDS[1] and checkpoint["step"] == 3 and checkpoint["extra"] == {"note": 1}
    single = Trainer(algo, dataset, hp, SEEDS[1], checkpoint=checkpoint)
    single.train_steps(4)
    got = learned_tensors(single.learner)
    for name in got:
        torch.testing.assert_close(got[name], stacked[1][name], rtol=1e-4, atol=1e-5, msg=name)

    # The whole stack from its seeds' checkpoints: bit-exact continuation.
    resumed = SeedTrainer(algo, dataset, hp, SEEDS, compile=False,
                          checkpoints=[read_checkpoint(tmp_path / f"seed{k}.pt") for k in range(len(SEEDS))])
    assert resumed.step == 3
    resumed.train_steps(4)
    for k in range(len(SEEDS)):
        again = learned_tensors(resumed.learner(k))
        assert all(torch.equal(again[name], stacked[k][name]) for name in again), k


def test_a_stack_checkpoint_holds_one_seed_only(dataset, tmp_path):
    """A seed's tensors are slices of stacked ones: saved, each must be its own, not the stack's storage."""
    trainer = SeedTrainer("td3_bc", dataset, HP["td3_bc"], SEEDS, compile=False)
    trainer.train_steps(2)
    trainer.save(0, tmp_path / "seed0.pt")
    state = torch.load(tmp_path / "seed0.pt", weights_only=True)
    weight = state["learner"]["actor"]["net.0.weight"]
    assert weight.untyped_storage().nbytes() == weight.nbytes


def test_seeds_must_resume_from_one_step(dataset, tmp_path):
    trainer = SeedTrainer("bc", dataset, HP["bc"], SEEDS[:2], compile=False)
    trainer.save(0, tmp_path / "a.pt")
    trainer.train_steps(1)
    trainer.save(1, tmp_path / "b.pt")
    with pytest.raises(RklBenchError, match="resume from different steps"):
        SeedTrainer("bc", dataset, HP["bc"], SEEDS[:2], compile=False,
                    checkpoints=[read_checkpoint(tmp_path / "a.pt"), read_checkpoint(tmp_path / "b.pt")])


def test_learners_a_stack_cannot_train_are_refused(dataset):
    check_stackable("brac", 1)  # one seed per process: any learner
    with pytest.raises(RklBenchError, match="not available for brac: vectorised seeds train bc, td3_bc, td3_rkl"):
        check_stackable("brac", 4)
    with pytest.raises(RklBenchError, match="not available for cdc"):
        SeedTrainer("cdc", dataset, {"hidden_dim": 16}, [0, 1], compile=False)


@pytest.mark.slow
def test_compiled_stack_equals_the_uncompiled_one(dataset):
    """``torch.compile`` of the vmapped step (a compile of 30-90 s on this machine)."""
    mean, std = dataset.state_stats()
    results = []
    for compile in (False, True):
        learners = make_learners("td3_bc", dataset, HP["td3_bc"], SEEDS, state_mean=mean, state_std=std)
        stack = SeedStack(learners, compile=compile)
        sampler = SeedSampler(dataset, 32, SEEDS, mean, std)
        for _ in range(STEPS):
            stack.update(sampler.sample())
        assert not stack.fell_back
        stack.sync()
        results.append([learned_tensors(learner) for learner in learners])
    for eager, compiled in zip(*results):
        for name in eager:
            torch.testing.assert_close(compiled[name], eager[name], rtol=1e-4, atol=1e-5, msg=name)
