"""bf16 is used only where the hardware runs it natively; elsewhere one line says so and fp32 runs."""

import pytest

from rkl_bench.algos import precision


def test_bf16_without_native_support_runs_fp32_and_says_why(monkeypatch):
    monkeypatch.setattr(precision, "cpu_capabilities", lambda: {"cpu_name": "Some CPU", "avx2": True})
    said = []
    assert precision.effective_precision("bf16", "cpu", said.append) == "fp32"
    assert said == ["precision bf16: Some CPU has no native bf16 (AVX512-BF16 or AMX); running fp32"]
    assert precision.effective_precision("fp32", "cpu", said.append) == "fp32" and len(said) == 1


@pytest.mark.parametrize("caps, feature", [({"avx512_bf16": True}, "AVX512-BF16"), ({"amx_bf16": True}, "AMX-BF16")])
def test_bf16_with_native_support_is_kept(monkeypatch, caps, feature):
    monkeypatch.setattr(precision, "cpu_capabilities", lambda: caps)
    said = []
    assert precision.native_bf16("cpu") == feature
    assert precision.effective_precision("bf16", "cpu", said.append) == "bf16" and said == []


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, got 'fp16'"):
        precision.effective_precision("fp16")


def test_the_speed_header_names_the_cpu_and_both_gemm_rates(monkeypatch):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import gemm

    monkeypatch.setattr(gemm, "gemm_gflops", lambda n, dtype, seconds=0.3: 100.0 if "float32" in str(dtype) else 50.0)
    lines = gemm.gemm_lines((256,))
    assert lines[0].startswith("CPU: ") and "bf16 " in lines[0]
    assert lines[1] == "GEMM 256x256, one thread: fp32 100 GFLOP/s, bf16 50 GFLOP/s (bf16/fp32 0.50x)"


# ---------------------------------------------------------------- the bf16 arithmetic itself
# (``RKL_BENCH_BF16_EMULATED=1`` runs it on CPUs without bf16 units: the same rounding, slower.)
def test_bf16_linear_rounds_its_product_but_keeps_fp32_outside():
    import torch

    from rkl_bench.algos import fast

    torch.manual_seed(0)
    x = torch.randn(64, 48)
    w = torch.randn(40, 48, requires_grad=True)
    b = torch.randn(40, requires_grad=True)
    exact = fast.linear(x, w, b)
    with fast.matmul_precision("bf16"):
        low = fast.linear(x, w, b)
    assert low.dtype == torch.float32
    reference = torch.mm(x.bfloat16(), w.detach().bfloat16().t()).float() + b.detach()
    torch.testing.assert_close(low.detach(), reference, rtol=0, atol=0)  # a bf16 product, fp32 bias
    error = (low - exact).abs().max().item()
    assert 1e-3 < error < 0.1 * exact.abs().max().item()  # rounded (not fp32), yet close
    low.square().sum().backward()
    assert w.grad.dtype == torch.float32 and b.grad.dtype == torch.float32
    assert not fast._BF16  # the block ended


def test_an_unknown_matmul_precision_is_refused():
    from rkl_bench.algos import fast

    with pytest.raises(ValueError, match="precision must be fp32 or bf16, got 'fp16'"):
        with fast.matmul_precision("fp16"):
            pass


def _dataset():
    from tests.test_fast_paths import synthetic_dataset

    return synthetic_dataset()


def _learner(name: str, precision: str, dataset):
    from rkl_bench.algos import make_learner
    from tests.test_fast_paths import HP

    learner = make_learner(name, dataset, {**HP[name], "update_path": "fast", "precision": precision}, seed=1)
    learner._fast.compiled._compile = False  # the fast step's maths, uncompiled (tests/test_fast_paths.py)
    return learner


@pytest.mark.parametrize("name", ["td3_bc", "td3_rkl"])
def test_a_bf16_learner_trains_close_to_fp32_with_fp32_state(monkeypatch, name):
    import torch

    from rkl_bench.data.dataset import TensorSampler
    from tests.test_fast_paths import tensors

    monkeypatch.setenv(precision.EMULATED_ENV, "1")
    data = _dataset()
    sampler = TensorSampler(data, 32, 4, *data.state_stats())
    batches = [sampler.sample() for _ in range(8)]
    fp32, bf16 = _learner(name, "fp32", data), _learner(name, "bf16", data)
    assert (fp32.matmul_precision, bf16.matmul_precision) == ("fp32", "bf16")
    for batch in batches:
        m32, m16 = fp32.update(batch), bf16.update(batch)
        assert m16["critic_loss"] == pytest.approx(m32["critic_loss"], rel=0.05)
    state = bf16.state_dict()
    moments = [s[k] for key in state if key.endswith("optimizer") for s in state[key]["state"].values()
               for k in ("exp_avg", "exp_avg_sq")]
    assert moments and all(t.dtype == torch.float32 for t in moments)
    differences = []
    for a, b in zip(tensors(fp32), tensors(bf16)):
        assert b.dtype == torch.float32
        differences.append((a - b).abs().max().item())
        torch.testing.assert_close(b, a, rtol=0.05, atol=2e-3)
    assert max(differences) > 0, "bf16 changed nothing: its products did not run in bf16"


def test_a_bf16_learner_without_bf16_units_runs_fp32_and_says_so_once(monkeypatch, capsys):
    monkeypatch.delenv(precision.EMULATED_ENV, raising=False)
    monkeypatch.setattr(precision, "cpu_capabilities", lambda: {"cpu_name": "Old CPU"})
    monkeypatch.setattr(precision, "SAID", set())
    data = _dataset()
    learners = [_learner("td3_bc", "bf16", data) for _ in range(2)]
    assert [l.matmul_precision for l in learners] == ["fp32", "fp32"]
    assert learners[0]._fast.precision == "fp32"
    out = capsys.readouterr().out
    assert out.count("precision bf16: Old CPU has no native bf16 (AVX512-BF16 or AMX); running fp32") == 1


def test_precision_is_checked_and_a_checkpoint_resumes_only_under_its_own(monkeypatch):
    from rkl_bench.algos import make_learner
    from rkl_bench.errors import RklBenchError
    from tests.test_fast_paths import HP

    data = _dataset()
    with pytest.raises(RklBenchError, match="td3_bc hyper-parameters: 'precision' must be one of fp32, bf16; got 'fp16'"):
        make_learner("td3_bc", data, {**HP["td3_bc"], "precision": "fp16"}, seed=1)
    monkeypatch.setenv(precision.EMULATED_ENV, "1")
    state = _learner("td3_bc", "bf16", data).state_dict()
    with pytest.raises(RklBenchError, match="precision: checkpoint 'bf16' vs 'fp32'"):
        _learner("td3_bc", "fp32", data).load_state_dict(state)


def test_train_takes_precision_from_its_flag_and_refuses_a_contradiction():
    from rkl_bench.cli import _with_precision
    from rkl_bench.errors import RklBenchError

    assert _with_precision({"q_weight": 2.0}, "bf16") == {"q_weight": 2.0, "precision": "bf16"}
    assert _with_precision({"precision": "bf16"}, None) == {"precision": "bf16"}
    with pytest.raises(RklBenchError, match="--precision fp32 and --set precision=bf16 disagree"):
        _with_precision({"precision": "bf16"}, "fp32")


@pytest.mark.slow
def test_a_compiled_step_keeps_fp32_and_bf16_graphs_apart():
    """Dynamo guards on the precision flag: one function compiled under both gives both answers."""
    import torch

    from rkl_bench.algos import fast

    def f(x, w, b):
        return fast.linear(x, w, b).sum()

    x, w, b = torch.randn(64, 32), torch.randn(32, 32), torch.randn(32)
    compiled = torch.compile(f, dynamic=False, fullgraph=True)
    first = compiled(x, w, b)
    with fast.matmul_precision("bf16"):
        low, eager_low = compiled(x, w, b), f(x, w, b)
    again = compiled(x, w, b)
    torch.testing.assert_close(low, eager_low, rtol=1e-3, atol=1e-3)
    assert first.item() != low.item() and torch.equal(first, again)


def test_rows_say_bf16_only_when_the_products_ran_in_bf16(monkeypatch):
    from rkl_bench.training.result_row import precision_fields

    monkeypatch.setenv(precision.EMULATED_ENV, "1")
    data = _dataset()
    assert precision_fields(_learner("td3_bc", "bf16", data)) == {"matmul_precision": "bf16"}
    assert precision_fields(_learner("td3_bc", "fp32", data)) == {}
    monkeypatch.delenv(precision.EMULATED_ENV)
    monkeypatch.setattr(precision, "cpu_capabilities", lambda: {"cpu_name": "Old CPU"})
    assert precision_fields(_learner("td3_bc", "bf16", data)) == {}  # asked for bf16, ran fp32


def test_seeds_trained_together_multiply_in_bf16_too(monkeypatch):
    import torch

    from rkl_bench.algos import make_learners
    from rkl_bench.algos.seeds import SeedStack
    from rkl_bench.data.dataset import SeedSampler
    from rkl_bench.training.result_row import precision_fields

    monkeypatch.setenv(precision.EMULATED_ENV, "1")
    data = _dataset()
    mean, std = data.state_stats()
    hp = {"hidden_dim": 32, "batch_size": 32, "update_path": "plain"}
    stacks = {}
    for name in ("fp32", "bf16"):
        learners = make_learners("td3_bc", data, {**hp, "precision": name}, [0, 1], state_mean=mean, state_std=std)
        stack = SeedStack(learners, compile=False)
        sampler = SeedSampler(data, 32, [0, 1], mean, std)
        for _ in range(6):
            stack.update(sampler.sample())
        stack.sync()
        stacks[name] = stack
    assert stacks["bf16"].precision == "bf16" and stacks["fp32"].precision == "fp32"
    assert precision_fields(stacks["bf16"].learners[1]) == {"matmul_precision": "bf16"}
    for a, b in zip(stacks["fp32"].learners, stacks["bf16"].learners):
        pairs = list(zip(a.actor.parameters(), b.actor.parameters()))
        assert all(y.dtype == torch.float32 for _, y in pairs)
        assert max((x - y).abs().max().item() for x, y in pairs) > 0
        for x, y in pairs:
            torch.testing.assert_close(y, x, rtol=0.05, atol=2e-3)
