"""Config keys of the ``target`` module and the world model (value expansion: MVE, STEVE).

Inherited by :class:`~rlblocks.algos.off_policy.OffPolicyConfig`: ``target=td`` (the default)
builds the TD(0)/n-step target and no world model; the other targets add a ``world_model``
module (:mod:`rlblocks.algos.world_model_learner`) and swap the ``target`` module
(:mod:`rlblocks.algos.value_expansion`).

World-model sizes: the paper's (Buckman et al. 2018, arXiv 1807.01675, Appendix: 4 members,
dynamics 8 × 512, reward/termination 4 × 128, batch 512, 10k pre-training updates) are
``wm_dynamics_hidden=[512]*8 wm_reward_hidden=[128]*4 wm_batch_size=512 wm_pretrain_updates=10000``.
CPU defaults: 4 members, dynamics 3 × 256, reward/termination 2 × 128, 64 rows per member, 1,000
pre-training updates. Measured on Hopper-v5 shapes (obs 11, act 3), SAC 256×256, batch 256, one
CPU thread: one world-model step costs 5.7 ms with the defaults against 277 ms with the paper's
sizes (48x; a 100k-step run would spend 7.7 hours in it alone); per SAC update, TD(0) 10.7 ms
(93 updates/s), STEVE H=3 64 ms (15.5/s, 45 ms of it the target: 4 rollouts × 256 examples
through policy, critics and models), MVE 35 ms (28.5/s), STEVE with the paper's sizes 479 ms.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlblocks.algos.replay_config import ReplayConfig
from rlblocks.config import param
from rlblocks.errors import ConfigError

TARGETS = ("td", "mve", "mean_k", "td_lambda", "steve", "steve_cov")


@dataclass
class ExpansionConfig(ReplayConfig):

    GROUP = "target"  # the keys' module (rlblocks.config.key_groups), unless a key says otherwise
    target: str = param("td", choices=TARGETS, help="value target: td (TD(0)/n-step), mve (TD-k trick), "
                         "mean_k, td_lambda, steve, steve_cov (model-based value expansion)")
    horizon: int = param(3, low=0, high=50, help="model rollout steps H of the expansion targets")
    td_lambda: float = param(0.25, low=0.0, high=1.0, help="lambda of target=td_lambda")
    q_samples: str = param("min", choices=("min", "members"), help="expansion targets: each critic member is "
                           "a sample (members; the paper's DDPG) or the min over members is one sample (min; "
                           "keeps TD3/SAC's clipped double Q)")
    wm_ensemble: int = param(4, group="world_model", low=1, high=64, help="world model: members of each ensemble")
    wm_dynamics_hidden: list = param([256, 256, 256], group="world_model", help="world model: dynamics MLP widths (paper: 8 x 512)")
    wm_reward_hidden: list = param([128, 128], group="world_model", help="world model: reward/termination widths (paper: 4 x 128)")
    wm_lr: float = param(3e-4, group="world_model", low=0.0, high=1.0, low_open=True, help="world model Adam learning rate")
    wm_weight_decay: float = param(1e-4, group="world_model", low=0.0, help="world model L2 (Adam weight decay)")
    wm_batch_size: int = param(64, group="world_model", low=1, help="world model: rows per member per update")
    wm_pretrain_updates: int = param(1000, group="world_model", low=0, help="world model updates before the first value update")
    wm_updates_per_step: int = param(1, group="world_model", low=0, help="world model updates per value update")

    def check(self) -> None:
        super().check()
        if self.target == "mve" and self.horizon == 0:
            raise ConfigError("target=mve needs horizon >= 1 (horizon=0 is target=td)")
