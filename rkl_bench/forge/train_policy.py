"""Train (or resume) the SAC behaviour policy of one forge env.

This is the longest job of the project (hours per env on 2 cores), so it is
built to be stopped at any moment and continued:

* Every ``checkpoint_every`` env steps the full state is written atomically to
  ``<work_dir>/checkpoint/``: the agent (networks, optimisers, RNG), the replay
  buffer, the numpy RNG of the random warm-up actions, the counters, and the
  MuJoCo integration state of the env mid-episode (``mj_getState``), so a
  resumed run continues bit-exactly where it stopped.
* ``<work_dir>/eval_log.jsonl`` logs deterministic evaluation returns;
  ``<work_dir>/snapshots/actor_<step>.pt`` keeps actor weights along the way
  (the medium-replay ladder is rolled out from them).
* Running the same command again resumes; raising ``--steps`` extends a
  finished run.
* A run can also start from a shipped agent state without a replay buffer
  (a new machine continuing the committed milestone): it then refills the
  buffer with ``start_steps`` of the current policy's own actions before
  updating again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mujoco
import numpy as np
import torch
from tqdm import tqdm

from rkl_bench.data.gym_make import make_env
from rkl_bench.errors import RklBenchError
from rkl_bench.forge.policies import POLICY_ROOT
from rkl_bench.forge.replay import ReplayBuffer
from rkl_bench.forge.sac import SACAgent, SACConfig
from rkl_bench.safe_load import load_torch_file, numpy_array_globals

FORGE_ENVS = {"halfcheetah": "HalfCheetah-v5", "hopper": "Hopper-v5", "walker2d": "Walker2d-v5"}
_STATE_SPEC = mujoco.mjtState.mjSTATE_INTEGRATION


@dataclass(frozen=True)
class SACTrainConfig:
    """Budget and schedule of one behaviour-policy training run."""

    total_steps: int = 1_000_000
    start_steps: int = 10_000
    """Uniform-random env steps before the first update (SAC paper: 10k)."""
    eval_every: int = 10_000
    eval_episodes: int = 10
    checkpoint_every: int = 10_000
    snapshot_every: int = 10_000
    max_episode_steps: int = 1000
    threads: int = 1
    sac: SACConfig = field(default_factory=SACConfig)


def forge_env_id(env: str) -> str:
    """The gymnasium id of a forge env family, with a clear error for unknown names."""
    try:
        return FORGE_ENVS[env]
    except KeyError:
        raise RklBenchError(
            f"unknown forge env {env!r}; choose one of: {', '.join(FORGE_ENVS)}"
        ) from None


def default_work_dir(env: str) -> Path:
    root = os.environ.get("RKL_BENCH_SAC_DIR", str(Path.home() / ".cache" / "rkl_bench" / "sac"))
    return Path(root) / env


def training_episode_seed(seed: int, episode: int) -> int:
    """Reset seed of training episode ``episode``: fixed up front, never timing-dependent."""
    return seed * 1_000_003 + episode


def evaluation_seed(seed: int, episode: int) -> int:
    return 2**31 - 1 - (seed * 1_000_003 + episode)


class SACRun:
    """The state of one SAC training run: env, agent, buffer and counters."""

    def __init__(self, env: str, seed: int, config: SACTrainConfig, work_dir: Path, fast: bool) -> None:
        self.env_name = env
        self.env_id = forge_env_id(env)
        self.seed = seed
        self.config = config
        self.work_dir = work_dir
        torch.set_num_threads(config.threads)
        self.env = make_env(self.env_id).unwrapped
        self.eval_env = make_env(self.env_id).unwrapped
        obs_dim = self.env.observation_space.shape[0]
        act_dim = self.env.action_space.shape[0]
        self.agent = SACAgent(obs_dim, act_dim, config.sac, seed=seed, fast=fast)
        self.buffer = ReplayBuffer(obs_dim, act_dim, capacity=config.total_steps)
        self.rng = np.random.default_rng(seed)
        self.steps = 0
        self.episode = 0
        self.episode_return = 0.0
        self.episode_length = 0
        self.warmup_until = config.start_steps
        self.obs, _ = self.env.reset(seed=training_episode_seed(seed, 0))
        self.recent_returns: list[float] = []
        self.last_metrics: dict[str, float] = {}

    # ------------------------------------------------------------ one step
    def step(self) -> None:
        if self.steps < self.warmup_until and self.agent.updates == 0:
            action = self.rng.uniform(-1.0, 1.0, size=self.env.action_space.shape).astype(np.float32)
        else:
            action = self.agent.act(self.obs)
        next_obs, reward, terminated, _, _ = self.env.step(action)
        self.episode_length += 1
        self.episode_return += float(reward)
        self.buffer.add(self.obs, action, reward, next_obs, terminated)
        self.obs = next_obs
        self.steps += 1
        if terminated or self.episode_length >= self.config.max_episode_steps:
            self.recent_returns = (self.recent_returns + [self.episode_return])[-10:]
            self.episode += 1
            self.episode_return, self.episode_length = 0.0, 0
            self.obs, _ = self.env.reset(seed=training_episode_seed(self.seed, self.episode))
        if self.steps >= self.warmup_until:
            batch = self.buffer.sample(self.config.sac.batch_size, self.agent.generator)
            self.last_metrics = self.agent.update(batch)

    # ------------------------------------------------------------ evaluation
    def evaluate(self) -> dict[str, Any]:
        returns = []
        for k in range(self.config.eval_episodes):
            obs, _ = self.eval_env.reset(seed=evaluation_seed(self.seed, k))
            total = 0.0
            for _ in range(self.config.max_episode_steps):
                obs, reward, terminated, _, _ = self.eval_env.step(self.agent.act(obs, deterministic=True))
                total += float(reward)
                if terminated:
                    break
            returns.append(total)
        return {
            "step": self.steps,
            "return_mean": float(np.mean(returns)),
            "return_std": float(np.std(returns)),
            "returns": returns,
            **{k: float(v) for k, v in self.last_metrics.items()},
        }

    # ------------------------------------------------------------ checkpoints
    def save(self) -> None:
        """Write the checkpoint atomically: a crash mid-save keeps the previous one."""
        final = self.work_dir / "checkpoint"
        tmp = self.work_dir / "checkpoint.tmp"
        old = self.work_dir / "checkpoint.old"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        mj_state = np.empty(mujoco.mj_stateSize(self.env.model, _STATE_SPEC))
        mujoco.mj_getState(self.env.model, self.env.data, mj_state, _STATE_SPEC)
        torch.save(
            {
                "agent": self.agent.state_dict(),
                "rng": self.rng.bit_generator.state,
                "steps": self.steps,
                "episode": self.episode,
                "episode_return": self.episode_return,
                "episode_length": self.episode_length,
                "warmup_until": self.warmup_until,
                # Tensors, not numpy arrays: the file then loads with
                # weights_only=True and nothing else (rkl_bench.safe_load).
                "obs": torch.from_numpy(np.array(self.obs, dtype=np.float64)),
                "mj_state": torch.from_numpy(mj_state),
                "recent_returns": self.recent_returns,
                "env": self.env_name,
                "seed": self.seed,
            },
            tmp / "state.pt",
        )
        self.buffer.save(tmp / "replay")
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)

    def restore(self, directory: Path) -> None:
        state = read_state_file(directory / "state.pt", "delete the checkpoint directory or use another --work-dir")
        if state["env"] != self.env_name or state["seed"] != self.seed:
            raise RklBenchError(
                f"checkpoint in {directory} is for env={state['env']} seed={state['seed']}, "
                f"not env={self.env_name} seed={self.seed}; use another --work-dir"
            )
        self.agent.load_state_dict(state["agent"])
        self.rng.bit_generator.state = state["rng"]
        self.steps = state["steps"]
        self.episode = state["episode"]
        self.episode_return = state["episode_return"]
        self.episode_length = state["episode_length"]
        self.warmup_until = state["warmup_until"]
        self.recent_returns = list(state["recent_returns"])
        self.env.reset(seed=training_episode_seed(self.seed, self.episode))
        mujoco.mj_setState(self.env.model, self.env.data, _float64(state["mj_state"]), _STATE_SPEC)
        self.obs = _float64(state["obs"])
        try:
            self.buffer.load(directory / "replay")
        except (OSError, ValueError) as exc:
            raise RklBenchError(
                f"cannot read the replay buffer in {directory / 'replay'} ({exc}); "
                "delete the checkpoint directory or use another --work-dir"
            ) from None

    def start_from_agent(self, agent_state: dict[str, Any], steps: int) -> None:
        """Continue a shipped agent without its replay buffer: refill it first."""
        self.agent.load_state_dict(agent_state)
        self.steps = steps
        self.warmup_until = steps + self.config.start_steps

    def save_snapshot(self) -> None:
        directory = self.work_dir / "snapshots"
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".actor_{self.steps:07d}.tmp"
        torch.save(self.agent.actor.state_dict(), tmp)
        tmp.replace(directory / f"actor_{self.steps:07d}.pt")


STATE_KEYS = ("agent", "rng", "steps", "episode", "episode_return", "episode_length", "warmup_until",
              "obs", "mj_state", "recent_returns", "env", "seed")


def read_state_file(path: Path, fix: str) -> dict[str, Any]:
    """A SAC ``state.pt`` loaded with ``weights_only=True`` (never runs code from the file).

    Files written before the state held tensors only keep ``obs`` and
    ``mj_state`` as float64 numpy arrays; those globals are allowed too.
    """
    state = load_torch_file(path, fix, allow=numpy_array_globals())
    missing = [key for key in STATE_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise RklBenchError(f"{path} is not a SAC checkpoint state (missing {', '.join(missing[:4])}); {fix}")
    return state


def _float64(value: Any) -> np.ndarray:
    """A saved array (a tensor, or a numpy array in older files) as float64 numpy."""
    if isinstance(value, torch.Tensor):
        value = value.numpy()
    return np.asarray(value, dtype=np.float64)


def _truncate_log(path: Path, max_step: int) -> None:
    """Drop log rows written after the checkpoint being resumed (they will be redone)."""
    if not path.exists():
        return
    rows = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [r for r in rows if json.loads(r)["step"] <= max_step]
    path.write_text("".join(r + "\n" for r in kept))


def _check_run_file(path: Path, record: dict[str, Any]) -> None:
    if path.exists():
        previous = json.loads(path.read_text())
        fixed = {k: v for k, v in record.items() if k != "total_steps"}
        old_fixed = {k: v for k, v in previous.items() if k != "total_steps"}
        if fixed != old_fixed:
            diff = sorted(k for k in set(fixed) | set(old_fixed) if fixed.get(k) != old_fixed.get(k))
            raise RklBenchError(
                f"{path.parent} holds a SAC run with different settings ({', '.join(diff)}); "
                "use another --work-dir"
            )
    path.write_text(json.dumps(record, indent=2, sort_keys=True))


def _shipped_agent(env: str, seed: int, init_agent: str | Path | None) -> Path | None:
    if init_agent is None:
        return None
    if init_agent != "auto":
        return Path(init_agent)
    path = POLICY_ROOT / env / "agent_latest.pt"
    if path.is_file() and _read_agent_file(path).get("seed") == seed:
        return path
    return None


def _read_agent_file(path: Path) -> dict[str, Any]:
    """A shipped ``agent_latest.pt`` (agent state, steps, env, seed), loaded with ``weights_only=True``."""
    fix = "pass another agent file, or init_agent=None to start from scratch"
    agent = load_torch_file(path, fix)
    if not isinstance(agent, dict) or not {"agent", "steps", "seed"} <= set(agent):
        raise RklBenchError(f"{path} is not a shipped SAC agent (needs agent, steps, seed); {fix}")
    return agent


def train_behaviour_policy(
    env: str,
    total_steps: int = 1_000_000,
    seed: int = 0,
    work_dir: str | Path | None = None,
    fast: bool = True,
    config: SACTrainConfig | None = None,
    init_agent: str | Path | None = "auto",
    progress: bool = True,
    stop_after: int | None = None,
) -> Path:
    """Train SAC on ``env`` up to ``total_steps`` env steps; returns the work dir.

    ``stop_after`` stops (after checkpointing) once that many steps are done, as
    an interruption would; tests use it to check resume equality.

    Without a checkpoint in the work dir, ``init_agent="auto"`` continues from
    the shipped ``policies/<env>/agent_latest.pt`` when one exists for this
    seed (a new machine picking up the committed milestone); ``None`` starts
    from scratch; a path names the agent file to continue from.
    """
    forge_env_id(env)
    config = dataclasses.replace(config or SACTrainConfig(), total_steps=total_steps)
    work = Path(work_dir) if work_dir else default_work_dir(env)
    work.mkdir(parents=True, exist_ok=True)
    record = {"env": env, "seed": seed, **{k: v for k, v in asdict(config).items()}}
    record["sac"] = asdict(config.sac)
    _check_run_file(work / "run.json", json.loads(json.dumps(record)))

    run = SACRun(env, seed, config, work, fast)
    log_path = work / "eval_log.jsonl"
    if (work / "checkpoint" / "state.pt").exists():
        run.restore(work / "checkpoint")
        _truncate_log(log_path, run.steps)
    elif (shipped_path := _shipped_agent(env, seed, init_agent)) is not None:
        shipped = _read_agent_file(shipped_path)
        run.start_from_agent(shipped["agent"], shipped["steps"])
        _truncate_log(log_path, run.steps)
        if progress:
            print(f"continuing the shipped agent {shipped_path} at step {run.steps} (replay buffer refilled first)")
    else:
        _truncate_log(log_path, 0)

    bar = tqdm(
        total=total_steps, initial=run.steps, desc=f"SAC {env}", unit="step",
        disable=not progress, dynamic_ncols=True, mininterval=5.0,
    )
    started, started_steps = time.time(), run.steps
    try:
        while run.steps < total_steps:
            run.step()
            bar.update(1)
            if run.steps % config.snapshot_every == 0:
                run.save_snapshot()
            if run.steps % config.eval_every == 0:
                row = run.evaluate()
                row["wall_seconds"] = time.time() - started
                row["steps_per_second"] = (run.steps - started_steps) / max(row["wall_seconds"], 1e-9)
                with log_path.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                bar.set_postfix(eval_return=f"{row['return_mean']:.0f}", alpha=f"{row.get('alpha', 0):.3f}")
                if not run.agent.parameters_finite():
                    raise RklBenchError(f"SAC parameters became non-finite at step {run.steps} on {env}")
            if run.steps % config.checkpoint_every == 0 or run.steps == total_steps:
                run.save()
            if stop_after is not None and run.steps >= stop_after:
                run.save()
                break
    finally:
        bar.close()
    return work
