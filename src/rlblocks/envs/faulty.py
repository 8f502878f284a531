"""Test tasks that fail on purpose: ``FaultyPendulum-v1`` raises mid-episode, ``NaNPendulum-v1``
returns a NaN reward. They exercise fault handling (:mod:`rlblocks.envs.recover`, the loss checks of
:mod:`rlblocks.algos.finite`) in-process and in Ray workers alike, which import this package."""

from __future__ import annotations

import gymnasium as gym

from rlblocks.envs.variants import register_variant


class FailAt(gym.Wrapper):
    """Raises ``RuntimeError`` on the ``fail_at``-th step of this env instance (counted from its
    construction, across episodes), as long as fewer than ``times`` instances in this process have
    raised (a rebuilt env then runs normally); with ``nan`` it returns a NaN reward from that step
    on instead."""

    raised = 0  # instances of this process that raised

    def __init__(self, env: gym.Env, fail_at: int = 150, nan: bool = False, times: int = 1):
        super().__init__(env)
        self.fail_at, self.nan, self.times = fail_at, nan, times
        self.steps = 0

    def step(self, action):
        self.steps += 1
        if self.steps >= self.fail_at:
            if self.nan:
                obs, _, terminated, truncated, info = self.env.step(action)
                return obs, float("nan"), terminated, truncated, info
            if self.steps == self.fail_at and FailAt.raised < self.times:
                FailAt.raised += 1
                raise RuntimeError(f"simulated crash at step {self.steps}")
        return self.env.step(action)


def register() -> None:
    """Register ``FaultyPendulum-v1`` (the first env of a process raises at its 150th step) and ``NaNPendulum-v1`` (NaN rewards
    from its 300th step); idempotent."""
    entry = "rlblocks.envs.faulty:FailAt"
    register_variant("FaultyPendulum-v1", "Pendulum-v1", "FailAt", entry, {"fail_at": 150})
    register_variant("NaNPendulum-v1", "Pendulum-v1", "FailAt", entry, {"fail_at": 300, "nan": True})
