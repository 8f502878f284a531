"""Policies for continuous actions in the normalised box ``[-1, 1]^act_dim``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rlblocks.nets.mlp import mlp

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # SAC reference implementation (Haarnoja et al.) bounds
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
_LOG2 = math.log(2.0)


class DeterministicActor(nn.Module):
    """``a = tanh(mu(s))`` (DDPG, Lillicrap et al. 2015, arXiv 1509.02971).

    Shapes: ``obs [B, obs_dim]`` → ``[B, act_dim]`` in [-1, 1].
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: list[int], layer_norm: bool = False):
        super().__init__()
        self.net = mlp(obs_dim, hidden_sizes, act_dim, layer_norm=layer_norm)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))


class SquashedGaussianActor(nn.Module):
    """Tanh-squashed diagonal Gaussian (SAC, Haarnoja et al. 2018, arXiv 1801.01290, App. C).

    ``u ~ N(mu(s), sigma(s))``, ``a = tanh(u)``,
    ``log pi(a|s) = log N(u) - sum log(1 - tanh(u)^2)`` (Eq. 21), with the stable form
    ``log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))``.

    This is the exact correction, as softlearning's ``SquashBijector`` (the code of arXiv
    1812.05905) and Spinning Up. Stable-Baselines3 (``common/distributions.py``,
    ``SquashedDiagGaussianDistribution.log_prob``) and the first SAC code (haarnoja/sac,
    ``EPS = 1e-6``) use ``log(1 - tanh(u)^2 + 1e-6)`` instead: log-probs lower by
    ``sum_j log(1 + 1e-6 / (1 - tanh(u_j)^2))`` (≥ 1e-6 per dimension), and once tanh saturates
    in float32 (|u| ≳ 9) a constant ``log 1e-6`` with zero gradient, where the exact term keeps
    the slope ``-2 sign(u)`` that pulls saturated pre-activations back. Kept on purpose (the
    paper's formula); it is the one difference of the SAC update from SB3's
    (``tests/test_sb3_equivalence.py``).
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: list[int], layer_norm: bool = False):
        super().__init__()
        self.net = mlp(obs_dim, hidden_sizes, 2 * act_dim, layer_norm=layer_norm)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(mean, log_std)``, each ``[B, act_dim]``."""
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised sample. Returns ``(action [B, act_dim], log_prob [B])``."""
        mean, log_std = self(obs)
        eps = torch.randn_like(mean)
        u = mean + log_std.exp() * eps
        log_prob = (-0.5 * eps.square() - log_std - _HALF_LOG_2PI).sum(-1)
        log_prob = log_prob - (2.0 * (_LOG2 - u - F.softplus(-2.0 * u))).sum(-1)
        return torch.tanh(u), log_prob

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic action ``tanh(mean)`` for evaluation."""
        return torch.tanh(self(obs)[0])
