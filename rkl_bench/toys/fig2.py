"""Fig. 2: which action does each BC regulariser pick when the data has two modes?

One state; its dataset actions are 1-D, half near -0.6 and half near +0.6.
With no RL signal a deterministic action ``mu = tanh(theta)`` (the actor's
squashing, so ``mu`` stays in the action bounds) is trained with Adam on
minibatches under each regulariser of :mod:`rkl_bench.algos.regularisers`,
the same functions the learners use:

* ``mse`` (Eq. 6): mean-seeking, ends between the modes, on no data at all;
* ``kernel`` (Eq. 17): mode-seeking, ends on the mode nearest its start;
* ``squared`` (Eq. 7) for several ``rkl_alpha``. In expectation over
  independent ``a, a1, a2`` from the same distribution,

      E[(mu - a)^2 - alpha (mu - (a1 + a2)/2)^2] = (1 - alpha)(mu - E[a])^2 + const,

  so ``alpha < 1`` is a scaled MSE (mean-seeking), ``alpha = 1`` has no
  restoring force at all (the minibatch gradient ``2 (mean(m) - mean(a))``
  does not depend on ``mu``: a random walk from wherever ``mu`` starts), and
  ``alpha > 1`` is concave and runs to an action bound.
* ``squared`` with *global* negatives: in a mixed dataset ``a1, a2`` come from
  all states, not the current one. Then the ``mu``-dependence is
  ``(1 - alpha) mu^2 - 2 mu (E_s[a] - alpha E_D[a])``; at ``alpha = 1`` a
  constant push away from the dataset's mean action ``E_D[a]``, to the bound.

``docs/regularisers.md`` quotes the numbers this returns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rkl_bench.algos.regularisers import bc_loss

MODES = (-0.6, 0.6)
MODE_NOISE = 0.05
N_ACTIONS = 2000
STEPS = 600
BATCH = 128
LR = 0.03
"""Adam step, decayed linearly to 1% of it, so the final ``mu`` is the optimum, not the last jitter."""
KERNEL_SIGMA = 0.2
"""Kernel width (per action dimension, mean convention): a few times the mode noise, well below the mode gap."""
ALPHAS = (0.0, 0.5, 0.9, 1.0, 1.5)
INITS = (-0.45, -0.2, 0.05, 0.3, 0.5)
"""Starting actions for the runs that show how the outcome depends on the start."""
OTHER_STATES_MEAN = 0.5
"""Mean action of the other states in the mixed-dataset variant (global negatives)."""


def bimodal_actions(seed: int, n: int = N_ACTIONS) -> torch.Tensor:
    """``(n, 1)`` actions: a fair mixture of ``N(-0.6, 0.05^2)`` and ``N(+0.6, 0.05^2)``."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.tensor(MODES)[torch.randint(2, (n,), generator=g)]
    return (centre + MODE_NOISE * torch.randn(n, generator=g)).clamp(-1, 1)[:, None]


def mixed_pool(state_actions: torch.Tensor, seed: int) -> torch.Tensor:
    """The whole dataset's actions: this state's (1/4) plus other states' (3/4, ``N(0.5, 0.2^2)``)."""
    g = torch.Generator().manual_seed(seed + 1)
    n = 3 * len(state_actions)
    others = (OTHER_STATES_MEAN + 0.2 * torch.randn(n, 1, generator=g)).clamp(-1, 1)
    return torch.cat([state_actions, others])


@dataclass(frozen=True)
class Run:
    """One optimisation of ``mu``: a regulariser, its ``rkl_alpha``, where negatives come from, a start."""

    name: str
    form: str
    rkl_alpha: float
    init: float
    global_negatives: bool = False


def optimise_mu(
    runs: list[Run],
    actions: torch.Tensor,
    pool: torch.Tensor,
    seed: int,
    sigma: float = KERNEL_SIGMA,
    steps: int = STEPS,
) -> dict[str, np.ndarray]:
    """Minimise ``mean_B bc_loss(form, mu, a, a1, a2)`` over ``mu = tanh(theta)`` with Adam, for every run.

    Each run has its own ``theta`` and its own minibatches: ``a`` from
    ``actions`` (the state's data), ``a1, a2`` independently from ``actions``
    or, with ``global_negatives``, from ``pool`` (the whole mixed dataset).
    The runs are independent problems solved side by side: Adam is
    element-wise, so one Adam over the vector ``theta`` is one Adam per run,
    and runs sharing ``(form, rkl_alpha, negatives)`` share one ``bc_loss``
    call. Returns each run's trajectory of ``mu`` (``steps + 1`` values).
    """
    g = torch.Generator().manual_seed(seed)
    r = len(runs)
    theta = torch.tensor([math.atanh(run.init) for run in runs], requires_grad=True)
    opt = torch.optim.Adam([theta], lr=LR)
    sched = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0, end_factor=0.01, total_iters=steps)
    groups: dict[tuple[str, float, bool], list[int]] = {}
    for i, run in enumerate(runs):
        groups.setdefault((run.form, run.rkl_alpha, run.global_negatives), []).append(i)
    index = {key: torch.tensor(ids) for key, ids in groups.items()}
    is_global = torch.tensor([run.global_negatives for run in runs])[:, None, None]

    def draw(source: torch.Tensor) -> torch.Tensor:
        return source[torch.randint(len(source), (r, BATCH), generator=g)]  # (R, B, 1)

    paths = np.empty((steps + 1, r), dtype=np.float64)
    paths[0] = [run.init for run in runs]
    for step in range(steps):
        a = draw(actions)
        a1 = torch.where(is_global, draw(pool), draw(actions))
        a2 = torch.where(is_global, draw(pool), draw(actions))
        mu = torch.tanh(theta)[:, None, None].expand(r, BATCH, 1)
        loss = sum(
            bc_loss(form, mu[ids], a[ids], a1[ids], a2[ids], alpha, sigma).mean(dim=1).sum()
            for (form, alpha, _), ids in index.items()
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        paths[step + 1] = torch.tanh(theta.detach()).numpy()
    return {run.name: paths[:, i] for i, run in enumerate(runs)}


@torch.no_grad()
def expected_loss(
    form: str, actions: torch.Tensor, negatives: torch.Tensor, rkl_alpha: float, grid: np.ndarray, seed: int
) -> np.ndarray:
    """Monte Carlo ``E_{a, a1, a2}[bc_loss(mu)]`` on a grid of ``mu`` (4096 fixed triples)."""
    g = torch.Generator().manual_seed(seed + 2)
    k = 4096
    a = actions[torch.randint(len(actions), (k,), generator=g)]
    a1 = negatives[torch.randint(len(negatives), (k,), generator=g)]
    a2 = negatives[torch.randint(len(negatives), (k,), generator=g)]
    mu = torch.as_tensor(grid, dtype=torch.float32)[:, None, None].expand(len(grid), k, 1)
    return bc_loss(form, mu, a, a1, a2, rkl_alpha, KERNEL_SIGMA).mean(dim=1).double().numpy()


SINGLE_RUNS = (
    # name, form, rkl_alpha, global negatives
    ("mse", "mse", 0.0, False),
    ("kernel", "kernel", 1.0, False),
    ("kernel_alpha0", "kernel", 0.0, False),
    *((f"squared_alpha{a:g}", "squared", a, False) for a in ALPHAS),
    ("squared_alpha1_global", "squared", 1.0, True),
    ("squared_alpha0.5_global", "squared", 0.5, True),
    ("kernel_global", "kernel", 1.0, True),
)
FROM_INITS = (("mse", "mse", 0.0), ("kernel", "kernel", 1.0), ("squared_alpha1", "squared", 1.0))


def run_fig2(out_dir: Path, seed: int = 0) -> dict[str, Any]:
    """Run every regulariser on the bimodal state, draw Fig. 2, return the final actions."""
    actions = bimodal_actions(seed)
    pool = mixed_pool(actions, seed)
    rng = np.random.default_rng(seed)
    init = float(rng.uniform(-0.3, 0.3))  # the single-run start, between the modes

    runs = [Run(name, form, alpha, init, glob) for name, form, alpha, glob in SINGLE_RUNS]
    runs += [Run(f"{name}@{x0:g}", form, alpha, x0) for name, form, alpha in FROM_INITS for x0 in INITS]
    paths = optimise_mu(runs, actions, pool, seed)
    final = {run.name: float(paths[run.name][-1]) for run in runs}

    single = {name: final[name] for name, *_ in SINGLE_RUNS}
    from_inits = {name: [final[f"{name}@{x0:g}"] for x0 in INITS] for name, *_ in FROM_INITS}
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / "fig2_bc_regularisers.png"
    _plot_fig2(actions, pool, single, from_inits, png, seed)
    return {
        "figure": str(png),
        "modes": list(MODES),
        "mode_noise": MODE_NOISE,
        "dataset_mean_action": float(actions.mean()),
        "mixed_dataset_mean_action": float(pool.mean()),
        "kernel_sigma": KERNEL_SIGMA,
        "steps": STEPS,
        "init": init,
        "final_mu": single,
        "inits": list(INITS),
        "final_mu_from_inits": from_inits,
        "distance_to_nearest_mode": {k: float(min(abs(v - m) for m in MODES)) for k, v in single.items()},
    }


def _plot_fig2(actions, pool, final, from_inits, png: Path, seed: int) -> None:
    """Four panels like the paper's Fig. 2: data histogram, expected loss, where ``mu`` ends."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(-0.99, 0.99, 199)
    centre = int(np.argmin(np.abs(grid)))
    viridis = plt.cm.viridis(np.linspace(0, 0.9, len(ALPHAS)))
    panels = [
        ("(a) MSE, Eq. 6", [("mse", "mse", 0.0, actions, "tab:red")], ("mse", "tab:red")),
        (
            r"(b) kernel RKL, Eq. 17 ($\sigma$=%g)" % KERNEL_SIGMA,
            [("kernel", "kernel", 1.0, actions, "tab:green"), ("kernel_alpha0", "kernel", 0.0, actions, "tab:olive")],
            ("kernel", "tab:green"),
        ),
        (
            r"(c) squared RKL, Eq. 7: $\alpha$ sweep",
            [(f"squared_alpha{a:g}", "squared", a, actions, c) for a, c in zip(ALPHAS, viridis)],
            ("squared_alpha1", viridis[list(ALPHAS).index(1.0)]),
        ),
        (
            "(d) a1, a2 from a mixed dataset (mean %.2f)" % float(pool.mean()),
            [
                ("squared_alpha1_global", "squared", 1.0, pool, "tab:purple"),
                ("squared_alpha0.5_global", "squared", 0.5, pool, "tab:brown"),
                ("kernel_global", "kernel", 1.0, pool, "tab:green"),
            ],
            None,
        ),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.2), sharex=True)
    for ax, (title, entries, arrows) in zip(axes, panels):
        ax.hist(actions.squeeze(1).numpy(), bins=80, range=(-1, 1), density=True, color="tab:blue", alpha=0.35, label="D(s)")
        twin = ax.twinx()
        for name, form, alpha, negatives, colour in entries:
            curve = expected_loss(form, actions, negatives, alpha, grid, seed)
            twin.plot(grid, curve - curve[centre], color=colour, lw=1.2)
            ax.axvline(final[name], color=colour, lw=2.2, ls="--", label=f"{name}: mu={final[name]:+.2f}")
        if arrows is not None:  # the runs from several starts: start -> end
            name, colour = arrows
            for k, (x0, x1) in enumerate(zip(INITS, from_inits[name])):
                y = 0.5 + 0.45 * k
                ax.annotate("", xy=(x1, y), xytext=(x0, y), arrowprops=dict(arrowstyle="->", color=colour, lw=1.3))
                ax.plot([x0], [y], "o", mfc="white", mec=colour, ms=4)
            ax.plot([], [], "-", color=colour, label=f"{name}: start -> end, {len(INITS)} runs")
        twin.set_ylabel("expected loss - loss at mu=0", fontsize=7)
        twin.tick_params(labelsize=7)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("action")
        ax.legend(fontsize=6.5, loc="upper center", framealpha=0.85)
    axes[0].set_ylabel("density of dataset actions")
    fig.suptitle(
        "Fig. 2: where a deterministic action ends under each BC regulariser (dashed lines, arrows), "
        "with the expected loss (solid)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
