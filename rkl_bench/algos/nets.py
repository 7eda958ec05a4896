"""Network pieces shared by the learners.

All hidden layers are ReLU MLPs, 256x256 by default (TD3+BC's sizes). Weights
use PyTorch's ``nn.Linear`` default initialisation, uniform in
``±1/sqrt(fan_in)``, so results match the published TD3+BC code.

:class:`EnsembleLinear` holds the weights of several independent linear layers
in one tensor and applies them with one batched matmul. Two critics become one
module and one matmul per layer instead of two: the update step runs fewer,
larger kernels, which is what a 2-core CPU rewards.

Every module also has a *functional* form (``*_apply``) that computes the same
function from an explicit list of its parameters (in ``module.parameters()``
order). The learners' fast update paths (:mod:`rkl_bench.algos.fast`) run
their losses through these inside one compiled step; :class:`Nets` hands a
loss either the modules (plain path) or these functions bound to parameter
lists (fast path), so each loss is written once.
"""

from __future__ import annotations

import contextlib
import math
import zlib
from functools import partial
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from rkl_bench.algos.fast import linear, linear_in_out
from rkl_bench.algos.tanh_gaussian import CLIP_EPS, TanhGaussian, squash_log_std

LOG_STD_MIN = -5.0
LOG_STD_MAX = 2.0


def mlp(in_dim: int, out_dim: int, hidden: tuple[int, ...] = (256, 256)) -> nn.Sequential:
    """A ReLU MLP with a linear output layer."""
    layers: list[nn.Module] = []
    last = in_dim
    for width in hidden:
        layers += [nn.Linear(last, width), nn.ReLU()]
        last = width
    layers.append(nn.Linear(last, out_dim))
    return nn.Sequential(*layers)


class EnsembleLinear(nn.Module):
    """``members`` independent linear layers applied in one batched matmul.

    Input ``(members, B, in)`` -> output ``(members, B, out)``. Each member is
    initialised exactly as a separate ``nn.Linear(in, out)`` would be.
    """

    def __init__(self, members: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(members, 1, out_dim))
        bound = 1.0 / math.sqrt(in_dim)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleCritic(nn.Module):
    """``members`` Q-networks Q(s, a) evaluated together; output ``(members, B, 1)``."""

    def __init__(
        self, obs_dim: int, act_dim: int, hidden: tuple[int, ...] = (256, 256), members: int = 2
    ) -> None:
        super().__init__()
        self.members = members
        layers: list[nn.Module] = []
        last = obs_dim + act_dim
        for width in hidden:
            layers += [EnsembleLinear(members, last, width), nn.ReLU()]
            last = width
        layers.append(EnsembleLinear(members, last, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, action], dim=-1)
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.members, -1, -1)
        return self.net(x)

    def member(
        self, obs: torch.Tensor, action: torch.Tensor, index: int = 0, detach_params: bool = False
    ) -> torch.Tensor:
        """One member's Q(s, a), shape ``(B, 1)``; ``index=0`` is TD3's Q1.

        Runs only that member's slice of the weights (half the work of
        :meth:`forward` for two critics). With ``detach_params=True`` the
        weights are used detached: gradients flow to ``obs``/``action`` (the
        actor's deterministic policy gradient) but nothing is accumulated in
        the critic's ``.grad``, and no autograd graph is built for the critic
        weights. Same numbers as ``forward(obs, action)[index]`` up to float
        rounding of ``addmm`` versus ``baddbmm``.
        """
        x = torch.cat([obs, action], dim=-1)
        for layer in self.net:
            if isinstance(layer, EnsembleLinear):
                weight, bias = layer.weight[index], layer.bias[index]
                if detach_params:
                    weight, bias = weight.detach(), bias.detach()
                x = torch.addmm(bias, x, weight)
            else:
                x = layer(x)
        return x

    def functional(self, params: Sequence[Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
        return partial(critic_apply, params)


def ensemble_value(q: Tensor, nu: float) -> Tensor:
    """``nu * min_j Q_j + (1 - nu) * max_j Q_j`` over the leading critic axis (BRAC's
    ``ensemble_q_lambda``, CDC Eq. 5); ``nu = 1`` is the min itself."""
    if nu == 1.0:
        return q.amin(dim=0)
    return nu * q.amin(dim=0) + (1.0 - nu) * q.amax(dim=0)


class DeterministicActor(nn.Module):
    """mu(s) = max_action * tanh(MLP(s)), TD3's actor."""

    def __init__(
        self, obs_dim: int, act_dim: int, hidden: tuple[int, ...] = (256, 256), max_action: float = 1.0
    ) -> None:
        super().__init__()
        self.net = mlp(obs_dim, act_dim, hidden)
        self.act_dim = act_dim
        self.max_action = float(max_action)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.max_action * torch.tanh(self.net(obs))

    def head_into(self, z: Tensor, out: Tensor) -> None:
        """``forward``'s head of the MLP output ``z``, written into ``out`` (same kernels, for
        :mod:`rkl_bench.algos.inference`)."""
        torch.tanh(z, out=out)
        if self.max_action != 1.0:  # x * 1.0 == x exactly: skipping it changes no bit
            out.mul_(self.max_action)

    def functional(self, params: Sequence[Tensor]) -> Callable[[Tensor], Tensor]:
        return partial(actor_apply, params, max_action=self.max_action)


class GaussianHead(nn.Module):
    """An MLP that outputs a diagonal Gaussian's mean and log-std per state: ``forward(obs) -> (mean, log_std)``.

    The log-std is squashed smoothly into ``[log_std_min, log_std_max]``
    (:func:`~rkl_bench.algos.tanh_gaussian.squash_log_std`) so that it can
    neither collapse nor explode during fitting. The behaviour models and
    SAC's actor use it as it is; :class:`TanhGaussianActor` is the policy
    form of the same network.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...] = (256, 256),
                 log_std_min: float = LOG_STD_MIN, log_std_max: float = LOG_STD_MAX) -> None:
        super().__init__()
        self.net = mlp(obs_dim, 2 * act_dim, hidden)
        self.act_dim = act_dim
        self.log_std_min, self.log_std_max = float(log_std_min), float(log_std_max)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, raw_log_std = self.net(obs).split(self.act_dim, dim=-1)
        return mean, squash_log_std(raw_log_std, self.log_std_min, self.log_std_max)

    def functional(self, params: Sequence[Tensor]) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
        return partial(gaussian_apply, params, act_dim=self.act_dim, log_std_min=self.log_std_min,
                       log_std_max=self.log_std_max)


class TanhGaussianActor(GaussianHead):
    """``pi(.|s)``: a tanh-Gaussian policy (BRAC's ``ActorNetwork``; BRAC, CDC, the Fig. 5 KL signals).

    ``forward(obs)`` is the deterministic mode ``tanh(mean(s))``, what is
    evaluated, so the module drops into every evaluation path;
    :meth:`params` gives ``(mean, log_std)`` and :meth:`distribution` the
    :class:`~rkl_bench.algos.tanh_gaussian.TanhGaussian`.
    """

    def params(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        return super().forward(obs)

    def distribution(self, obs: Tensor, generator: torch.Generator | None = None,
                     clip_eps: float = CLIP_EPS) -> TanhGaussian:
        mean, log_std = self.params(obs)
        return TanhGaussian(mean, log_std, generator, clip_eps)

    def forward(self, obs: Tensor) -> Tensor:  # type: ignore[override]
        return torch.tanh(self.params(obs)[0])

    def head_into(self, z: Tensor, out: Tensor) -> None:
        """``forward``'s head of the MLP output ``z``, written into ``out`` (same kernels, for
        :mod:`rkl_bench.algos.inference`)."""
        torch.tanh(z[:, : self.act_dim], out=out)

    def functional(self, params: Sequence[Tensor]) -> "FunctionalTanhGaussianActor":  # type: ignore[override]
        return FunctionalTanhGaussianActor(super().functional(params))


class FunctionalTanhGaussianActor:
    """:class:`TanhGaussianActor` as a function of its parameters (``params``/``distribution``)."""

    def __init__(self, head: Callable[[Tensor], tuple[Tensor, Tensor]]) -> None:
        self.params = head

    def distribution(self, obs: Tensor, generator: torch.Generator | None = None,
                     clip_eps: float = CLIP_EPS) -> TanhGaussian:
        mean, log_std = self.params(obs)
        return TanhGaussian(mean, log_std, generator, clip_eps)


# ------------------------------------------------------- functional forms
def mlp_apply(params: Sequence[Tensor], x: Tensor, dnn: bool = True) -> Tensor:
    """:func:`mlp` as a function of its parameters ``[w0, b0, w1, b1, ...]`` (``nn.Linear`` layout)."""
    layers = len(params) // 2
    for i in range(layers):
        x = linear(x, params[2 * i], params[2 * i + 1], dnn)
        if i < layers - 1:
            x = torch.relu(x)
    return x


def actor_apply(params: Sequence[Tensor], obs: Tensor, max_action: float, dnn: bool = True) -> Tensor:
    """:class:`DeterministicActor` as a function of its parameters."""
    return max_action * torch.tanh(mlp_apply(params, obs, dnn))


def gaussian_apply(params: Sequence[Tensor], obs: Tensor, act_dim: int, dnn: bool = True,
                   log_std_min: float = LOG_STD_MIN, log_std_max: float = LOG_STD_MAX) -> tuple[Tensor, Tensor]:
    """:class:`GaussianHead` as a function of its parameters: ``(mean, log_std)``."""
    mean, raw_log_std = mlp_apply(params, obs, dnn).split(act_dim, dim=-1)
    return mean, squash_log_std(raw_log_std, log_std_min, log_std_max)


def critic_member_apply(params: Sequence[Tensor], x: Tensor, index: int, dnn: bool = True) -> Tensor:
    """Member ``index`` of an :class:`EnsembleCritic` on inputs ``x = cat(s, a)``: ``(B, 1)``."""
    layers = len(params) // 2
    for i in range(layers):
        weight, bias = params[2 * i], params[2 * i + 1]
        x = linear_in_out(x, weight[index], bias[index, 0], dnn)
        if i < layers - 1:
            x = torch.relu(x)
    return x


def critic_apply(params: Sequence[Tensor], obs: Tensor, action: Tensor, dnn: bool = True) -> Tensor:
    """:class:`EnsembleCritic` as a function of its parameters: ``(members, B, 1)``.

    Each member runs as its own chain of 2-D matrix multiplies (which is what
    :func:`~rkl_bench.algos.fast.linear` can send to oneDNN); without ``dnn``
    the members run batched as the module does.
    """
    x = torch.cat([obs, action], dim=-1)
    members = params[0].shape[0]
    if not dnn:
        h = x.unsqueeze(0).expand(members, -1, -1) if x.dim() == 2 else x
        layers = len(params) // 2
        for i in range(layers):
            h = torch.baddbmm(params[2 * i + 1], h, params[2 * i])
            if i < layers - 1:
                h = torch.relu(h)
        return h
    # (B, in): one input for every member; (members, B, in): each member its own, as the module.
    return torch.stack([critic_member_apply(params, x if x.dim() == 2 else x[m], m, dnn) for m in range(members)])


class Nets:
    """Named networks handed to a loss function: modules (plain path) or bound functional forms (fast path).

    A loss reads ``nets.actor(obs)``, ``nets.critic(obs, a)``, ... and never
    knows which it got. The learner core builds both views
    (:meth:`rkl_bench.algos.base.Updater.nets`): each module's ``functional(params)``
    is the fast-path stand-in for the module.
    """

    def __init__(self, **callables: Callable[..., Any]) -> None:
        self.__dict__.update(callables)

    def __getattr__(self, name: str) -> Any:  # only reached for names not given
        raise AttributeError(f"these networks have no {name!r}")


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging: target <- (1 - tau) * target + tau * source, in place."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


def hidden_sizes(hidden_dim: int, hidden_layers: int) -> tuple[int, ...]:
    """``(hidden_dim,) * hidden_layers``: the MLP shape from two scalar hyper-parameters."""
    return (int(hidden_dim),) * int(hidden_layers)


# ------------------------------------------------------------------ seeding
def derive_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for one named random stream of a run (``"init"``, ``"noise"``, ...).

    Different streams of the same run are independent of each other and of the
    training loop's sampler (seeded with the plain ``seed``), so e.g. target
    policy noise is not the same random numbers as the batch indices.
    """
    words = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(seed) >> 32 & 0xFFFFFFFF,
                                    zlib.crc32(stream.encode())]).generate_state(2)
    return (int(words[0]) << 31 | int(words[1]) >> 1) & 0x7FFF_FFFF_FFFF_FFFF


def make_generator(seed: int, stream: str, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with :func:`derive_seed` ``(seed, stream)``."""
    generator = torch.Generator(device=torch.device(device))
    generator.manual_seed(derive_seed(seed, stream))
    return generator


def load_generator_state(generator: torch.Generator, state: Tensor, seed: int, stream: str, step: int) -> bool:
    """Set ``generator`` to a saved ``state``; False when the state is another device type's.

    CPU and CUDA generators are different algorithms with differently sized
    states (Mersenne Twister, 5056 bytes; Philox, 16), so a checkpoint trained
    on a GPU cannot set a CPU generator (or the reverse). Such a generator is
    seeded instead from ``(seed, stream@step)`` (:func:`derive_seed`): the run goes
    on deterministically from the checkpoint, though not with the draws the
    other device would have made (its kernels round differently anyway).
    """
    state = state.to("cpu", torch.uint8)
    if state.numel() == generator.get_state().numel():
        generator.set_state(state)
        return True
    generator.manual_seed(derive_seed(seed, f"{stream}@{step}"))
    return False


@contextlib.contextmanager
def seeded_init(seed: int, stream: str = "init") -> Iterator[None]:
    """Build modules inside this block for a deterministic initialisation.

    The global torch RNG is seeded from ``(seed, stream)`` inside a forked RNG
    context, so the caller's global RNG state is untouched afterwards.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, stream))
        yield


def adam(params: Iterable[nn.Parameter], lr: float, fused: bool, device: str | torch.device) -> torch.optim.Adam:
    """``torch.optim.Adam(params, lr)``, fused into one kernel when asked and available.

    Fused Adam (CPU and CUDA in torch >= 2.4) does the same arithmetic in one
    pass over all parameters instead of one op per tensor, much faster on a
    small CPU than the default for-each implementation. Results
    agree with the unfused optimiser to float rounding (~1e-6 after hundreds of
    steps), not bit for bit, so the choice is part of a learner's config.
    """
    params = list(params)
    if fused and torch.device(device).type in ("cpu", "cuda"):
        return torch.optim.Adam(params, lr=lr, fused=True)
    return torch.optim.Adam(params, lr=lr)
