"""Section V-B: does the fitted behaviour model see the aleatoric uncertainty?

Two experiments, both on the behaviour model the learner uses
(:func:`rkl_bench.algos.behaviour.fit_behaviour`):

* :func:`run_fig3`, the paper's Fig. 3: 1-D states and actions whose spread
  rises and then falls across the state range. The learned ``sigma(s)`` must
  follow the true spread (Spearman rank correlation over a grid of states).
* :func:`measure_lambda_options`, a synthetic stand-in for Fig. 4: a 17-D
  state / 6-D action dataset mixing a 'random' component (uniform actions in
  [-1, 1]) with an 'expert' component (a smooth function of the state plus
  small noise, saturating at the bounds on some states), and the lambda
  histograms of each component under every ``squash`` x ``beta_reduce`` x
  ``beta_normalization`` option. Its numbers are in ``docs/regularisers.md``;
  ``python -m rkl_bench.toys.fig3`` regenerates them.
"""

from __future__ import annotations

import copy
import json
import math
import sys
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from scipy.stats import spearmanr

from rkl_bench.algos.behaviour import (
    BETA_NORMALIZATIONS,
    BETA_REDUCES,
    BehaviourConfig,
    GaussianBehaviour,
    calibrate_beta,
    fit_behaviour,
    lambda_report,
)

# ------------------------------------------------------------------- Fig. 3
FIG3_POINTS = 4000
FIG3_CONFIG = BehaviourConfig(steps=1000, batch_size=256, lr=3e-3, hidden_dim=32, beta_normalization="none")
"""Small and quick: a 1-D toy needs no 256x256 net (Spearman > 0.997 on seeds 0-3)."""


def true_spread(s: np.ndarray) -> np.ndarray:
    """Action std at state ``s`` in [-1, 1]: small at both ends, peaking left of centre.

    Rises then falls, and the left half is wider than the right, like the
    paper's Fig. 3 where the left-hand actions are the more uncertain.
    """
    u = (s + 1.0) / 2.0
    return 0.03 + 0.3 * np.sin(np.pi * u) ** 2 * (1.0 - 0.5 * u)


def true_mean(s: np.ndarray) -> np.ndarray:
    return 0.4 * np.sin(2.5 * s)


def fig3_dataset(seed: int, n: int = FIG3_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """States uniform in [-1, 1], actions ``N(true_mean(s), true_spread(s)^2)``."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(-1.0, 1.0, n)
    a = true_mean(s) + true_spread(s) * rng.standard_normal(n)
    return s.astype(np.float32), a.astype(np.float32)


def run_fig3(out_dir: Path, seed: int = 0) -> dict[str, Any]:
    """Fit the behaviour model to the 1-D toy, compare sigma(s) with the truth, draw Fig. 3."""
    s, a = fig3_dataset(seed)
    s_mean, s_std = float(s.mean()), float(s.std())  # the caller's state normalisation
    obs = torch.from_numpy((s - s_mean) / s_std)[:, None]
    model, stats = fit_behaviour(obs, torch.from_numpy(a)[:, None], FIG3_CONFIG, seed=seed)

    grid = np.linspace(-0.95, 0.95, 39, dtype=np.float32)
    with torch.no_grad():
        g = torch.from_numpy((grid - s_mean) / s_std)[:, None]
        mean, log_std = model(g)
    sigma = log_std.exp().squeeze(1).numpy()
    mu = mean.squeeze(1).numpy()
    truth = true_spread(grid)
    rho = float(spearmanr(sigma, truth).statistic)
    log_err = np.abs(np.log(sigma) - np.log(truth))

    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / "fig3_aleatoric_uncertainty.png"
    _plot_fig3(s, a, grid, mu, sigma, truth, png)
    return {
        "figure": str(png),
        "points": int(len(s)),
        "fit_steps": FIG3_CONFIG.steps,
        "spearman_sigma_vs_true_spread": rho,
        "median_abs_log_sigma_error": float(np.median(log_err)),
        "max_abs_log_sigma_error": float(log_err.max()),
        "learned_sigma_peak_state": float(grid[sigma.argmax()]),
        "true_spread_peak_state": float(grid[truth.argmax()]),
        "learned_sigma_range": [float(sigma.min()), float(sigma.max())],
        "true_spread_range": [float(truth.min()), float(truth.max())],
        "final_nll": stats["nll"],
    }


def _plot_fig3(s, a, grid, mu, sigma, truth, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.scatter(s, a, s=3, alpha=0.35, color="tab:blue", label="dataset (s, a)")
    bars = slice(None, None, 2)
    ax.errorbar(
        grid[bars], mu[bars], yerr=sigma[bars], fmt="none", ecolor="tab:orange", elinewidth=3, capsize=3,
        label=r"learned $\pm\sigma_\psi(s)$",
    )
    ax.plot(grid, true_mean(grid) + truth, "k--", lw=0.8, label=r"true mean $\pm$ spread")
    ax.plot(grid, true_mean(grid) - truth, "k--", lw=0.8)
    ax.set_xlabel("state s")
    ax.set_ylabel("action a")
    ax.set_title("Fig. 3: learned aleatoric uncertainty of the behaviour model")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


# --------------------------------------------------- Fig. 4 synthetic stand-in
def synthetic_mixture(
    n_random: int = 20_000,
    n_expert: int = 20_000,
    seed: int = 0,
    obs_dim: int = 17,
    act_dim: int = 6,
    expert_noise: float = 0.1,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """A HalfCheetah-shaped random + expert mixture, states normalised over the mix.

    * random: states ``N(+c, I)``, actions uniform in [-1, 1];
    * expert: states ``N(-c, I)``, actions ``clip(1.1 tanh(2 W s) + noise, -1, 1)``,
      a smooth deterministic function of the state that saturates at the bounds
      on part of the state space (about 40% of action entries sit at +-1, as
      expert MuJoCo policies' often do), plus ``expert_noise`` Gaussian noise.

    ``c`` shifts the first three state dimensions by 1, so the two components
    overlap partly (some states look like either). Returns
    ``{"random": (obs, act), "expert": (obs, act)}``.
    """
    g = torch.Generator().manual_seed(seed)
    shift = torch.zeros(obs_dim)
    shift[:3] = 1.0
    s_r = torch.randn(n_random, obs_dim, generator=g) + shift
    s_e = torch.randn(n_expert, obs_dim, generator=g) - shift
    a_r = torch.rand(n_random, act_dim, generator=g) * 2 - 1
    w = torch.randn(obs_dim, act_dim, generator=g) / math.sqrt(obs_dim)
    a_e = (1.1 * torch.tanh(2.0 * s_e @ w) + expert_noise * torch.randn(n_expert, act_dim, generator=g)).clamp(-1, 1)
    both = torch.cat([s_r, s_e])
    mean, std = both.mean(0), both.std(0) + 1e-3
    return {"random": ((s_r - mean) / std, a_r), "expert": ((s_e - mean) / std, a_e)}


def with_beta_options(
    model: GaussianBehaviour, beta_reduce: str, beta_normalization: str, observations: torch.Tensor
) -> GaussianBehaviour:
    """A copy of a fitted model with other ``beta`` options, re-calibrated on ``observations``.

    The maximum-likelihood fit does not depend on how ``beta`` is reduced or
    normalised, so one fit per ``squash`` serves all six combinations.
    """
    variant = copy.deepcopy(model)
    variant.beta_reduce, variant.beta_normalization = beta_reduce, beta_normalization
    calibrate_beta(variant, observations)
    return variant


def measure_lambda_options(
    components: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    config: BehaviourConfig,
    seed: int = 0,
    zeta1: float = 10.0,
    zeta2: float = 5.0,
    squashes: tuple[str, ...] = ("none", "tanh"),
    progress: bool = False,
) -> dict[str, Any]:
    """Fit once per ``squash`` on the concatenated components; lambda report for every option.

    Returns ``{"<squash>/<reduce>/<normalization>": lambda_report(...)}`` plus
    ``"fit/<squash>"`` fit statistics. Works on any components (the forge's
    real random/expert data too): pass normalised observations and actions.
    """
    obs = torch.cat([o for o, _ in components.values()])
    act = torch.cat([a for _, a in components.values()])
    by_component = {name: o for name, (o, _) in components.items()}
    results: dict[str, Any] = {}
    for squash in squashes:
        cfg = BehaviourConfig(**{**_config_dict(config), "squash": squash})
        model, stats = fit_behaviour(obs, act, cfg, seed=seed, progress=progress)
        results[f"fit/{squash}"] = stats
        for reduce in BETA_REDUCES:
            for norm in BETA_NORMALIZATIONS:
                variant = with_beta_options(model, reduce, norm, obs)
                results[f"{squash}/{reduce}/{norm}"] = lambda_report(variant, by_component, zeta1, zeta2)
    return results


def _config_dict(config: BehaviourConfig) -> dict[str, Any]:
    return {k: getattr(config, k) for k in config.__dataclass_fields__}


def format_lambda_table(results: Mapping[str, Any]) -> str:
    """Markdown: one row per option and component, lambda statistics and the 10-bin histogram (% of rows)."""
    lines = [
        "| option (squash/reduce/norm) | component | beta mean (std) | lambda mean | lambda median | lambda < 0.5 | histogram of lambda, % per 0.1 bin |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, rep in results.items():
        if key.startswith("fit/"):
            continue
        for name, c in rep["components"].items():
            hist = " ".join(f"{100 * h / c['n']:.0f}" for h in c["histogram"])
            lines.append(
                f"| {key} | {name} | {c['beta_mean']:.2f} ({c['beta_std']:.2f}) | {c['lambda_mean']:.3f} | "
                f"{c['lambda_median']:.3f} | {100 * c['share_below_half']:.0f}% | {hist} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":  # regenerate the tables of docs/regularisers.md
    torch.set_num_threads(1)
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    data = synthetic_mixture(seed=0)
    res = measure_lambda_options(data, BehaviourConfig(steps=steps), seed=0, progress=True)
    print(format_lambda_table(res))
    print(json.dumps({k: v for k, v in res.items() if k.startswith("fit/")}, indent=1))
