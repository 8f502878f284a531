"""MERL auxiliary heads on the critic's trunk (Flet-Berliac & Preux 2019, "MERL: Multi-Head
Reinforcement Learning").

Two linear heads sit beside the value head on the critic's last hidden layer and add
self-supervised loss terms to the actor-critic's loss (one optimiser step for all):

- **VE** (variance explained): predicts ``VE = 1 - Var[R - V_old] / Var[R]`` of the current
  minibatch (``R`` the returns, ``V_old`` the values at collection time), one scalar broadcast to
  every sample; loss ``mean((ve_head(s) - VE)^2)``, weight ``ve_coef``.
- **FS** (future state): predicts the observation ``nfs`` steps ahead; loss is the cosine
  distance ``1 - cos(fs_head(s_t), s_{t+nfs})``, weight ``fs_coef``.

The authors' code paired each sample with the next row of the already shuffled minibatch, which
is an unrelated state. Here the target is the true (normalised) observation ``nfs`` steps later
in the same env's trajectory, and pairs that would cross an episode end are masked out. With
``nfs = 1`` the target of an episode's last step is its true final observation.

``ppo-merl`` = PPO (``algos/ppo.py``) + the ``aux`` module defined here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rlblocks.algos.ppo import PPOConfig, ppo_modules
from rlblocks.buffers.rollout import RolloutBatch, RolloutBuffer
from rlblocks.config import param
from rlblocks.errors import ConfigError
from rlblocks.metrics import MetricSums
from rlblocks.module import Module
from rlblocks.nets.distributions import orthogonal_init


@dataclass
class MERLConfig(PPOConfig):
    """PPO's keys plus the auxiliary-loss weights (defaults: the authors' ``ppo2_merl``)."""

    ve_coef: float = param(0.5, low=0.0, help="weight of the variance-explained head's loss")
    fs_coef: float = param(0.01, low=0.0, help="weight of the future-state head's cosine loss")
    nfs: int = param(1, low=1, help="steps ahead the future-state head predicts")

    def check(self) -> None:
        super().check()
        if self.nfs > self.n_steps:
            raise ConfigError(f"nfs={self.nfs} must be <= n_steps={self.n_steps} (a rollout's length)")


def variance_explained(returns: torch.Tensor, old_values: torch.Tensor) -> torch.Tensor:
    """The VE target ``1 - Var[R - V_old] / Var[R]`` (population variances), a 0-d tensor."""
    return 1.0 - (returns - old_values).var(unbiased=False) / returns.var(unbiased=False).clamp_min(1e-8)


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


def cosine_distance(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``1 - cos(pred, target)`` over the rows where ``mask`` holds (0 if none)."""
    dist = 1.0 - F.cosine_similarity(pred, target, dim=-1, eps=1e-8)
    maskf = mask.to(dist.dtype)
    return (dist * maskf).sum() / maskf.sum().clamp_min(1.0)


class MERLHeads(Module):
    """The ``aux`` module: VE and FS heads on critic features, called by the ``algo`` module.

    Protocol with the actor-critic update: :meth:`parameters` join its optimiser;
    :meth:`prepare` is called once per rollout (after GAE); :meth:`loss` once per minibatch with
    the critic's trunk features ``[B, feature_dim]``, returning the weighted auxiliary loss.
    """

    name = "aux"
    requires = ("policy",)
    metric_names = ("ve_loss", "fs_loss")
    needs_next_obs = True  # asks the rollout buffer to keep next observations

    def __init__(self, feature_dim: int, obs_dim: int, cfg: MERLConfig, device: torch.device):
        super().__init__()
        self.cfg = cfg
        self.heads = nn.ModuleDict({"ve": orthogonal_init(nn.Linear(feature_dim, 1), 1.0),
                                    "fs": orthogonal_init(nn.Linear(feature_dim, obs_dim), 1.0)}).to(device)
        self._target = self._valid = None
        self.metrics = MetricSums(self.metric_names)

    def parameters(self) -> list[nn.Parameter]:
        return list(self.heads.parameters())

    def prepare(self, buf: RolloutBuffer) -> None:
        target, valid = future_obs_targets(buf.next_obs, buf.terminated, buf.truncated, self.cfg.nfs)
        self._target, self._valid = target.view(buf.size, -1), valid.view(buf.size)

    def loss(self, b: RolloutBatch, features: torch.Tensor) -> torch.Tensor:
        ve_target = variance_explained(b.ret, b.value)  # no gradient: returns and old values are data
        ve_loss = (self.heads["ve"](features).squeeze(-1) - ve_target).square().mean()
        fs_loss = cosine_distance(self.heads["fs"](features), self._target[b.index], self._valid[b.index])
        self.metrics.add((ve_loss, fs_loss))
        return self.cfg.ve_coef * ve_loss + self.cfg.fs_coef * fs_loss

    def pop_metrics(self) -> dict[str, float]:
        return self.metrics.pop()

    def state_dict(self):
        return {"heads": self.heads.state_dict(), "metrics": self.metrics.state_dict()}

    def load_state_dict(self, state):
        self.heads.load_state_dict(state["heads"])
        self.metrics.load_state_dict(state.get("metrics"))


def merl_modules(env, cfg: MERLConfig, device: torch.device, total_steps: int) -> list[Module]:
    """PPO's learner modules with :class:`MERLHeads` as ``aux``."""
    return ppo_modules(env, cfg, device, total_steps,
                       aux_factory=lambda feature_dim, obs_dim, dev: MERLHeads(feature_dim, obs_dim, cfg, dev))
