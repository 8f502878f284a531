"""Config keys of the recurrent off-policy agents (``--set arch=lstm|gru`` for DDPG, TD3 and SAC).

Inherited by :class:`~rlblocks.algos.off_policy.OffPolicyConfig`; ``arch=ff`` (the default) leaves
the feed-forward agents as they are. The keys ``arch``, ``rnn_size``, ``rnn_layers`` and ``seq_len``
are recurrent PPO's (:class:`~rlblocks.algos.ppo.PPOConfig`); ``rnn_inputs`` and ``burn_in`` are the
off-policy ones. With a recurrent ``arch`` the replay batch is ``batch_size`` sequences of ``seq_len``
steps (``batch_size × seq_len`` trained steps at most), see :mod:`rlblocks.buffers.sequence`.

Defaults follow Ni, Eysenbach, Salakhutdinov 2022 ("Recurrent Model-Free RL Can Be a Strong Baseline
for Many POMDPs", arXiv 2110.05038): observation + previous action + previous reward inputs,
128 units, 64-step windows from the zero state without burn-in.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlblocks.algos.expansion_config import ExpansionConfig
from rlblocks.config import param
from rlblocks.errors import ConfigError
from rlblocks.nets.history import INPUTS
from rlblocks.nets.recurrent import ARCHS


@dataclass
class SequenceConfig(ExpansionConfig):

    GROUP = "encoder"  # the keys' module (rlblocks.config.key_groups), unless a key says otherwise
    arch: str = param("ff", choices=ARCHS, help="feed-forward, or an LSTM/GRU history encoder for each of actor and "
                      "critic (batch_size then counts sequences)")
    rnn_size: int = param(128, low=1, help="hidden units of each recurrent cell (arch=lstm|gru)")
    rnn_layers: int = param(1, low=1, high=8, help="stacked layers of each recurrent cell (arch=lstm|gru)")
    rnn_inputs: str = param("obs_action_reward", choices=INPUTS, help="what the cells read (arch=lstm|gru): the "
                            "observation, plus the previous action, plus the previous reward")
    seq_len: int = param(64, group="replay", low=1, help="trained steps per replayed sequence (arch=lstm|gru)")
    burn_in: int = param(0, group="replay", low=0, help="steps before each sequence run without gradient from the zero state to "
                         "warm the hidden state (R2D2; arch=lstm|gru)")

    def check(self) -> None:
        super().check()
        if self.arch == "ff":
            return
        if self.target != "td":
            raise ConfigError(f"target={self.target} is feed-forward only; arch={self.arch} uses target=td")
        if self.n_step != 1:
            raise ConfigError(f"n_step={self.n_step} is feed-forward only; arch={self.arch} uses n_step=1")
