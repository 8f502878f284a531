"""Partially observable tasks: the velocity entries of the observation zeroed, its shape kept.

Registered with the ids rl-zoo users know (``utils/wrappers.py`` of rl-baselines3-zoo masks the
same entries), each a copy of the base task's spec plus :class:`MaskVelocity` as an additional
wrapper, so ``gym.make`` builds them like any other id and env snapshots reach the base env:

============================================  ===============  ============================
id                                             base             zeroed indices
============================================  ===============  ============================
``CartPoleNoVel-v1``                           CartPole-v1      1, 3 (cart and pole velocity)
``PendulumNoVel-v1``                           Pendulum-v1      2 (angular velocity)
``MountainCarNoVel-v0``                        MountainCar-v0   1 (velocity)
``MountainCarContinuousNoVel-v0``              ...Continuous-v0 1 (velocity)
``LunarLanderNoVel-v3``                        LunarLander-v3   2, 3 (x, y velocity), 5 (angular)
``LunarLanderContinuousNoVel-v3``              ...Continuous-v3 2, 3, 5
``<Task>NoVel-v5`` (MuJoCo locomotion)         <Task>-v5        every velocity block (below)
============================================  ===============  ============================

MuJoCo v5 observations are blocks in the order of the env's ``observation_structure``; the
velocity blocks are ``qvel`` (joint velocities), ``cvel`` (body velocities, Humanoid) and
``ten_velocity``. :data:`MUJOCO_STRUCTURE` holds gymnasium 1.x's structures (checked against the
live envs in ``tests/test_pomdp.py``); :func:`velocity_indices` turns one into indices, e.g.
HalfCheetah 8–16, Hopper 5–10, Walker2d 8–16, Ant 13–26, Swimmer 3–7, InvertedPendulum 2–3,
Humanoid/HumanoidStandup 22–44 and 175–252.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from rlblocks.envs.variants import register_variant

#: ``id: (base id, zeroed indices)`` for the classic-control and Box2D tasks.
CLASSIC = {
    "CartPoleNoVel-v1": ("CartPole-v1", (1, 3)),
    "PendulumNoVel-v1": ("Pendulum-v1", (2,)),
    "MountainCarNoVel-v0": ("MountainCar-v0", (1,)),
    "MountainCarContinuousNoVel-v0": ("MountainCarContinuous-v0", (1,)),
    "LunarLanderNoVel-v3": ("LunarLander-v3", (2, 3, 5)),
    "LunarLanderContinuousNoVel-v3": ("LunarLanderContinuous-v3", (2, 3, 5)),
}

#: gymnasium 1.x's ``observation_structure`` of the MuJoCo locomotion tasks (blocks in order;
#: ``skipped_qpos`` is not part of the observation).
MUJOCO_STRUCTURE = {
    "HalfCheetah": {"qpos": 8, "qvel": 9},
    "Hopper": {"qpos": 5, "qvel": 6},
    "Walker2d": {"qpos": 8, "qvel": 9},
    "Ant": {"qpos": 13, "qvel": 14, "cfrc_ext": 78},
    "Humanoid": {"qpos": 22, "qvel": 23, "cinert": 130, "cvel": 78, "qfrc_actuator": 17, "cfrc_ext": 78,
                 "ten_length": 0, "ten_velocity": 0},
    "HumanoidStandup": {"qpos": 22, "qvel": 23, "cinert": 130, "cvel": 78, "qfrc_actuator": 17, "cfrc_ext": 78,
                        "ten_length": 0, "ten_velocity": 0},
    "Swimmer": {"qpos": 3, "qvel": 5},
    "InvertedPendulum": {"qpos": 2, "qvel": 2},
}
VELOCITY_BLOCKS = ("qvel", "cvel", "ten_velocity")


def velocity_indices(structure: dict[str, int]) -> tuple[int, ...]:
    """Indices of the velocity blocks of an observation laid out as ``structure``."""
    out, start = [], 0
    for block, size in structure.items():
        if block == "skipped_qpos":
            continue
        if block in VELOCITY_BLOCKS:
            out.extend(range(start, start + size))
        start += size
    return tuple(out)


class MaskVelocity(gym.ObservationWrapper):
    """Zero the observation entries ``indices`` (shape, dtype and bounds of the space kept).

    Shapes: ``obs [obs_dim]`` → ``[obs_dim]``. Raises ``ValueError`` for an index outside the space.
    """

    def __init__(self, env: gym.Env, indices: tuple[int, ...] | list[int]):
        super().__init__(env)
        dim = env.observation_space.shape[0]
        if any(not 0 <= i < dim for i in indices):
            raise ValueError(f"indices {list(indices)} outside the {dim}-dim observation")
        self.indices = np.asarray(indices, dtype=np.int64)

    def observation(self, observation):
        observation = np.array(observation, copy=True)
        observation[self.indices] = 0.0
        return observation


_MASK = "rlblocks.envs.pomdp:MaskVelocity"


def register_pomdp_envs() -> None:
    """Register every NoVel id whose base task is registered (idempotent)."""
    for new_id, (base_id, indices) in CLASSIC.items():
        register_variant(new_id, base_id, "MaskVelocity", _MASK, {"indices": list(indices)})
    for task, structure in MUJOCO_STRUCTURE.items():
        register_variant(f"{task}NoVel-v5", f"{task}-v5", "MaskVelocity", _MASK,
                         {"indices": list(velocity_indices(structure))})
