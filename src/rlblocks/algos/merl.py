"""``ppo-merl``: PPO with MERL's auxiliary heads on the critic's trunk (Flet-Berliac & Preux 2019,
"MERL: Multi-Head Reinforcement Learning"; heads and losses in ``algos/merl_heads.py``).

Total loss = PPO's loss + ``ve_coef`` · L_VE + ``fs_coef`` · L_FS, one optimiser step for all.
The VE target is ``1 - Var[R - V_old] / Var[R]`` of the minibatch (``R`` the GAE returns,
``V_old`` the values at collection time); the FS head predicts the observation ``nfs`` steps
ahead.

The authors' code paired each sample with the next row of the already shuffled minibatch, which
is an unrelated state. Here the target is the true (normalised) observation ``nfs`` steps later
in the same env's trajectory, and pairs that would cross an episode end are masked out. With
``nfs = 1`` the target of an episode's last step is its true final observation.

``ppo-merl`` = PPO (``algos/ppo.py``) + the ``aux`` module defined here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rlblocks.algos.merl_heads import AuxHeads, cosine_distance, future_obs_targets, variance_explained
from rlblocks.algos.ppo import PPOConfig, ppo_modules
from rlblocks.buffers.rollout import RolloutBatch, RolloutBuffer
from rlblocks.config import param
from rlblocks.errors import ConfigError
from rlblocks.metrics import MetricSums
from rlblocks.module import Module

__all__ = ["MERLConfig", "MERLHeads", "cosine_distance", "future_obs_targets", "merl_modules",
           "variance_explained"]


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
        self.heads = AuxHeads(feature_dim, obs_dim).to(device)
        self._target = self._valid = None
        self.metrics = MetricSums(self.metric_names)

    def parameters(self) -> list[nn.Parameter]:
        return list(self.heads.parameters())

    def prepare(self, buf: RolloutBuffer) -> None:
        target, valid = future_obs_targets(buf.next_obs, buf.terminated, buf.truncated, self.cfg.nfs)
        self._target, self._valid = target.view(buf.size, -1), valid.view(buf.size)

    def loss(self, b: RolloutBatch, features: torch.Tensor) -> torch.Tensor:
        ve_target = variance_explained(b.ret, b.value)  # no gradient: returns and old values are data
        ve_loss, fs_loss = self.heads.losses(features, ve_target, self._target[b.index], self._valid[b.index])
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
