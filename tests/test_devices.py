"""Devices (rkl_bench/algos/devices.py and the training loop): what this CPU-only machine can check.

* ``--device`` names: cpu works as before, a device this process cannot use
  (CUDA here: torch is a CPU build) is one ``error:`` line naming it, exit 2,
  and nothing written;
* checkpoints are device-independent: a checkpoint whose tensors were saved
  from a GPU (faked: torch's location tag of every storage set to
  ``cuda:0``) loads on the CPU and training goes on; random streams saved
  by a CUDA generator (another algorithm, a 16-byte state) are reseeded from
  their step with one warning, deterministically;
* evaluation gets CPU weights (a GPU trainer's policy is a CPU copy; on the
  CPU it is the learner's own ``act``).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch

from rkl_bench.algos.devices import cpu_copy, resolve_device, to_cpu
from rkl_bench.cli import main
from rkl_bench.errors import RklBenchError
from rkl_bench.safe_load import load_torch_bytes
from rkl_bench.training.trainer import Trainer, read_checkpoint
from test_fast_paths import synthetic_dataset
from test_train import write_dataset

TINY = {"hidden_dim": 16, "batch_size": 16, "update_path": "plain"}
RKL = {**TINY, "behaviour_steps": 20, "behaviour_hidden_dim": 16, "behaviour_batch_size": 32}
CUDA_STATE_BYTES = 16
"""What a CUDA (Philox) generator's ``get_state()`` holds: seed and offset, 8 bytes each."""


@pytest.fixture(scope="module")
def dataset():
    return synthetic_dataset(n=200)


def test_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" cpu ") == torch.device("cpu")
    with pytest.raises(RklBenchError, match="device 'gpu' is not one of cpu, cuda, cuda:N"):
        resolve_device("gpu")
    with pytest.raises(RklBenchError, match="device 'cuda:x' is not one of"):
        resolve_device("cuda:x")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal of a device this machine lacks")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_unavailable_cuda_is_refused_naming_it(name):
    with pytest.raises(RklBenchError, match=f"device '{name}' is not available"):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal of a device this machine lacks")
def test_train_on_a_missing_gpu_is_one_error_line_and_writes_nothing(tmp_path, capsys):
    data = write_dataset(tmp_path / "points.hdf5", 4, 2)
    out = tmp_path / "run"
    code = main(["train", "--algo", "bc", "--dataset", data, "--steps", "10", "--eval-every", "5", "--no-eval",
                 "--out", str(out), "--device", "cuda", "--set", "hidden_dim=16"])
    assert code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: device 'cuda' is not available"), err
    assert not out.exists()


def test_train_on_cpu_records_the_device(tmp_path, capsys):
    import json

    data = write_dataset(tmp_path / "points.hdf5", 4, 2)
    out = tmp_path / "run"
    assert main(["train", "--algo", "bc", "--dataset", data, "--steps", "4", "--eval-every", "2", "--no-eval",
                 "--out", str(out), "--device", "cpu", "--set", "hidden_dim=16"]) == 0
    assert json.loads((out / "run.json").read_text())["device"] == "cpu"


def as_if_saved_on_gpu(obj) -> bytes:
    """``torch.save(obj)`` with every storage tagged ``cuda:0``: what a checkpoint written on a GPU holds."""
    buffer = io.BytesIO()
    real = torch.serialization.location_tag
    try:
        torch.serialization.location_tag = lambda storage: "cuda:0"
        torch.save(obj, buffer)
    finally:
        torch.serialization.location_tag = real
    return buffer.getvalue()


def fake_cuda_streams(checkpoint: dict, names: list[str]) -> dict:
    """The checkpoint with the named learner streams and the sampler's as a CUDA generator saves them."""
    state = dict(checkpoint)
    learner = dict(state["learner"])
    for name in names:
        learner[name] = torch.arange(CUDA_STATE_BYTES, dtype=torch.uint8)
    state["learner"] = learner
    state["sampler"] = {"generator": torch.arange(CUDA_STATE_BYTES, dtype=torch.uint8)}
    return state


@pytest.mark.skipif(torch.cuda.is_available(), reason="the fake needs a machine where cuda tensors cannot load")
def test_a_checkpoint_trained_on_a_gpu_loads_and_trains_on_the_cpu(dataset, tmp_path):
    trainer = Trainer("td3_rkl", dataset, RKL, seed=2)
    trainer.train_steps(3)
    trainer.save(tmp_path / "cpu.pt")
    original = read_checkpoint(tmp_path / "cpu.pt")
    payload = as_if_saved_on_gpu(fake_cuda_streams(original, ["noise_generator", "negatives_generator"]))
    with pytest.raises(Exception, match="(?i)cuda"):  # the fake is real: torch alone cannot load it here
        torch.load(io.BytesIO(payload), weights_only=True)
    (tmp_path / "gpu.pt").write_bytes(payload)

    runs = []
    for _ in range(2):
        checkpoint = read_checkpoint(tmp_path / "gpu.pt")
        assert checkpoint["learner"]["actor"]["net.0.weight"].device.type == "cpu"
        with pytest.warns(RuntimeWarning, match="noise_generator, negatives_generator.*another device type"):
            resumed = Trainer("td3_rkl", dataset, RKL, seed=2, checkpoint=checkpoint)
        assert resumed.step == 3
        torch.testing.assert_close(resumed.learner.actor.net[0].weight, trainer.learner.actor.net[0].weight,
                                   rtol=0, atol=0)
        resumed.train_steps(3)
        runs.append(resumed.learner.state_dict())
    # Reseeded from (seed, stream, step): the same continuation every time, on weights that moved on.
    for key in ("actor", "critic"):
        for name, tensor in runs[0][key].items():
            assert torch.equal(tensor, runs[1][key][name]), (key, name)
    assert not torch.equal(runs[0]["actor"]["net.0.weight"], original["learner"]["actor"]["net.0.weight"])


def test_generator_states_of_the_same_device_still_resume_exactly(dataset, tmp_path):
    """The reseeding is only for another device's state: a CPU checkpoint resumes bit-exactly, no warning."""
    straight = Trainer("td3_bc", dataset, TINY, seed=1)
    straight.train_steps(5)
    first = Trainer("td3_bc", dataset, TINY, seed=1)
    first.train_steps(2)
    first.save(tmp_path / "c.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resumed = Trainer("td3_bc", dataset, TINY, seed=1, checkpoint=read_checkpoint(tmp_path / "c.pt"))
    resumed.train_steps(3)
    for name, tensor in straight.learner.state_dict()["actor"].items():
        assert torch.equal(tensor, resumed.learner.state_dict()["actor"][name])


def test_checkpoint_loader_maps_gpu_tensors_to_the_cpu():
    payload = as_if_saved_on_gpu({"w": torch.ones(3)})
    loaded = load_torch_bytes(payload, "gpu.pt", "fix")
    assert loaded["w"].device.type == "cpu" and torch.equal(loaded["w"], torch.ones(3))


def test_to_cpu_makes_compact_copies_of_views_only():
    stacked = torch.arange(12.0).reshape(3, 4)
    own = torch.ones(2)
    out = to_cpu({"view": stacked[1], "own": own, "nested": [stacked[2], (own, 5)], "text": "x"})
    assert out["own"] is own and out["nested"][1][0] is own and out["nested"][1][1] == 5 and out["text"] == "x"
    for view, copy in ((stacked[1], out["view"]), (stacked[2], out["nested"][0])):
        assert torch.equal(view, copy) and copy.untyped_storage().nbytes() == copy.nbytes


def test_evaluation_gets_cpu_weights(dataset):
    trainer = Trainer("bc", dataset, TINY, seed=0)
    assert trainer.policy() == trainer.learner.act  # on the CPU: the learner's own act
    actor = cpu_copy(trainer.learner.actor)
    assert actor is not trainer.learner.actor and not any(p.requires_grad for p in actor.parameters())
    obs = np.zeros((3, dataset.obs_dim), np.float32)
    np.testing.assert_array_equal(trainer.learner.act(obs), actor(torch.as_tensor(obs)).detach().numpy())


def test_compile_mode_is_an_execution_option():
    from rkl_bench.algos import make_config
    from rkl_bench.algos.base import EXECUTION_KEYS

    assert make_config("td3_bc", {"compile_mode": "reduce-overhead"}).compile_mode == "reduce-overhead"
    assert make_config("td3_bc", {}).compile_mode == "default"
    with pytest.raises(RklBenchError, match="'compile_mode' must be one of default, reduce-overhead; got 'fast'"):
        make_config("td3_bc", {"compile_mode": "fast"})
    assert "compile_mode" in EXECUTION_KEYS  # a checkpoint resumes under the other mode


@pytest.mark.slow
def test_reduce_overhead_on_the_cpu_trains_as_the_plain_path(dataset):
    """``compile_mode: reduce-overhead`` compiles with CUDA graphs on (nothing to graph on a CPU) and
    static inputs; its numbers are the plain path's within float rounding (one compile, ~1 min)."""
    from rkl_bench.algos import make_learner
    from rkl_bench.data.dataset import TensorSampler

    mean, std = dataset.state_stats()
    results = []
    for hp in ({"update_path": "plain"}, {"update_path": "fast", "fast_after": 0, "compile_mode": "reduce-overhead"}):
        learner = make_learner("td3_bc", dataset, {**TINY, **hp}, seed=4, state_mean=mean, state_std=std)
        sampler = TensorSampler(dataset, TINY["batch_size"], 4, mean, std)
        for _ in range(4):
            learner.update(sampler.sample())
        if hp["update_path"] == "fast":
            assert learner._fast is not None and learner._fast.compiled.calls > 0, "the compiled step fell back"
        results.append(learner.state_dict())
    for key in ("actor", "critic", "actor_target", "critic_target"):
        for name, tensor in results[0][key].items():
            torch.testing.assert_close(results[1][key][name], tensor, rtol=1e-4, atol=1e-5, msg=f"{key}.{name}")
