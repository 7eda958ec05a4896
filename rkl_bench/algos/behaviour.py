"""The Gaussian behaviour model and the per-state BC weights of TD3+RKL.

Algorithm 1, lines 6-8: before any RL, fit a state-conditioned diagonal
Gaussian ``pi_psi(a|s) = N(mu_psi(s), sigma_psi(s)^2)`` to the dataset by
maximum likelihood, and keep only its log-variance
``beta(s) := log sigma_psi(s)^2`` (the aleatoric uncertainty of the actions at
``s``). Eq. 18 turns it into a BC weight

    lambda(s) = 1 / (1 + exp(zeta1 * beta(s) - zeta2))          (zeta1=10, zeta2=5)

so that states where the behaviour policies tried many actions (large
``beta``) lean on the RL signal, and states with narrow action coverage are
held close to the data.

The paper leaves three things open; each is an explicit option of
:class:`BehaviourConfig` (measurements and reasons in ``docs/regularisers.md``):

* ``squash``: does the Gaussian model the actions themselves (``"none"``) or
  the pre-tanh actions (``"tanh"``, a tanh-Gaussian fitted on
  ``atanh(clip(a, -1+eps, 1-eps))`` with the tanh Jacobian)?
* ``beta_reduce``: how the per-dimension log-variances become one number
  (``"mean"``, ``"sum"`` or ``"max"`` over action dimensions).
* ``beta_normalization``: ``"none"`` uses ``beta`` as is; ``"zscore"``
  standardises it by its mean and std over the dataset's rows, so that
  ``zeta1``, ``zeta2`` mean the same thing on every dataset (``lambda = 0.5``
  at half a standard deviation above the dataset's mean log-variance). The two
  statistics are buffers of the model, so they travel with its ``state_dict``
  and any later state is transformed the same way.

The weights are computed once per dataset row after the fit
(:func:`dataset_lambdas`); the learner looks them up by row index.

BRAC's behaviour policy (also the reverse-KL signal's of Fig. 5) is the same
network with ``squash="tanh"``, fitted its own way
(:mod:`rkl_bench.algos.brac_behaviour`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from rkl_bench.algos.behaviour_cache import fit_settings, load_or_fit
from rkl_bench.algos.config import Checked, one_of, positive, positive_int, within
from rkl_bench.algos.nets import GaussianHead
from rkl_bench.algos.tanh_gaussian import normal_log_prob, tanh_gaussian_log_prob
from rkl_bench.errors import RklBenchError

SQUASHES = ("none", "tanh")
BETA_REDUCES = ("mean", "sum", "max")
BETA_NORMALIZATIONS = ("none", "zscore", "range")
RANGE_QUANTILES = (0.05, 0.95)


@dataclass(frozen=True)
class BehaviourConfig(Checked):
    """How the behaviour model is fitted and how its log-variance becomes ``beta(s)``.

    ``steps = 50_000`` minibatches of 256 is ~12 passes over a 1M-row D4RL
    dataset and ~60 over a 200k one, at ~5% of the cost of a 1M-step TD3 run;
    ``docs/regularisers.md`` records how the lambda histograms move with the
    budget on the synthetic stand-in. Tests use a few hundred steps.
    ``lr = 1e-3`` (Adam): the log-std is bounded by
    :class:`~rkl_bench.algos.nets.GaussianHead`, so the larger step is stable.
    """

    steps: int = 50_000
    batch_size: int = 256
    lr: float = 1e-3
    hidden_dim: int = 256
    hidden_layers: int = 2
    squash: str = "none"
    """``"none"``: a Gaussian on the actions; ``"tanh"``: on the pre-tanh actions."""
    beta_reduce: str = "mean"
    """How the per-dimension log-variances become one ``beta``."""
    beta_normalization: str = "zscore"
    tanh_eps: float = 1e-4
    """Actions are clipped to ``[-1 + eps, 1 - eps]`` before ``atanh`` (``squash="tanh"`` only)."""

    def check(self) -> None:
        check_options(self)
        positive_int(self, "steps", "batch_size", "hidden_dim", "hidden_layers")
        positive(self, "lr")
        within(self, "tanh_eps", 0, 0.5, low_open=True, high_open=True)

    @property
    def hidden(self) -> tuple[int, ...]:
        return (self.hidden_dim,) * self.hidden_layers


def check_options(config: Any) -> None:
    """``squash``, ``beta_reduce`` and ``beta_normalization`` are among their choices."""
    one_of(config, "squash", SQUASHES)
    one_of(config, "beta_reduce", BETA_REDUCES)
    one_of(config, "beta_normalization", BETA_NORMALIZATIONS)


class GaussianBehaviour(nn.Module):
    """``pi_psi(a|s)``: a diagonal Gaussian per state (Algorithm 1, line 5).

    With ``squash="tanh"`` the Gaussian lives on pre-tanh actions and
    :meth:`log_prob` is the tanh-Gaussian density of the (clipped) action.
    ``beta_shift``/``beta_scale`` are the ``"zscore"`` statistics (identity
    until :func:`fit_behaviour` sets them).
    """

    beta_shift: Tensor
    beta_scale: Tensor

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: tuple[int, ...] = (256, 256),
        squash: str = "none",
        beta_reduce: str = "mean",
        beta_normalization: str = "zscore",
        tanh_eps: float = 1e-4,
    ) -> None:
        super().__init__()
        self.squash, self.beta_reduce, self.beta_normalization = squash, beta_reduce, beta_normalization
        check_options(self)
        self.head = GaussianHead(obs_dim, act_dim, tuple(hidden))
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.tanh_eps = float(tanh_eps)
        self.register_buffer("beta_shift", torch.zeros(()))
        self.register_buffer("beta_scale", torch.ones(()))

    @classmethod
    def from_config(cls, obs_dim: int, act_dim: int, config: BehaviourConfig) -> "GaussianBehaviour":
        return cls(
            obs_dim, act_dim, config.hidden, config.squash, config.beta_reduce, config.beta_normalization, config.tanh_eps
        )

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-std of the Gaussian (pre-tanh when ``squash="tanh"``), each ``(B, act_dim)``."""
        return self.head(obs)

    def log_prob(self, obs: Tensor, actions: Tensor) -> Tensor:
        """Joint log-density ``log pi_psi(a|s)``, shape ``(B,)``.

        ``actions`` may carry leading sample dimensions, ``(n, B, act_dim)``
        -> ``(n, B)``, which the reverse-KL signal of Fig. 5 uses.
        """
        mean, log_std = self(obs)
        if self.squash == "tanh":
            return tanh_gaussian_log_prob(actions, mean, log_std, self.tanh_eps)
        return normal_log_prob(actions, mean, log_std).sum(dim=-1)

    def mean_action(self, obs: Tensor) -> Tensor:
        """The model's central action (``tanh`` of the mean when squashed)."""
        mean, _ = self(obs)
        return torch.tanh(mean) if self.squash == "tanh" else mean

    def raw_beta(self, obs: Tensor) -> Tensor:
        """``log sigma_psi(s)^2`` reduced over action dimensions, before normalisation; ``(B,)``."""
        _, log_std = self(obs)
        log_var = 2.0 * log_std
        if self.beta_reduce == "mean":
            return log_var.mean(dim=-1)
        if self.beta_reduce == "sum":
            return log_var.sum(dim=-1)
        return log_var.amax(dim=-1)

    def beta(self, obs: Tensor) -> Tensor:
        """``beta(s)`` of Eq. 18 as configured (``raw_beta`` mapped by the stored statistics unless ``"none"``); ``(B,)``."""
        raw = self.raw_beta(obs)
        if self.beta_normalization == "none":
            return raw
        return (raw - self.beta_shift) / self.beta_scale

    # The options are structure, not weights: keep them in the state_dict so a
    # checkpoint loaded into a differently configured model fails loudly.
    def get_extra_state(self) -> dict[str, Any]:
        return {
            "squash": self.squash,
            "beta_reduce": self.beta_reduce,
            "beta_normalization": self.beta_normalization,
            "tanh_eps": self.tanh_eps,
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        mine = self.get_extra_state()
        if state != mine:
            raise RklBenchError(
                f"behaviour model checkpoint was saved with {state}, but this model is configured with {mine}; "
                "build the model with the checkpoint's options"
            )


# ----------------------------------------------------------------------- fit
def fit_behaviour(
    observations: Tensor,
    actions: Tensor,
    config: BehaviourConfig,
    seed: int,
    progress: bool = False,
    cache: bool = True,
) -> tuple[GaussianBehaviour, dict[str, float]]:
    """Fit ``pi_psi`` by maximum likelihood (Algorithm 1, line 7); return it and fit statistics.

    With ``cache`` the weights of an earlier fit of the same rows, seed and fit settings are read
    instead (``behaviour_cache``: bit-identical to fitting again; the statistics below are always
    recomputed, as they depend on ``beta_reduce`` and ``beta_normalization``).

    ``observations`` must already be state-normalised (as the learner sees
    them). Adam on minibatches drawn with a ``torch.Generator`` seeded by
    ``seed``; the network is initialised under ``seed`` too, without touching
    the global RNG, so the same inputs and seed give the same model on CPU.
    After the fit the ``"zscore"`` statistics are set from ``raw_beta`` over
    all rows. The returned dict holds the final full-dataset NLL per row and
    the mean, std and 5/25/50/75/95% quantiles of ``raw_beta`` and ``beta``.
    """
    _check_data(observations, actions)
    obs = observations.float()
    act = actions.float()
    obs_dim, act_dim = obs.shape[1], act.shape[1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GaussianBehaviour.from_config(obs_dim, act_dim, config)
    model.to(obs.device)
    load_or_fit(model.head, lambda: _train_gaussian(model, obs, act, config, seed, progress),
                obs, act, fit_settings(config), seed, "gaussian", cache)
    model.eval()

    raw = calibrate_beta(model, obs)
    with torch.no_grad():
        nll_full = torch.cat(
            [-model.log_prob(o, a) for o, a in zip(obs.split(65536), act.split(65536))]
        ).mean()
    normalised = (raw - model.beta_shift) / model.beta_scale
    stats = {"nll": float(nll_full), "steps": float(config.steps)}
    stats.update(_summary("raw_beta", raw))
    stats.update(_summary("beta", normalised))
    return model, stats


def _train_gaussian(model: GaussianBehaviour, obs: Tensor, act: Tensor, config: BehaviourConfig, seed: int,
                    progress: bool) -> None:
    """The Adam steps of :func:`fit_behaviour` on ``model`` (in place)."""
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch.Generator(device=obs.device).manual_seed(seed)
    model.train()
    bar = tqdm(range(config.steps), desc="behaviour model", disable=not progress, leave=False, unit="step")
    for step in bar:
        idx = torch.randint(obs.shape[0], (config.batch_size,), generator=generator, device=obs.device)
        nll = -model.log_prob(obs[idx], act[idx]).mean()
        optimiser.zero_grad(set_to_none=True)
        nll.backward()
        optimiser.step()
        if progress and step % 1000 == 0:
            bar.set_postfix(nll=f"{nll.item():.3f}")
    bar.close()


@torch.no_grad()
def calibrate_beta(model: GaussianBehaviour, observations: Tensor) -> Tensor:
    """Set the ``"zscore"`` statistics from ``raw_beta`` over ``observations``; return ``raw_beta`` ``(N,)``.

    A no-op on the statistics when the model's ``beta_normalization`` is
    ``"none"``. :func:`fit_behaviour` calls it on the whole dataset; call it
    again after changing ``model.beta_reduce`` (the fit itself does not depend
    on the reduction or normalisation, only ``beta`` does).
    """
    raw = _chunked(model.raw_beta, observations.float())
    if model.beta_normalization == "zscore":
        model.beta_shift.fill_(raw.mean())
        model.beta_scale.fill_(raw.std().clamp_min(1e-6))
    elif model.beta_normalization == "range":
        lo, hi = torch.quantile(raw.double(), torch.tensor(RANGE_QUANTILES, dtype=torch.float64))
        model.beta_shift.fill_(lo)
        model.beta_scale.fill_((hi - lo).clamp_min(1e-6))
    else:
        model.beta_shift.zero_()
        model.beta_scale.fill_(1.0)
    return raw


def _check_data(observations: Tensor, actions: Tensor) -> None:
    if observations.dim() != 2 or actions.dim() != 2:
        raise RklBenchError(
            f"behaviour model needs 2-D observations (N, obs_dim) and actions (N, act_dim); "
            f"got shapes {tuple(observations.shape)} and {tuple(actions.shape)}"
        )
    if len(observations) != len(actions):
        raise RklBenchError(
            f"behaviour model: {len(observations)} observations but {len(actions)} actions; they must pair row by row"
        )
    if len(observations) < 2:
        raise RklBenchError("behaviour model needs at least 2 dataset rows")
    if not (torch.isfinite(observations).all() and torch.isfinite(actions).all()):
        raise RklBenchError("behaviour model: observations or actions contain NaN or inf; clean the dataset first")


def _summary(prefix: str, x: Tensor) -> dict[str, float]:
    q = torch.quantile(x.double(), torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95], dtype=torch.float64))
    out = {f"{prefix}_mean": float(x.mean()), f"{prefix}_std": float(x.std())}
    out.update({f"{prefix}_q{p:02d}": float(v) for p, v in zip((5, 25, 50, 75, 95), q)})
    return out


@torch.no_grad()
def _chunked(fn: Any, obs: Tensor, chunk: int = 65536) -> Tensor:
    return torch.cat([fn(o) for o in obs.split(chunk)])


# ------------------------------------------------------------------- Eq. 18
def lambda_weights(beta: Tensor, zeta1: float, zeta2: float, floor: float = 0.0) -> Tensor:
    """Eq. 18: ``1 / (1 + exp(zeta1 * beta - zeta2))``, written as a sigmoid so it never overflows.

    With ``floor`` > 0 (not the paper's; ``lambda_floor``): ``floor + (1 - floor) * Eq. 18``, so no
    state loses its BC term entirely (the paper's lambda reaches 0 where the behaviour spreads wide).
    """
    lam = torch.sigmoid(zeta2 - zeta1 * beta)
    return lam if floor == 0.0 else floor + (1.0 - floor) * lam


@torch.no_grad()
def dataset_lambdas(
    model: GaussianBehaviour, observations: Tensor, zeta1: float, zeta2: float, chunk: int = 65536,
    floor: float = 0.0,
) -> Tensor:
    """``lambda(s_i)`` for every dataset row ``i`` (Algorithm 1, line 16), shape ``(N,)``.

    Computed once after the fit; the learner indexes it with the batch's row
    indices instead of re-running the model every step.
    """
    was_training = model.training
    model.eval()
    lam = torch.cat([lambda_weights(model.beta(o), zeta1, zeta2, floor) for o in observations.float().split(chunk)])
    model.train(was_training)
    return lam


def lambda_report(
    model: GaussianBehaviour,
    observations_by_component: Mapping[str, Tensor],
    zeta1: float,
    zeta2: float,
    bins: int = 10,
) -> dict[str, Any]:
    """The paper's Fig. 4 as numbers: the lambda histogram of each dataset component.

    ``observations_by_component`` maps a name (e.g. ``"random"``,
    ``"expert"``) to that component's normalised observations. Per component:
    row count, mean/median/10%/90% of lambda, the share of rows with
    lambda < 0.5, the histogram over ``bins`` equal bins of [0, 1] (counts),
    and the mean/std of ``beta``. ``bin_edges`` is shared.
    """
    out: dict[str, Any] = {"bin_edges": torch.linspace(0.0, 1.0, bins + 1).tolist(), "components": {}}
    for name, obs in observations_by_component.items():
        lam = dataset_lambdas(model, obs, zeta1, zeta2).double()
        beta = _chunked(model.beta, obs.float()).double()
        q = torch.quantile(lam, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64))
        out["components"][name] = {
            "n": int(len(lam)),
            "lambda_mean": float(lam.mean()),
            "lambda_q10": float(q[0]),
            "lambda_median": float(q[1]),
            "lambda_q90": float(q[2]),
            "share_below_half": float((lam < 0.5).double().mean()),
            "histogram": [int(c) for c in torch.histc(lam, bins=bins, min=0.0, max=1.0).tolist()],
            "beta_mean": float(beta.mean()),
            "beta_std": float(beta.std()) if len(beta) > 1 else 0.0,
        }
    return out
