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

``ppo-merl`` = PPO (``algos/ppo.py``) + the :class:`~rlblocks.algos.merl_heads.MERLHeads`
auxiliary-loss module (``algos/auxiliary.py``), the same module ``--set merl=true`` adds to
DDPG/TD3/SAC.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlblocks.algos.merl_heads import MERLHeads, MERLKeys, cosine_distance, future_obs_targets
from rlblocks.algos.ppo import PPOConfig
from rlblocks.algos.ppo_modules import ppo_modules
from rlblocks.config import param
from rlblocks.errors import ConfigError
from rlblocks.module import Module

__all__ = ["MERLConfig", "MERLHeads", "cosine_distance", "future_obs_targets", "merl_modules"]


@dataclass
class MERLConfig(PPOConfig, MERLKeys):
    """PPO's keys plus the auxiliary-loss weights (defaults: the authors' ``ppo2_merl``)."""

    GROUP = "aux"  # the keys' module (rlblocks.config.key_groups), unless a key says otherwise

    nfs: int = param(1, low=1, help="steps ahead the future-state head predicts")

    def check(self) -> None:
        super().check()
        if self.nfs > self.n_steps:
            raise ConfigError(f"nfs={self.nfs} must be <= n_steps={self.n_steps} (a rollout's length)")


def merl_modules(env, cfg: MERLConfig, device: torch.device, total_steps: int) -> list[Module]:
    """PPO's learner modules with :class:`MERLHeads` as ``aux``."""
    return ppo_modules(env, cfg, device, total_steps,
                       aux_factory=lambda feature_dim, obs_dim, dev: MERLHeads(
                           feature_dim, obs_dim, cfg.ve_coef, cfg.fs_coef, cfg.nfs, device=dev))
