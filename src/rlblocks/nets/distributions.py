"""Stochastic policy heads for on-policy actor-critics (PPO), with OpenAI baselines' initialisation.

Each head maps trunk features ``[B, in_dim]`` to an action distribution and offers the three
operations PPO needs: :meth:`sample_action` (acting), :meth:`log_prob_entropy` (scoring and
the update) and :meth:`mode` (greedy evaluation); :meth:`sample` also returns the log-prob.
Log-probabilities are written out in closed form rather than through ``torch.distributions``
(no argument validation, fewer kernels per call).

Initialisation follows baselines (Dhariwal et al. 2017, ``common/distributions.py``): the output
layer is orthogonal with gain 0.01 and zero bias, so the initial policy is nearly uniform
(Categorical) or centred at 0 (Gaussian); the Gaussian log-std is a state-independent parameter
initialised at 0 (std 1).
"""

from __future__ import annotations

import math

import torch
from torch import nn

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_HALF_LOG_2PI_E = 0.5 * math.log(2.0 * math.pi * math.e)


def orthogonal_init(layer: nn.Linear, gain: float) -> nn.Linear:
    """Orthogonal weights with ``gain`` and zero bias (baselines ``ortho_init``); returns ``layer``."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class DiagGaussianHead(nn.Module):
    """``a ~ N(mean(s), diag(exp(log_std))^2)`` with a state-independent ``log_std``.

    Actions are unbounded samples: the caller clips them to the action box when sending them to
    the env, and keeps the raw sample for log-probabilities.

    Shapes: ``features [B, in_dim]``, ``action [B, act_dim]``; log-probs and entropies ``[B]``.
    """

    discrete = False

    def __init__(self, in_dim: int, act_dim: int, init_scale: float = 0.01, log_std_init: float = 0.0):
        super().__init__()
        self.mean = orthogonal_init(nn.Linear(in_dim, act_dim), init_scale)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std_init)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mean(features)

    def sample(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(action [B, act_dim], log_prob [B])``."""
        mean = self.mean(features)
        eps = torch.randn_like(mean)
        action = mean + self.log_std.exp() * eps
        log_prob = (-0.5 * eps.square() - self.log_std - _HALF_LOG_2PI).sum(-1)
        return action, log_prob

    def sample_action(self, features: torch.Tensor) -> torch.Tensor:
        """``a ~ N(mean, std^2)``, ``[B, act_dim]``, without its log-prob (fewer ops when acting)."""
        mean = self.mean(features)
        return torch.addcmul(mean, self.log_std.exp(), torch.randn_like(mean))

    def log_prob_entropy(self, features: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``log N(action; mean, std)`` summed over dims, and the entropy ``sum(log_std + ½log 2πe)``."""
        mean = self.mean(features)
        z = (action - mean) * torch.exp(-self.log_std)
        log_prob = (-0.5 * z.square() - self.log_std - _HALF_LOG_2PI).sum(-1)
        entropy = (self.log_std + _HALF_LOG_2PI_E).sum().expand(log_prob.shape[0])
        return log_prob, entropy

    def mode(self, features: torch.Tensor) -> torch.Tensor:
        return self.mean(features)


class CategoricalHead(nn.Module):
    """``a ~ Categorical(softmax(logits(s)))``.

    Shapes: ``features [B, in_dim]``, ``action [B]`` (int64); log-probs and entropies ``[B]``.
    """

    discrete = True

    def __init__(self, in_dim: int, n_actions: int, init_scale: float = 0.01):
        super().__init__()
        self.logits = orthogonal_init(nn.Linear(in_dim, n_actions), init_scale)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.logits(features)

    def sample(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(action [B] int64, log_prob [B])``."""
        log_p = torch.log_softmax(self.logits(features), -1)
        action = torch.multinomial(log_p.exp(), 1)
        return action.squeeze(-1), log_p.gather(-1, action).squeeze(-1)

    def sample_action(self, features: torch.Tensor) -> torch.Tensor:
        """``a ~ Categorical``, ``[B]`` int64, without its log-prob."""
        return torch.multinomial(torch.softmax(self.logits(features), -1), 1).squeeze(-1)

    def log_prob_entropy(self, features: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_p = torch.log_softmax(self.logits(features), -1)
        log_prob = log_p.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)
        entropy = -(log_p.exp() * log_p).sum(-1)
        return log_prob, entropy

    def mode(self, features: torch.Tensor) -> torch.Tensor:
        return self.logits(features).argmax(-1)
