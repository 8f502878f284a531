"""Twin Delayed DDPG.

Fujimoto, van Hoof, Meger 2018, "Addressing Function Approximation Error in Actor-Critic
Methods", arXiv 1802.09477, Algorithm 1: clipped double-Q learning (Eq. 10: the target uses
the minimum of two target critics), target policy smoothing (Eq. 14: clipped Gaussian noise on
the target action) and delayed policy and target updates (every ``policy_delay`` critic steps).
The update is the shared deterministic actor-critic update in :mod:`rlblocks.algos.ddpg`; TD3
is its configuration. Defaults follow Stable-Baselines3's TD3 plus Gaussian exploration 0.1.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlblocks.algos.ddpg import DDPG, DDPGConfig
from rlblocks.config import param


@dataclass
class TD3Config(DDPGConfig):

    GROUP = "algo"  # the keys' module (rlblocks.config.key_groups), unless a key says otherwise
    num_critics: int = param(2, low=1, high=64, help="Q ensemble size (min over members in targets)")
    policy_delay: int = param(2, low=1, help="critic updates per actor/target update")
    target_noise: float = param(0.2, low=0.0, help="std of target policy smoothing noise")
    target_noise_clip: float = param(0.5, low=0.0, help="clip of target policy smoothing noise")


class TD3(DDPG):
    """TD3 = :class:`DDPG` with ``num_critics=2``, ``policy_delay=2``, ``target_noise=0.2``."""
