"""MERL's auxiliary heads and losses (Flet-Berliac & Preux 2019, "MERL: Multi-Head Reinforcement
Learning"): the :class:`MERLHeads` auxiliary-loss module (``algos/auxiliary.py``), the same module
for ``ppo-merl`` (``algos/merl.py``) and for ``--set merl=true`` of DDPG/TD3/SAC (added by the
registry beside the critic).

Two linear heads sit beside the value head on the critic's last hidden layer:

- **VE** (variance explained) predicts ``VE = 1 - Var[R - V] / Var[R]`` of the current minibatch,
  one scalar broadcast to every sample; loss ``mean((ve_head(s) - VE)^2)``. For PPO ``R`` is the
  GAE return and ``V`` the value at collection time; for a Q critic ``R`` is the TD target and
  ``V`` the critic's (detached) prediction ``Q(s, a)``, as in the authors' DDPG variant.
- **FS** (future state) predicts an observation ahead; loss is the cosine distance
  ``1 - cos(fs_head(s), s_future)`` over valid pairs. For PPO ``s_future`` is the observation
  ``nfs`` steps later in the same env's trajectory (pairs that would cross an episode end are
  masked out); for a replayed transition it is its next observation (the true final one at an
  episode end, so a pair never crosses an episode).

Both are computed per critic member when the critic is an ensemble (features ``[E, B, H]``) and
summed over members, like the critic loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rlblocks.algos.auxiliary import AuxiliaryLoss, AuxInputs
from rlblocks.config import param
from rlblocks.metrics import MetricSums, explained_variance
from rlblocks.module import MetricsSource
from rlblocks.nets.distributions import orthogonal_init
from rlblocks.nets.ensemble import EnsembleLinear


@dataclass
class MERLKeys:
    """MERL's loss weights, one declaration for PPO+MERL (:class:`~rlblocks.algos.merl.MERLConfig`) and
    DDPG/TD3/SAC with ``merl=true`` (:class:`~rlblocks.algos.off_policy.OffPolicyConfig`); defaults:
    the authors' ``ppo2_merl``."""

    GROUP = "aux"  # the keys' module (rlblocks.config.key_groups)

    ve_coef: float = param(0.5, low=0.0, help="MERL: weight of the variance-explained head's loss")
    fs_coef: float = param(0.01, low=0.0, help="MERL: weight of the future-state head's cosine loss")

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


class MERLHeads(AuxiliaryLoss, MetricsSource):
    """The ``aux`` module: MERL's VE and FS heads on the critic's features, weighted loss
    ``ve_coef · L_VE + fs_coef · L_FS``; logs ``ve_loss`` and ``fs_loss``.

    Args:
        feature_dim: width ``H`` of the critic's last hidden layer.
        obs_dim: observation size ``D`` (the FS head's output).
        ve_coef, fs_coef: weights of the two losses.
        nfs: steps ahead the FS head predicts in a rollout (:meth:`prepare`); a replayed
            transition has only its next observation (``nfs = 1``).
        ensemble_size: ``E`` for an ensemble critic (one pair of heads per member, features
            ``[E, B, H]``); ``None`` for one critic (features ``[B, H]``, orthogonal init as PPO's heads).
        device: where the heads live.
    """

    metric_names = ("ve_loss", "fs_loss")
    needs_next_obs = True

    def __init__(self, feature_dim: int, obs_dim: int, ve_coef: float, fs_coef: float, nfs: int = 1,
                 ensemble_size: int | None = None, device: torch.device | str = "cpu", name: str | None = None):
        super().__init__(name)
        self.ve_coef, self.fs_coef, self.nfs = ve_coef, fs_coef, nfs
        self.heads = AuxHeads(feature_dim, obs_dim, ensemble_size).to(device)
        self._target = self._valid = None
        self.metrics = MetricSums(self.metric_names)

    def parameters(self) -> list[nn.Parameter]:
        return list(self.heads.parameters())

    def prepare(self, rollout) -> None:
        """FS targets ``s_{t+nfs}`` of every rollout row and the mask of pairs inside one episode."""
        target, valid = future_obs_targets(rollout.next_obs, rollout.terminated, rollout.truncated, self.nfs)
        self._target, self._valid = target.view(rollout.size, -1), valid.view(rollout.size)

    def loss(self, inputs: AuxInputs) -> torch.Tensor:
        ve_target = explained_variance(inputs.values, inputs.returns, min_var=1e-8)  # no gradient: targets and predictions are data
        if inputs.index is None:  # a replayed transition: its next observation, always in the same episode
            fs_target, fs_mask = inputs.next_obs, None
        else:  # rollout rows: the targets prepare() built for them
            fs_target, fs_mask = self._target[inputs.index], self._valid[inputs.index]
        ve_loss, fs_loss = self.heads.losses(inputs.features, ve_target, fs_target, fs_mask)
        self.metrics.add((ve_loss, fs_loss))
        return self.ve_coef * ve_loss + self.fs_coef * fs_loss

    def pop_metrics(self) -> dict[str, float]:
        return self.metrics.pop()

    def state_dict(self):
        return {"heads": self.heads.state_dict(), "metrics": self.metrics.state_dict()}

    def load_state_dict(self, state):
        self.heads.load_state_dict(state["heads"])
        self.metrics.load_state_dict(state.get("metrics"))
