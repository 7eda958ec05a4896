"""Choose the medium / expert / ladder snapshots of a SAC run and ship them.

D4RL's recipe, applied to our SAC runs:

* ``expert``: the snapshot with the best logged evaluation return (D4RL:
  "trained to completion");
* ``medium``: the earliest snapshot whose logged normalised score reaches a
  third of the expert's ("about 1/3 the performance of the expert");
* ``ladder``: up to ``ladder_size`` snapshots evenly spread from the first one
  (the untrained actor right after the random warm-up) up to medium, which
  the medium-replay dataset rolls out.

Every chosen policy is then evaluated afresh over ``episodes`` (>= 20)
seeded episodes, both with its mean action and with sampled actions (what the
datasets contain), and the card records raw and D4RL-normalised scores; the
uniform random policy of the random dataset is scored alongside.
The full agent of the latest checkpoint is shipped too (no replay buffer),
so a new machine can continue training.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rkl_bench.data.scores import normalized_score
from rkl_bench.errors import RklBenchError
from rkl_bench.evaluation.rollouts import evaluate_policy
from rkl_bench.forge.make import env_dims
from rkl_bench.forge.policies import POLICY_ROOT, SnapshotPolicy, load_actor_file
from rkl_bench.forge.train_policy import default_work_dir, forge_env_id, read_state_file


def _eval_rows(work: Path) -> list[dict[str, Any]]:
    path = work / "eval_log.jsonl"
    if not path.is_file():
        raise RklBenchError(f"{work} has no eval_log.jsonl: train with `rkl-bench forge train-policy` first")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def choose_snapshots(env: str, rows: list[dict[str, Any]], snapshot_steps: list[int],
                     ladder_size: int = 10) -> dict[str, Any]:
    """Pick expert, medium and the ladder from the evaluation log (see module doc)."""
    scored = {r["step"]: float(normalized_score(env, r["return_mean"])) for r in rows if r["step"] in snapshot_steps}
    if len(scored) < 2:
        raise RklBenchError(f"{env}: need at least two evaluated snapshots to choose medium and expert")
    expert = max(scored, key=lambda s: (scored[s], s))
    target = scored[expert] / 3.0
    reaching = [s for s in sorted(scored) if s <= expert and scored[s] >= target]
    medium = reaching[0] if reaching else expert
    before = [s for s in sorted(scored) if s <= medium]
    picks = np.unique(np.linspace(0, len(before) - 1, min(ladder_size, len(before))).round().astype(int))
    return {"expert": expert, "medium": medium, "ladder": [before[i] for i in picks], "logged": scored}


def _evaluate(policy: SnapshotPolicy | None, env: str, episodes: int, seed: int, sampled: bool) -> dict[str, float]:
    """Scores of ``policy`` (``None``: uniform random actions, as the random dataset) on the forge env."""
    obs_dim, act_dim = env_dims(env)
    rng = np.random.default_rng(seed)

    def act(obs: np.ndarray) -> np.ndarray:
        if policy is None:
            return rng.uniform(-1.0, 1.0, (len(obs), act_dim)).astype(np.float32)
        if sampled:
            return policy.sample(obs, rng.standard_normal((len(obs), act_dim)))
        return policy.mean_action(obs)

    result = evaluate_policy(act, forge_env_id(env), episodes, seed, np.zeros(obs_dim, np.float32),
                             np.ones(obs_dim, np.float32), env_family=env)
    return {
        "return_mean": result.return_mean, "return_std": result.return_std,
        "normalized_mean": float(result.normalized_mean), "normalized_std": float(result.normalized_std),
        "episodes": result.episodes,
    }


def export_policies(env: str, work_dir: str | Path | None = None, root: Path | None = None,
                    episodes: int = 20, ladder_size: int = 10, seed: int = 12345,
                    status: str = "provisional") -> Path:
    """Copy the chosen snapshots and the latest agent into ``policies/<env>/`` and write its card."""
    forge_env_id(env)
    work = Path(work_dir) if work_dir else default_work_dir(env)
    rows = _eval_rows(work)
    snaps = sorted(int(p.stem.split("_")[1]) for p in (work / "snapshots").glob("actor_*.pt"))
    choice = choose_snapshots(env, rows, snaps, ladder_size)
    # Read (weights_only) before anything is written: a bad state file leaves no half export.
    state = read_state_file(work / "checkpoint" / "state.pt", "train on with `rkl-bench forge train-policy` to rewrite it")
    out = (root or POLICY_ROOT) / env
    tmp = out.with_name(f".{env}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    steps = sorted({choice["expert"], choice["medium"], *choice["ladder"]})
    for step in steps:
        shutil.copy2(work / "snapshots" / f"actor_{step:07d}.pt", tmp / f"actor_{step:07d}.pt")
    torch.save({"agent": state["agent"], "steps": state["steps"], "env": env, "seed": state["seed"]},
               tmp / "agent_latest.pt")
    obs_dim, act_dim = env_dims(env)
    card: dict[str, Any] = {
        "env": env, "gym_env_id": forge_env_id(env), "status": status,
        "trained_steps": int(state["steps"]), "exported": time.strftime("%Y-%m-%d"),
        "selection": "expert = best logged eval; medium = first snapshot reaching 1/3 of expert's normalised score",
        "ladder": choice["ladder"],
        "logged_normalized_scores": {str(k): round(v, 2) for k, v in sorted(choice["logged"].items())},
    }
    for role in ("medium", "expert"):
        policy = load_actor_file(tmp / f"actor_{choice[role]:07d}.pt", choice[role], obs_dim, act_dim)
        card[role] = {
            "step": choice[role],
            "deterministic": _evaluate(policy, env, episodes, seed, sampled=False),
            "sampled": _evaluate(policy, env, episodes, seed, sampled=True),
        }
    # The random dataset's policy, scored the same way: the card then shows
    # random < medium < expert from one evaluation protocol.
    card["random"] = {"policy": "uniform actions in [-1, 1]",
                      "sampled": _evaluate(None, env, episodes, seed, sampled=True)}
    (tmp / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out

