"""gymnasium-robotics goal envs (the ``robotics`` extra): a Fetch task resets and steps with dict
observations, its compute_reward is vectorised, and its snapshot restores the sampled goal.

Skipped where gymnasium-robotics is not installed (CI installs ``.[dev,mujoco]`` only)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("gymnasium_robotics", reason="gymnasium-robotics is not installed (pip install -e \".[robotics]\")")

from rlblocks.envs import make_env
from rlblocks.envs.goal import is_goal_space


def test_fetch_reach_resets_steps_and_restores_its_goal():
    env = make_env("FetchReach-v4")
    try:
        obs, _ = env.reset(seed=0)
        assert is_goal_space(env.observation_space)
        assert obs["desired_goal"].shape == (3,) and obs["observation"].shape == (10,)
        obs, _, terminated, _, info = env.step(env.action_space.sample())
        assert "is_success" in info and not terminated
        ag = np.stack([obs["achieved_goal"]] * 4)
        r = env.unwrapped.compute_reward(ag, np.stack([obs["desired_goal"], obs["achieved_goal"]] * 2), None)
        assert r.shape == (4,) and r[1] == 0.0 and r[3] == 0.0
        env.reset(seed=1)
        snap = json.loads(json.dumps(env.get_snapshot()))
        goal = env.unwrapped.goal.copy()
        action = np.full(4, 0.5, dtype=np.float32)
        after = env.step(action)[0]
        env.reset(seed=7)
        env.set_snapshot([snap])
        np.testing.assert_array_equal(env.unwrapped.goal, goal)
        again = env.step(action)[0]
        for k in after:
            np.testing.assert_array_equal(after[k], again[k])
    finally:
        env.close()
