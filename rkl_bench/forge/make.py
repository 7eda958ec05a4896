"""Make forge datasets: D4RL-style locomotion data on gymnasium MuJoCo v5.

Kinds per env (D4RL's words, forge data):

* ``random``: uniform random actions;
* ``medium``, ``expert``: the card's medium / expert SAC snapshot, actions
  sampled from the policy;
* ``medium-replay``: the card's ladder of snapshots from the start of training
  up to medium, an equal share of rows each (D4RL instead shipped the replay
  buffer of the medium run; we keep no buffer, so we roll out the snapshots
  that buffer would have been filled by);
* ``medium-expert``: medium followed by expert, as D4RL stitches them (a
  current medium or expert file of the same profile and seed is read instead
  of rolled out again: the rows are the same);
* mixes ``random-<kind>`` are not files: the data registry concatenates the
  random file with the ``<kind>`` file when it loads them.

Sizes come from a *profile* (rows per component): ``full`` is D4RL's 1M,
``quick`` and ``tiny`` are for the README's main job and for tests, and
``rows<N>`` (``rows250k``, ``rows2m``, ``rows50000``) is any other size from
1,000 to 10,000,000 rows. The
profile is part of the dataset name's prefix (``forge-v5/`` is full and lives
in ``<forge_dir>/``; ``forge-v5-quick/`` and ``forge-v5-tiny/`` live in
``<forge_dir>/<profile>/``), so datasets of different sizes never share a file,
and it is part of the version string written into every file:
``forge-v5:<profile>:<hash>``, where the hash covers the policy weights, the
env, the sizes, the seed and the forge format.

An interrupted make goes on: each rollout keeps its finished episodes in
``<file>.partial/`` (``rollout_checkpoint``), removed once the file is written.

``jobs`` > 1 makes the files one process each, ``jobs`` at a time: the
rollouts are single-threaded (``generate``), so on 2 cores two files are
made in the wall time of one (docs/forge.md: the nine mixtures' twelve files).
Files are independent except ``medium-expert``, which reads the medium and
expert files; those are made first, with the others, and it after them.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import re
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import gymnasium
import mujoco
import numpy as np

from rkl_bench.data.d4rl import read_d4rl_arrays, read_metadata, write_d4rl_hdf5
from rkl_bench.data.gym_make import make_env
from rkl_bench.data.registry import forge_path, parse_dataset_name
from rkl_bench.errors import RklBenchError
from rkl_bench.forge.generate import RolloutArrays, rollout
from rkl_bench.forge import policies
from rkl_bench.forge.policies import load_snapshot, read_card
from rkl_bench.forge.train_policy import forge_env_id

FORMAT_VERSION = 2
"""Bump when generation changes in a way that changes the arrays (2: noise and random
actions drawn per episode up front, policy on fixed row blocks)."""

FILE_KINDS = ("random", "medium", "expert", "medium-replay", "medium-expert")

MEDIUM_REPLAY_SHARE = {"halfcheetah": 0.2, "hopper": 0.4, "walker2d": 0.3}
"""medium-replay size relative to a component, D4RL's ratios (202k, 402k, 302k of 1M)."""


@dataclass(frozen=True)
class Profile:
    name: str
    rows: int
    """Transitions per component (random, medium, expert)."""
    num_envs: int


PROFILES = {
    "full": Profile("full", 1_000_000, 16),
    "quick": Profile("quick", 20_000, 16),
    "tiny": Profile("tiny", 2_000, 4),
}


SIZED_PROFILE = re.compile(r"rows(\d+)(k|m)?")
"""``rows<N>[k|m]``: a profile of N (thousand, million) rows per component."""
SIZED_ROWS = (1_000, 10_000_000)
"""Smallest and largest sized profile: a few episodes, and ten times D4RL."""


def profile(name: str) -> Profile:
    """The named profile: ``full``, ``quick``, ``tiny`` or ``rows<N>[k|m]``."""
    if name in PROFILES:
        return PROFILES[name]
    sized = SIZED_PROFILE.fullmatch(name)
    if sized is None:
        raise RklBenchError(
            f"unknown forge profile {name!r}; choose one of: {', '.join(PROFILES)}, "
            "or rows<N> for N rows per component (rows250k, rows2m)"
        )
    rows = int(sized[1]) * {None: 1, "k": 1_000, "m": 1_000_000}[sized[2]]
    low, high = SIZED_ROWS
    if not low <= rows <= high:
        raise RklBenchError(
            f"forge profile {name!r} asks for {rows:,} rows per component; sizes run from {low:,} to {high:,}"
        )
    return Profile(name, rows, PROFILES["full"].num_envs)


def component_rows(env: str, kind: str, prof: Profile) -> int:
    if kind == "medium-replay":
        return max(1, int(round(prof.rows * MEDIUM_REPLAY_SHARE[env])))
    return prof.rows


def _version(env: str, kind: str, prof: Profile, seed: int, digests: list[str]) -> str:
    record = {
        "format": FORMAT_VERSION, "env": forge_env_id(env), "kind": kind, "rows": prof.rows,
        "seed": seed, "policies": digests, "gymnasium": gymnasium.__version__, "mujoco": mujoco.__version__,
    }
    digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]
    return f"forge-v5:{prof.name}:{digest}"


def env_dims(env: str) -> tuple[int, int]:
    """(obs_dim, act_dim) of a forge env."""
    e = make_env(forge_env_id(env)).unwrapped
    return e.observation_space.shape[0], e.action_space.shape[0]


def _concat(parts: list[RolloutArrays]) -> RolloutArrays:
    return RolloutArrays(*(np.concatenate([getattr(p, f) for p in parts]) for f in RolloutArrays.__dataclass_fields__))


def generate_kind(env: str, kind: str, prof: Profile, seed: int, policy_root: Path | None = None,
                  progress: bool = True, partial: Path | None = None) -> tuple[RolloutArrays, list[str]]:
    """The arrays of one file kind and the digests of the policies used.

    ``partial``: the folder where each rollout keeps its finished episodes (one subfolder per
    rollout), so that a rerun after an interruption rolls out only the rest.
    """
    env_id = forge_env_id(env)
    rows = component_rows(env, kind, prof)

    def keep(part: str) -> Path | None:
        return None if partial is None else partial / part

    if kind == "random":
        return rollout(env_id, None, rows, seed, prof.num_envs, progress=progress, desc=f"{env}-random",
                       checkpoint=keep("random")), []
    card = read_card(env, policy_root)
    obs_dim, act_dim = env_dims(env)

    def snapshot(step: int):
        return load_snapshot(env, step, obs_dim, act_dim, policy_root)

    if kind in ("medium", "expert"):
        policy = snapshot(int(card[kind]["step"]))
        arrays = rollout(env_id, policy, rows, seed, prof.num_envs, progress=progress, desc=f"{env}-{kind}",
                         checkpoint=keep(kind))
        return arrays, [policy.digest]
    if kind == "medium-replay":
        ladder = [int(s) for s in card["ladder"]]
        shares = np.diff(np.linspace(0, rows, len(ladder) + 1).round().astype(int))
        parts, digests = [], []
        for i, (step, share) in enumerate(zip(ladder, shares)):
            policy = snapshot(step)
            parts.append(rollout(env_id, policy, int(share), seed * 1000 + i, prof.num_envs,
                                 progress=progress, desc=f"{env}-medium-replay {i + 1}/{len(ladder)}",
                                 checkpoint=keep(f"medium-replay-{i}")))
            digests.append(policy.digest)
        return _concat(parts), digests
    if kind == "medium-expert":
        medium, d1 = component_arrays(env, "medium", prof, seed, policy_root, progress)
        expert, d2 = component_arrays(env, "expert", prof, seed, policy_root, progress)
        return _concat([medium, expert]), d1 + d2
    raise RklBenchError(f"forge cannot make kind {kind!r}; file kinds are: {', '.join(FILE_KINDS)}")


def component_arrays(env: str, kind: str, prof: Profile, seed: int, policy_root: Path | None,
                     progress: bool) -> tuple[RolloutArrays, list[str]]:
    """A medium-expert file's medium or expert rows, read from that kind's file, which is made
    first unless a current one exists (same policies, profile and seed: the same rows).

    Making the file rather than rolling the rows out in passing means ``random-medium-expert``
    then ``random-expert`` (the order of the paper's mixtures) roll the expert out once, not
    twice; the kind's own file keeps its interrupted episodes."""
    path = make_file(env, kind, prof.name, seed=seed, policy_root=policy_root, progress=progress)
    if progress:
        print(f"{env}-medium-expert: {kind} rows read from {path}", flush=True)
    raw, metadata = read_d4rl_arrays(path)
    arrays = RolloutArrays(
        observations=raw["observations"], actions=raw["actions"], rewards=raw["rewards"],
        next_observations=raw["next_observations"], terminals=raw["terminals"], timeouts=raw["timeouts"],
        episode_returns=np.asarray(metadata.get("episode_returns", np.zeros(0)), np.float64),
    )
    return arrays, policy_digests(env, kind, policy_root)


SNAPSHOT_ROLES = {"medium": ("medium",), "expert": ("expert",), "medium-expert": ("medium", "expert")}


def policy_digests(env: str, kind: str, policy_root: Path | None = None) -> list[str]:
    """Digests of the shipped policies a file kind is rolled out from, in generation order."""
    if kind == "random":
        return []
    card = read_card(env, policy_root)
    if kind == "medium-replay":
        steps = [int(s) for s in card["ladder"]]
    else:
        steps = [int(card[role]["step"]) for role in SNAPSHOT_ROLES[kind]]
    obs_dim, act_dim = env_dims(env)
    return [load_snapshot(env, step, obs_dim, act_dim, policy_root).digest for step in steps]


def current_version(env: str, kind: str, profile_name: str, seed: int = 0, policy_root: Path | None = None) -> str:
    """The version a file made now, from the shipped policies, would carry."""
    return _version(env, kind, profile(profile_name), seed, policy_digests(env, kind, policy_root))


def make_file(env: str, kind: str, profile_name: str = "quick", seed: int = 0, force: bool = False,
              policy_root: Path | None = None, progress: bool = True) -> Path:
    """Make ``<forge_dir>/<profile>/<env>-<kind>.hdf5`` unless a current one exists.

    A file made from other policies (the shipped ones changed since), with
    another seed or by another forge format is remade.
    """
    prof = profile(profile_name)
    path = forge_path(env, kind, prof.name)
    if path.is_file() and not force:
        if is_current(env, kind, prof.name, seed, policy_root):
            return path
        if progress:
            print(f"{path}: made from other policies or settings ({read_metadata(path).get('version', '')}); remaking it")
    partial = path.with_name(path.name + ".partial")
    arrays, digests = generate_kind(env, kind, prof, seed, policy_root, progress, partial)
    version = _version(env, kind, prof, seed, digests)
    metadata = {
        "env": env, "version": version, "name": f"forge-v5/{env}-{kind}", "kind": kind,
        "profile": prof.name, "seed": seed, "gym_env_id": forge_env_id(env),
        "episode_returns": arrays.episode_returns if len(arrays.episode_returns) else np.zeros(0),
    }
    written = write_d4rl_hdf5(
        path, arrays.observations, arrays.actions, arrays.rewards, arrays.terminals, arrays.timeouts,
        metadata, next_observations=arrays.next_observations,
    )
    shutil.rmtree(partial, ignore_errors=True)
    return written


def is_current(env: str, kind: str, profile_name: str, seed: int = 0, policy_root: Path | None = None) -> bool:
    """Whether the file exists and was made as one made now would be (same policies, sizes, seed, format)."""
    path = forge_path(env, kind, profile(profile_name).name)
    return path.is_file() and str(read_metadata(path).get("version", "")) == current_version(
        env, kind, profile_name, seed, policy_root)


FileJob = tuple[str, str, str]
"""(env, kind, profile name): one file to make."""


def make_datasets(names: list[str], profile: str | None = None, seed: int = 0, force: bool = False,
                  progress: bool = True, jobs: int = 1) -> list[Path]:
    """Make every file the forge names need (a mix needs its random file and its other kind),
    ``jobs`` files at a time (see the module doc); returns the files in the names' order."""
    if jobs < 1:
        raise RklBenchError(f"--jobs must be at least 1, got {jobs}")
    plan: list[FileJob] = []
    for spec in names:
        parsed = parse_dataset_name(spec)
        if parsed.source != "forge":
            raise RklBenchError(f"{spec!r} is not a forge dataset name; forge names look like forge-v5/hopper-random-expert")
        for kind in parsed.kinds:
            job = (parsed.env or "", kind, profile or parsed.profile)
            if job not in plan:
                plan.append(job)
    made = _make_side_by_side(plan, seed, force, progress, jobs) if jobs > 1 else set()
    paths: list[Path] = []
    for env, kind, prof in plan:
        path = make_file(env, kind, prof, seed=seed, force=force and (env, kind, prof) not in made, progress=progress)
        if path not in paths:
            paths.append(path)
    return paths


def _make_side_by_side(plan: list[FileJob], seed: int, force: bool, progress: bool, jobs: int) -> set[FileJob]:
    """Make the plan's rolled-out files (``medium-expert``'s parts instead of it) in ``jobs`` processes;
    returns the files made. Each process is started fresh (``spawn``: no forked torch or MuJoCo state)."""
    rolled: list[FileJob] = []
    for env, kind, prof in plan:
        for part in (("medium", "expert") if kind == "medium-expert" else (kind,)):
            job = (env, part, prof)
            if job not in rolled:
                rolled.append(job)
    root = policies.POLICY_ROOT  # as this process sees it, for the children
    pending = [job for job in rolled if force or not is_current(*job, seed=seed, policy_root=root)]
    if len(pending) < 2:
        return set()
    if progress:
        print(f"making {len(pending)} forge files, {min(jobs, len(pending))} at a time: "
              + ", ".join(f"{env}-{kind}" for env, kind, _ in pending), flush=True)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(pending)), mp_context=context) as pool:
        futures = [pool.submit(make_file, env, kind, prof, seed, force, root, progress) for env, kind, prof in pending]
        for future in futures:
            future.result()  # the first failure, as the sequential make would raise it
    return set(pending)
