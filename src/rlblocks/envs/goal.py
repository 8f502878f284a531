"""Goal environments: dict observations ``{observation, achieved_goal, desired_goal}``.

The gymnasium-robotics ``GoalEnv`` convention (Plappert et al. 2018, "Multi-Goal Reinforcement
Learning", arXiv 1802.09464): every observation is a dict of three flat vectors and the env has
``compute_reward(achieved_goal, desired_goal, info)``, vectorised over leading dimensions, so
rewards can be recomputed for other goals (hindsight relabelling).

Networks see ``concat(observation, desired_goal)`` (mrl, Pitis et al. 2020); the achieved goal is
stored for relabelling only.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

#: The keys of a goal observation, in storage order.
GOAL_KEYS = ("observation", "achieved_goal", "desired_goal")

#: The info keys under which goal envs say whether the goal is reached, in order of preference:
#: gymnasium-robotics' Fetch and hand tasks and rlblocks' BitFlip use ``is_success``, its maze tasks
#: (PointMaze, AntMaze) ``success``.
SUCCESS_KEYS = ("is_success", "success")


def is_goal_space(space: gym.Space) -> bool:
    """True for a ``Dict`` of exactly :data:`GOAL_KEYS`, each a flat ``Box``."""
    return (isinstance(space, gym.spaces.Dict) and set(space.spaces) == set(GOAL_KEYS)
            and all(isinstance(s, gym.spaces.Box) and len(s.shape) == 1 for s in space.spaces.values()))


def goal_shapes(space: gym.spaces.Dict) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of a goal observation space, in :data:`GOAL_KEYS` order."""
    return {k: tuple(space[k].shape) for k in GOAL_KEYS}


def network_obs_dim(space: gym.Space) -> int:
    """Width of what the networks see: the Box's size, or ``observation + desired_goal`` for a goal env."""
    if is_goal_space(space):
        return int(space["observation"].shape[0] + space["desired_goal"].shape[0])
    return int(space.shape[0])


def obs_to_tensor(obs) -> torch.Tensor | dict[str, torch.Tensor]:
    """A fresh float32 tensor (or dict of them, per goal key) from a vector env's observation."""
    if isinstance(obs, dict):
        return {k: torch.from_numpy(np.array(obs[k], dtype=np.float32)) for k in GOAL_KEYS}
    return torch.from_numpy(np.array(obs, dtype=np.float32))


def obs_batch_size(obs) -> int:
    """Leading dimension of an observation batch (tensor or dict of tensors)."""
    return (obs["observation"] if isinstance(obs, dict) else obs).shape[0]


def obs_to(obs, device: torch.device):
    """``obs.to(device)`` for a tensor or a dict of tensors."""
    if isinstance(obs, dict):
        return {k: v.to(device) for k, v in obs.items()}
    return obs.to(device)


def success_flags(info: dict) -> np.ndarray | None:
    """Per-env success flags (float64 ``[num_envs]``, 1.0 at the goal) from a vector env's ``info``
    (or its ``final_info``): the first of :data:`SUCCESS_KEYS` present, ``None`` if none is."""
    for key in SUCCESS_KEYS:
        if key in info:
            return np.asarray(info[key], dtype=np.float64)
    return None


def compute_reward_fn(env: gym.Env):
    """The env's vectorised ``compute_reward(achieved_goal [..., G], desired_goal [..., G], info)``."""
    base = env.unwrapped
    if not hasattr(base, "compute_reward"):
        raise AttributeError(f"{type(base).__name__} has no compute_reward")
    return base.compute_reward
