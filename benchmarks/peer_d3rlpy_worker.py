"""d3rlpy's TD3PlusBC on given transitions: the d3rlpy side of ``benchmarks/peer_agreement.py``.

Runs in ``benchmarks/.venv-d3rlpy`` (made by ``benchmarks/make_peer_venv.sh``;
d3rlpy 2.8 pins gymnasium 1.0). It imports only numpy, torch and d3rlpy
(which brings gymnasium 1.0), never ``rkl_bench``, whose pins conflict; the
driver talks to it through files::

    python peer_d3rlpy_worker.py --check
        prints {"d3rlpy": ..., "torch": ..., "gymnasium": ..., "numpy": ...} as JSON
    python peer_d3rlpy_worker.py --data DATA.npz --out DIR --steps N --eval-every K --seed S
        DATA.npz  observations, actions, rewards, next_observations, terminals (float32,
                  one row per transition: D4RL ``qlearning_dataset`` rows, written by the driver)
        DIR/actor_<step>.npz   the policy after ``step`` gradient steps, in the neutral format
        DIR/result.json        timings per evaluation interval, versions, checks

The neutral actor format (``FORMAT``, an ``.npz`` without pickles): ``w0, b0,
w1, b1, ...`` in ``torch.nn.Linear`` layout (weight ``(out, in)``), ReLU
between layers, ``max_action * tanh`` after the last; ``obs_mean`` and
``obs_divisor`` (the policy sees ``(obs - obs_mean) / obs_divisor``);
``max_action``; ``format``. The driver loads it into rkl_bench's own actor and
evaluates it with rkl_bench's Evaluator, exactly as it evaluates its own runs.

Training is ``TD3PlusBC.fitter`` (d3rlpy's own loop: its replay buffer's
uniform transition sampling, its update), one evaluation interval per epoch,
with TD3+BC's paper settings, which are d3rlpy's defaults (checked and
written out here so a change of default cannot slip in), and
``StandardObservationScaler`` fitted by d3rlpy on the data (TD3+BC's state
normalisation: mean and population std over the transitions' states, plus
1e-3).

The transitions are handed to d3rlpy as episodes built so that its
``BasicTransitionPicker`` yields exactly row ``i`` of the data as transition
``i`` (checked for every row before training): consecutive rows whose next
state is the following row's state form one episode; a run that ends in a
non-terminal row gets its next state appended as a final observation (d3rlpy
counts ``size - 1`` transitions in an unterminated episode), a terminal row
ends a terminated episode (d3rlpy then feeds a zero next state, which the
``1 - terminal`` factor removes from the target).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

FORMAT = "rkl-peer-actor-v1"
FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals")
TD3_BC_PAPER = {
    "actor_learning_rate": 3e-4,
    "critic_learning_rate": 3e-4,
    "batch_size": 256,
    "gamma": 0.99,
    "tau": 0.005,
    "n_critics": 2,
    "target_smoothing_sigma": 0.2,
    "target_smoothing_clip": 0.5,
    "alpha": 2.5,
    "update_actor_interval": 2,
}
"""TD3+BC's settings (Fujimoto & Gu 2021, Appendix), in d3rlpy's TD3PlusBCConfig names."""
HIDDEN = [256, 256]


# ------------------------------------------------------------ neutral format
def policy_layers(policy: nn.Module) -> list[nn.Linear]:
    """The linear layers of a d3rlpy ``DeterministicPolicy``, input to output.

    d3rlpy 2.8 (``models/torch/policies.py``): ``forward`` is
    ``tanh(_fc(_encoder(x)))`` and the default vector encoder is
    ``_layers = Sequential(Linear, ReLU, Linear, ReLU)``; anything else
    (batch norm, dropout, other activations) is refused rather than exported wrong.
    """
    encoder_layers = getattr(getattr(policy, "_encoder", None), "_layers", None)
    fc = getattr(policy, "_fc", None)
    if not isinstance(encoder_layers, nn.Sequential) or not isinstance(fc, nn.Linear):
        raise ValueError(f"not a d3rlpy DeterministicPolicy with a vector encoder: {type(policy).__name__}")
    modules = list(encoder_layers)
    if len(modules) % 2 or not all(
        isinstance(m, nn.Linear) if i % 2 == 0 else type(m) is nn.ReLU for i, m in enumerate(modules)
    ):
        raise ValueError(f"encoder is not Linear/ReLU pairs: {[type(m).__name__ for m in modules]}")
    return [m for m in modules if isinstance(m, nn.Linear)] + [fc]


def export_actor(
    policy: nn.Module, obs_mean: np.ndarray, obs_divisor: np.ndarray, path: Path, max_action: float = 1.0
) -> Path:
    """Write ``policy`` (see :func:`policy_layers`) and its state normalisation in the neutral format."""
    arrays: dict[str, np.ndarray] = {}
    for i, layer in enumerate(policy_layers(policy)):
        arrays[f"w{i}"] = layer.weight.detach().cpu().numpy().astype(np.float32)
        arrays[f"b{i}"] = layer.bias.detach().cpu().numpy().astype(np.float32)
    arrays["obs_mean"] = np.asarray(obs_mean, np.float32)
    arrays["obs_divisor"] = np.asarray(obs_divisor, np.float32)
    arrays["max_action"] = np.asarray(max_action, np.float32)
    arrays["format"] = np.asarray(FORMAT)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path


def neutral_forward(path: Path, raw_obs: np.ndarray) -> np.ndarray:
    """Actions of a neutral-format actor on raw states, in float32 numpy (a check, not the evaluator)."""
    with np.load(path, allow_pickle=False) as f:
        x = (np.asarray(raw_obs, np.float32) - f["obs_mean"]) / f["obs_divisor"]
        layers = sum(1 for key in f.files if key.startswith("w"))
        for i in range(layers):
            x = x @ f[f"w{i}"].T + f[f"b{i}"]
            if i < layers - 1:
                x = np.maximum(x, 0.0)
        return (float(f["max_action"]) * np.tanh(x)).astype(np.float32)


# ---------------------------------------------------------------- the data
def load_transitions(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        missing = [key for key in FIELDS if key not in f.files]
        if missing:
            raise ValueError(f"{path} lacks {', '.join(missing)}")
        data = {key: np.asarray(f[key], np.float32) for key in FIELDS}
    n = len(data["observations"])
    if n == 0 or any(len(v) != n for v in data.values()):
        raise ValueError(f"{path}: arrays must be non-empty and of one length")
    return data


def episode_bounds(data: dict[str, np.ndarray]) -> list[tuple[int, int, bool]]:
    """``(start, stop, terminated)`` row ranges: maximal runs where ``next_obs[i] == obs[i+1]``, cut after terminals."""
    obs, nxt, term = data["observations"], data["next_observations"], data["terminals"] > 0.5
    joined = np.all(nxt[:-1] == obs[1:], axis=1) & ~term[:-1]
    cuts = np.flatnonzero(~joined) + 1
    starts = np.concatenate([[0], cuts])
    stops = np.concatenate([cuts, [len(obs)]])
    return [(int(a), int(b), bool(term[b - 1])) for a, b in zip(starts, stops)]


def build_buffer(data: dict[str, np.ndarray]):
    """A d3rlpy ReplayBuffer whose transition ``i`` is row ``i`` of ``data`` (module docstring)."""
    from d3rlpy.dataset import Episode, InfiniteBuffer, ReplayBuffer

    obs, act, rew, nxt = data["observations"], data["actions"], data["rewards"], data["next_observations"]
    episodes = []
    for start, stop, terminated in episode_bounds(data):
        o, a, r = obs[start:stop], act[start:stop], rew[start:stop].reshape(-1, 1)
        if not terminated:  # the final next state becomes the episode's last observation
            o = np.concatenate([o, nxt[stop - 1 : stop]])
            a = np.concatenate([a, np.zeros_like(a[:1])])
            r = np.concatenate([r, np.zeros_like(r[:1])])
        episodes.append(Episode(observations=o, actions=a, rewards=r, terminated=terminated))
    return ReplayBuffer(InfiniteBuffer(), episodes=episodes)


def check_buffer(buffer, data: dict[str, np.ndarray]) -> int:
    """Every transition d3rlpy can sample equals the data row of the same index; returns the count."""
    from d3rlpy.dataset import BasicTransitionPicker

    n = len(data["observations"])
    if buffer.transition_count != n:
        raise AssertionError(f"d3rlpy buffer holds {buffer.transition_count} transitions, the data {n}")
    pick = BasicTransitionPicker()
    cols = {key: np.empty_like(data[key]) for key in FIELDS}
    for i in range(n):
        episode, index = buffer.buffer[i]
        t = pick(episode, index)
        cols["observations"][i] = t.observation
        cols["actions"][i] = t.action
        cols["rewards"][i] = t.reward[0]
        cols["next_observations"][i] = t.next_observation
        cols["terminals"][i] = t.terminal
    live = data["terminals"] < 0.5  # d3rlpy zeroes a terminal's next state; the target masks it out
    for key in FIELDS:
        ours, theirs = data[key], cols[key]
        if key == "next_observations":
            ours, theirs = ours[live], theirs[live]
        if not np.array_equal(ours, theirs):
            raise AssertionError(f"d3rlpy's transitions differ from the data in {key}")
    return n


# --------------------------------------------------------------- training
def make_algo(seed: int):
    import d3rlpy
    from d3rlpy.algos import TD3PlusBCConfig
    from d3rlpy.models.encoders import VectorEncoderFactory
    from d3rlpy.preprocessing import StandardObservationScaler

    d3rlpy.seed(seed)
    config = TD3PlusBCConfig(
        **TD3_BC_PAPER,
        actor_encoder_factory=VectorEncoderFactory(hidden_units=HIDDEN),
        critic_encoder_factory=VectorEncoderFactory(hidden_units=HIDDEN),
        observation_scaler=StandardObservationScaler(),
        compile_graph=False,
    )
    for key, value in TD3_BC_PAPER.items():
        assert getattr(config, key) == value, key
    return config.create(device="cpu:0")


def scaler_arrays(algo) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, divisor)`` as d3rlpy's scaler applies them: ``(x - mean) / (std + eps)`` in float32 torch."""
    scaler = algo.observation_scaler
    mean = torch.tensor(scaler.mean, dtype=torch.float32)
    divisor = torch.tensor(scaler.std, dtype=torch.float32) + scaler.eps
    return mean.numpy(), divisor.numpy()


def train(args: argparse.Namespace) -> dict:
    from d3rlpy.algos.utility import build_scalers_with_transition_picker
    from d3rlpy.logging import NoopAdapterFactory

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_transitions(Path(args.data))
    t0 = time.perf_counter()
    buffer = build_buffer(data)
    checked = check_buffer(buffer, data)
    algo = make_algo(args.seed)
    build_scalers_with_transition_picker(algo, buffer)  # fitter would do it first thing; done here, off the clock
    algo.create_impl((data["observations"].shape[1],), data["actions"].shape[1])
    mean, divisor = scaler_arrays(algo)
    setup_seconds = time.perf_counter() - t0

    probe = data["observations"][: min(64, len(data["observations"]))]
    segments = []
    wall, cpu = time.perf_counter(), time.thread_time()
    fitter = algo.fitter(
        buffer,
        n_steps=args.steps,
        n_steps_per_epoch=args.eval_every,
        logger_adapter=NoopAdapterFactory(),
        show_progress=False,
        save_interval=args.steps + 1,
    )
    for epoch, _metrics in fitter:
        seg_wall, seg_cpu = time.perf_counter() - wall, time.thread_time() - cpu
        step = epoch * args.eval_every
        path = export_actor(algo.impl.policy, mean, divisor, out / f"actor_{step}.npz")
        mismatch = float(np.max(np.abs(neutral_forward(path, probe) - algo.predict(probe))))
        segments.append({"step": step, "steps": args.eval_every, "wall_seconds": seg_wall,
                         "cpu_seconds": seg_cpu, "export_max_abs_diff": mismatch, "actor": path.name})
        print(f"d3rlpy seed {args.seed}: step {step}/{args.steps}, "
              f"{args.eval_every / seg_wall:.0f} steps/s", file=sys.stderr, flush=True)
        wall, cpu = time.perf_counter(), time.thread_time()
    return {
        "format": FORMAT,
        "seed": args.seed,
        "steps": args.steps,
        "eval_every": args.eval_every,
        "threads": torch.get_num_threads(),
        "transitions_checked": checked,
        "episodes": len(buffer.episodes),
        "setup_seconds": setup_seconds,
        "obs_mean": mean.tolist(),
        "obs_divisor": divisor.tolist(),
        "config": TD3_BC_PAPER | {"hidden_units": HIDDEN, "observation_scaler": "standard (eps 1e-3)"},
        "versions": versions(),
        "segments": segments,
    }


def versions() -> dict[str, str]:
    import d3rlpy
    import gymnasium

    return {"d3rlpy": d3rlpy.__version__, "torch": torch.__version__, "gymnasium": gymnasium.__version__,
            "numpy": np.__version__, "python": sys.version.split()[0]}


def quiet_d3rlpy_logs() -> None:
    """d3rlpy logs its dataset and config through structlog on stdout; keep warnings only."""
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="print the versions as JSON and exit")
    parser.add_argument("--data", help="transitions (.npz, written by peer_agreement.py)")
    parser.add_argument("--out", help="directory for actor_<step>.npz and result.json")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--eval-every", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    quiet_d3rlpy_logs()
    if args.check:
        print(json.dumps(versions()))
        return 0
    if not (args.data and args.out and args.steps and args.eval_every) or args.steps % args.eval_every:
        parser.error("--data, --out, --steps and --eval-every are needed, --steps a multiple of --eval-every")
    result = train(args)
    path = Path(args.out) / "result.json"
    path.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
