"""Register a variant of a gymnasium task: the base task's spec plus one more wrapper.

``gym.make(new_id)`` then builds the base env with its usual wrappers (time limit, order
enforcing, env checker) and the extra wrapper outside them, so ``env.unwrapped`` and the time
limit are where :class:`rlblocks.envs.snapshot.Snapshot` expects them.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import WrapperSpec


def register_variant(new_id: str, base_id: str, wrapper: str, entry_point: str, kwargs: dict[str, Any]) -> None:
    """Register ``new_id`` as ``base_id`` wrapped by ``entry_point(env, **kwargs)`` (named ``wrapper``).

    Does nothing if ``new_id`` exists already or ``base_id`` is not registered.
    """
    if new_id in gym.registry or base_id not in gym.registry:
        return
    base = gym.spec(base_id)
    gym.register(new_id, entry_point=base.entry_point, reward_threshold=base.reward_threshold,
                 max_episode_steps=base.max_episode_steps, kwargs=dict(base.kwargs),
                 additional_wrappers=(*base.additional_wrappers, WrapperSpec(wrapper, entry_point, kwargs)))
