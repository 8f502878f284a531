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
from torch.autograd.function import once_differentiable

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_HALF_LOG_2PI_E = 0.5 * math.log(2.0 * math.pi * math.e)


def orthogonal_init(layer: nn.Linear, gain: float) -> nn.Linear:
    """Orthogonal weights with ``gain`` and zero bias (baselines ``ortho_init``); returns ``layer``."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class _GaussianLogProb(torch.autograd.Function):
    @staticmethod
    def forward(ctx, mean, log_std, action):
        inv_std = log_std.neg().exp_()
        z = (action - mean).mul_(inv_std)
        log_prob = z.square().sum(-1).mul_(-0.5).sub_(log_std.sum() + log_std.shape[-1] * _HALF_LOG_2PI)
        ctx.save_for_backward(z, inv_std)
        return log_prob

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        z, inv_std = ctx.saved_tensors
        grad_z = grad.unsqueeze(-1) * z  # d log_prob / d z = -z, and dz/d mean = -1/std
        grad_mean = grad_z * inv_std
        grad_log_std = (grad_z * z).sum(0) - grad.sum()  # d/d log_std_j = z_j^2 - 1
        grad_action = -grad_mean if ctx.needs_input_grad[2] else None
        return grad_mean, grad_log_std, grad_action


def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """``log N(action; mean, diag(exp(log_std))^2)`` summed over the last dim, as one autograd node.

    ``-½ sum_j z_j^2 - sum_j log_std_j - (d/2) log 2π`` with ``z = (action - mean) / std``; the
    gradients are written out (``d/d mean = z / std``, ``d/d log_std = z^2 - 1``) because through
    autograd the ~10 elementwise ops and their backward cost more than the policy head's matmul
    at PPO's minibatch sizes on CPU.

    Shapes: ``mean [B, d]``, ``log_std [d]``, ``action [B, d]`` → ``[B]``.
    """
    return _GaussianLogProb.apply(mean, log_std, action)


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
        log_prob = gaussian_log_prob(self.mean(features), self.log_std, action)
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
