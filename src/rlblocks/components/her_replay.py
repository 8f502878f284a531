"""The ``replay`` module of goal envs with hindsight relabelling (a swap for :class:`Replay`)."""

from __future__ import annotations

from rlblocks.buffers.her import HindsightRelabel, Strategy
from rlblocks.buffers.replay import Batch, ReplayBuffer
from rlblocks.components.replay import Replay
from rlblocks.envs import make_env
from rlblocks.envs.goal import compute_reward_fn
from rlblocks.module import Closeable


class HindsightReplay(Replay, Closeable):
    """Stores goal-env transitions per key and samples them through the HER relabel stage
    (:class:`~rlblocks.buffers.her.HindsightRelabel`): indices of finished episodes → goals by
    ``strategy`` → n-step assembly with rewards recomputed by the env's ``compute_reward``.

    Args:
        buffer: a :class:`ReplayBuffer` of dict observations made with ``track_episodes=True``.
        env_id: the env whose ``compute_reward`` recomputes rewards (one env is made for it).
        strategy: goal sources' probabilities.
        terminal_on_success: reaching the (relabelled) goal is terminal (see :class:`HindsightRelabel`).
    """

    def __init__(self, buffer: ReplayBuffer, env_id: str, strategy: Strategy, terminal_on_success: bool = False):
        super().__init__(buffer)
        self._reward_env = make_env(env_id)
        self.stage = HindsightRelabel(strategy, compute_reward_fn(self._reward_env),
                                      terminal_on_success=terminal_on_success)

    def sample(self, batch_size: int) -> Batch:
        return self.stage.sample(self.buffer, batch_size)

    def close(self) -> None:
        self._reward_env.close()
