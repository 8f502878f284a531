"""MERL's auxiliary heads and losses (Flet-Berliac & Preux 2019, "MERL: Multi-Head Reinforcement
Learning"), shared by ``ppo-merl`` (``algos/merl.py``) and the ``merl`` option of the off-policy
critics (DDPG/TD3/SAC, ``algos/off_policy.py``).

Two linear heads sit beside the value head on the critic's last hidden layer:

- **VE** (variance explained) predicts ``VE = 1 - Var[R - V] / Var[R]`` of the current minibatch,
  one scalar broadcast to every sample; loss ``mean((ve_head(s) - VE)^2)``. For PPO ``R`` is the
  GAE return and ``V`` the value at collection time; for a Q critic ``R`` is the TD target and
  ``V`` the critic's (detached) prediction ``Q(s, a)``, as in the authors' DDPG variant.
- **FS** (future state) predicts an observation ahead; loss is the cosine distance
  ``1 - cos(fs_head(s), s_future)`` over valid pairs.

Both are computed per critic member when the critic is an ensemble (features ``[E, B, H]``) and
summed over members, like the critic loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rlblocks.nets.distributions import orthogonal_init
from rlblocks.nets.ensemble import EnsembleLinear


def variance_explained(returns: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
    """The VE target ``1 - Var[R - V] / Var[R]`` (population variances over the last dim).

    Shapes: ``returns [B]``, ``predictions [..., B]`` → ``[...]`` (0-d for ``[B]``).
    """
    return 1.0 - (returns - predictions).var(-1, unbiased=False) / returns.var(unbiased=False).clamp_min(1e-8)


def future_obs_targets(next_obs: torch.Tensor, terminated: torch.Tensor, truncated: torch.Tensor,
                       nfs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets ``s_{t+nfs}`` of a ``[T, N]`` rollout and the mask of valid pairs.

    ``next_obs[t]`` is the observation after step ``t`` (the true final one at an episode end),
    so ``s_{t+nfs} = next_obs[t + nfs - 1]``; the pair is valid if no episode ends at steps
    ``t .. t+nfs-2`` and ``t + nfs - 1 < T``.

    Shapes: ``next_obs [T, N, D]``, ``terminated, truncated [T, N]`` → ``([T, N, D], [T, N] bool)``.
    """
    T = next_obs.shape[0]
    m = T - nfs + 1  # steps that have a target inside the rollout
    target = torch.zeros_like(next_obs)
    valid = torch.zeros(terminated.shape, dtype=torch.bool, device=next_obs.device)
    if m > 0:
        target[:m] = next_obs[nfs - 1:]
        done = terminated | truncated
        ok = torch.ones_like(valid[:m])
        for k in range(nfs - 1):
            ok &= ~done[k:k + m]
        valid[:m] = ok
    return target, valid


def cosine_distance(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``1 - cos(pred, target)`` averaged over the rows where ``mask`` holds (0 if none), summed
    over any leading (ensemble) dims.

    Shapes: ``pred [..., B, D]``, ``target [B, D]``, ``mask [B]`` bool or ``None`` (all valid).
    """
    dist = 1.0 - F.cosine_similarity(pred, target, dim=-1, eps=1e-8)
    if mask is None:
        return dist.mean(-1).sum()
    maskf = mask.to(dist.dtype)
    return ((dist * maskf).sum(-1) / maskf.sum().clamp_min(1.0)).sum()


class AuxHeads(nn.Module):
    """The VE and FS heads on critic features, one pair per critic member if ``ensemble_size``.

    Shapes: ``features [B, H]`` (or ``[E, B, H]`` with ``ensemble_size=E``); ``ve_target``
    ``[]`` (or ``[E]``); ``fs_target [B, D]``; ``fs_mask [B]`` or ``None``.
    """

    def __init__(self, feature_dim: int, obs_dim: int, ensemble_size: int | None = None):
        super().__init__()
        if ensemble_size is None:
            self.ve = orthogonal_init(nn.Linear(feature_dim, 1), 1.0)
            self.fs = orthogonal_init(nn.Linear(feature_dim, obs_dim), 1.0)
        else:
            self.ve = EnsembleLinear(ensemble_size, feature_dim, 1)
            self.fs = EnsembleLinear(ensemble_size, feature_dim, obs_dim)

    def losses(self, features: torch.Tensor, ve_target: torch.Tensor, fs_target: torch.Tensor,
               fs_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ve_loss, fs_loss)``, each summed over critic members."""
        ve_pred = self.ve(features).squeeze(-1)  # [..., B]
        ve_loss = (ve_pred - ve_target.unsqueeze(-1)).square().mean(-1).sum()
        return ve_loss, cosine_distance(self.fs(features), fs_target, fs_mask)
