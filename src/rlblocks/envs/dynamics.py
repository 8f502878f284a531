"""Dynamics randomisation for MuJoCo tasks: new body masses, joint damping and friction each episode.

Domain randomisation as used by Siekmann et al. 2020 ("Learning Memory-Based Control for
Human-Scale Bipedal Locomotion", arXiv 2006.02402) and r2l: at every reset each body's mass (and
its inertia, so the body stays physically consistent) is scaled by a factor drawn from ``mass``,
each joint's damping by one from ``damping``, and every geom's sliding friction (MuJoCo takes the
larger of a contact's two geoms, so the ground's and the feet's) by one common factor from
``friction``. The factors come from the env's own ``np_random`` (seeded by ``reset(seed=...)``), and
the true factors are in ``info["dynamics"]`` at reset and at every step, for system-ID decoders.

Registered as ``<Task>DR-v5`` for the locomotion tasks of :mod:`rlblocks.envs.pomdp` with the
default ranges below; ``gym.make("HalfCheetah-v5")`` wrapped by hand takes other ranges.
Checkpoints stay exact: :class:`rlblocks.envs.snapshot.Snapshot` saves and restores the model's
mass, inertia, damping and friction arrays of every MuJoCo env.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from rlblocks.envs.variants import register_variant

DEFAULT_RANGES = {"mass": (0.7, 1.3), "damping": (0.5, 1.5), "friction": (0.5, 1.5)}


class DynamicsRandomization(gym.Wrapper):
    """Scale masses, damping and friction of a MuJoCo env by per-episode random factors.

    Args:
        env: a MuJoCo env (``env.unwrapped.model`` a ``mujoco.MjModel``).
        mass, damping, friction: ``(low, high)`` ranges of the factors (positive, low <= high).

    Raises:
        ValueError: not a MuJoCo env, or a range that is not ``0 < low <= high``.
    """

    def __init__(self, env: gym.Env, mass=DEFAULT_RANGES["mass"], damping=DEFAULT_RANGES["damping"],
                 friction=DEFAULT_RANGES["friction"]):
        super().__init__(env)
        model = getattr(env.unwrapped, "model", None)
        if model is None or not hasattr(model, "body_mass"):
            raise ValueError(f"{env.unwrapped} is not a MuJoCo env; dynamics randomisation needs one")
        self.ranges = {"mass": tuple(mass), "damping": tuple(damping), "friction": tuple(friction)}
        for key, (low, high) in self.ranges.items():
            if not 0 < low <= high:
                raise ValueError(f"{key} range ({low}, {high}) must satisfy 0 < low <= high")
        self.model = model
        self.nominal = {"body_mass": model.body_mass.copy(), "body_inertia": model.body_inertia.copy(),
                        "dof_damping": model.dof_damping.copy(), "geom_friction": model.geom_friction.copy()}

    def parameters(self) -> dict[str, np.ndarray]:
        """The current factors: ``mass [nbody - 1]`` (the world body excluded), ``damping [nv]``
        (1 for a joint without damping, where the factor has no effect), ``friction [1]``. Read
        from the model, so they are right after a snapshot restore too."""
        nom = self.nominal
        damped = nom["dof_damping"] > 0
        damping = np.ones(self.model.nv)
        damping[damped] = self.model.dof_damping[damped] / nom["dof_damping"][damped]
        rough = np.flatnonzero(nom["geom_friction"][:, 0] > 0)[:1]
        friction = self.model.geom_friction[rough, 0] / nom["geom_friction"][rough, 0]
        heavy = nom["body_mass"][1:] > 0
        mass = np.ones(self.model.nbody - 1)
        mass[heavy] = self.model.body_mass[1:][heavy] / nom["body_mass"][1:][heavy]
        return {"mass": mass, "damping": damping, "friction": friction}

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)  # seeds np_random first when a seed is given
        rng, m, nom = self.env.unwrapped.np_random, self.model, self.nominal
        mass = np.concatenate([[1.0], rng.uniform(*self.ranges["mass"], size=m.nbody - 1)])
        damping = rng.uniform(*self.ranges["damping"], size=m.nv)
        friction = rng.uniform(*self.ranges["friction"])
        m.body_mass[:] = nom["body_mass"] * mass
        m.body_inertia[:] = nom["body_inertia"] * mass[:, None]
        m.dof_damping[:] = nom["dof_damping"] * damping
        m.geom_friction[:, 0] = nom["geom_friction"][:, 0] * friction
        return obs, {**info, "dynamics": self.parameters()}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {**info, "dynamics": self.parameters()}


def register_dynamics_envs() -> None:
    """Register ``<Task>DR-v5`` for the MuJoCo locomotion tasks (idempotent)."""
    from rlblocks.envs.pomdp import MUJOCO_STRUCTURE

    for task in MUJOCO_STRUCTURE:
        register_variant(f"{task}DR-v5", f"{task}-v5", "DynamicsRandomization",
                         "rlblocks.envs.dynamics:DynamicsRandomization",
                         {k: list(v) for k, v in DEFAULT_RANGES.items()})
