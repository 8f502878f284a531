"""Config keys of every algorithm that learns from a replay buffer (DDPG, TD3, SAC, DQN).

Buffer size, update schedule, target rate, n-step returns and hindsight relabelling: one place,
inherited by :class:`~rlblocks.algos.off_policy.OffPolicyConfig` and
:class:`~rlblocks.algos.dqn.DQNConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlblocks.buffers.her import parse_strategy
from rlblocks.config import BaseConfig, param
from rlblocks.errors import ConfigError


@dataclass
class ReplayConfig(BaseConfig):
    """Keys shared by the replay-based algorithms (defaults: Stable-Baselines3's)."""

    GROUP = "replay"  # the keys' module (rlblocks.config.key_groups), unless a key says otherwise

    buffer_size: int = param(1_000_000, low=1, help="replay buffer capacity (transitions)")
    batch_size: int = param(256, low=1, help="minibatch size per gradient step")
    learning_starts: int = param(100, group="explore", low=0, help="env steps of uniform random actions before updates")
    train_freq: int = param(1, group="algo", low=1, help="vector-env steps between update rounds")
    gradient_steps: int = param(1, group="algo", low=1, help="gradient steps per update round")
    tau: float = param(0.005, group="algo", low=0.0, high=1.0, low_open=True, help="Polyak rate of the target networks")
    n_step: int = param(1, low=1, high=100, help="steps in the n-step return target")
    her: str = param("future_4", help="goal envs only: hindsight relabelling strategy (future_k, final, episode_k, "
                     "futureactual_f_a, rfaab_r_f_a_ach_b) or none")
    her_terminal: bool = param(False, help="goal envs: a step that reaches its (relabelled) goal is terminal (mrl's "
                               "first_visit_succ), for envs that end at the goal (BitFlip); false: never terminal")
    her_clip_target: bool = param(False, help="goal envs: clip TD targets to [-1/(1-gamma), 0] (sparse -1/0 rewards)")

    #: keys that act only on goal envs (dict observations); a new run on another env refuses values other
    #: than their defaults instead of recording settings that do nothing
    GOAL_KEYS = ("her", "her_terminal", "her_clip_target")

    def check(self) -> None:
        if self.batch_size > self.buffer_size:
            raise ConfigError(f"batch_size={self.batch_size} is larger than buffer_size={self.buffer_size}; "
                              "lower batch_size or raise buffer_size")
        if self.buffer_size < self.num_envs:
            raise ConfigError(f"buffer_size={self.buffer_size} must be >= num_envs={self.num_envs}")
        parse_strategy(self.her)  # raises ConfigError naming the accepted forms
        if self.her_clip_target and self.gamma >= 1.0:
            raise ConfigError("her_clip_target=true clips to [-1/(1-gamma), 0] and needs gamma < 1")
