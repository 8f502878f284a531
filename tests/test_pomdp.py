"""Velocity-masked POMDP tasks (``*NoVel-*``) and dynamics randomisation (``*DR-v5``)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from rlblocks.envs import make_env
from rlblocks.envs.dynamics import DEFAULT_RANGES, DynamicsRandomization
from rlblocks.envs.pomdp import CLASSIC, MUJOCO_STRUCTURE, velocity_indices


def _rollout(env_id: str, seed: int, steps: int = 30) -> list[np.ndarray]:
    env = make_env(env_id)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for _ in range(steps):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        out.append(obs)
        if terminated or truncated:
            break
    env.close()
    return out


def _cases():
    for new_id, (base_id, indices) in CLASSIC.items():
        yield new_id, base_id, indices
    for task, structure in MUJOCO_STRUCTURE.items():
        yield f"{task}NoVel-v5", f"{task}-v5", velocity_indices(structure)


@pytest.mark.parametrize("new_id, base_id, indices", list(_cases()), ids=[c[0] for c in _cases()])
def test_novel_ids_zero_exactly_the_documented_indices(new_id, base_id, indices):
    if "LunarLander" in base_id:
        pytest.importorskip("Box2D", reason="LunarLander needs gymnasium[box2d], not in the test extras")
    if base_id.endswith("-v5"):
        pytest.importorskip("mujoco", reason="the MuJoCo extra is not installed")
    masked, full = _rollout(new_id, 3), _rollout(base_id, 3)
    assert len(masked) == len(full) > 2
    kept = np.setdiff1d(np.arange(full[0].shape[0]), indices)
    for m, f in zip(masked, full):
        assert m.shape == f.shape
        np.testing.assert_array_equal(m[list(indices)], 0.0)
        np.testing.assert_array_equal(m[kept], f[kept])
    assert any(np.any(f[list(indices)] != 0) for f in full)  # the zeroed entries did carry values
    assert gym.spec(new_id).max_episode_steps == gym.spec(base_id).max_episode_steps


@pytest.mark.parametrize("task", list(MUJOCO_STRUCTURE))
def test_mujoco_structure_table_matches_gymnasium(task):
    pytest.importorskip("mujoco", reason="the MuJoCo extra is not installed")
    env = gym.make(f"{task}-v5")
    live = {k: v for k, v in env.unwrapped.observation_structure.items() if k != "skipped_qpos"}
    env.close()
    assert live == MUJOCO_STRUCTURE[task]


def test_velocity_indices_by_hand():
    assert velocity_indices({"skipped_qpos": 1, "qpos": 8, "qvel": 9}) == tuple(range(8, 17))
    assert velocity_indices(MUJOCO_STRUCTURE["Humanoid"]) == tuple(range(22, 45)) + tuple(range(175, 253))


def test_dynamics_randomisation_draws_per_episode_reports_and_restores_exactly():
    pytest.importorskip("mujoco", reason="the MuJoCo extra is not installed")
    env = make_env("HalfCheetahDR-v5")
    inner = env.env
    while not isinstance(inner, DynamicsRandomization):
        inner = inner.env
    model, nominal = inner.model, inner.nominal
    _, info = env.reset(seed=1)
    first = info["dynamics"]
    for key, (low, high) in DEFAULT_RANGES.items():
        assert np.all((first[key] >= low) & (first[key] <= high)), key
    np.testing.assert_allclose(model.body_mass[1:], nominal["body_mass"][1:] * first["mass"])
    np.testing.assert_allclose(model.body_inertia[1:], nominal["body_inertia"][1:] * first["mass"][:, None])
    _, info = env.reset(seed=2)
    assert not np.allclose(info["dynamics"]["mass"], first["mass"])  # new factors each episode
    _, info = env.reset(seed=1)
    np.testing.assert_array_equal(info["dynamics"]["mass"], first["mass"])  # seeded
    step_info = env.step(env.action_space.sample())[4]
    np.testing.assert_array_equal(step_info["dynamics"]["friction"], first["friction"])

    snap = env.get_snapshot()
    action = np.full(env.action_space.shape, 0.3, np.float32)
    expected = [env.step(action)[0] for _ in range(30)]
    env.reset(seed=7)  # other dynamics
    env.set_snapshot([snap])
    assert [np.array_equal(env.step(action)[0], e) for e in expected] == [True] * 30
    env.close()


def test_dynamics_randomisation_refuses_bad_ranges_and_non_mujoco_envs():
    pytest.importorskip("mujoco", reason="the MuJoCo extra is not installed")
    with pytest.raises(ValueError, match="0 < low <= high"):
        DynamicsRandomization(gym.make("Hopper-v5"), mass=(1.2, 0.8))
    with pytest.raises(ValueError, match="not a MuJoCo env"):
        DynamicsRandomization(gym.make("Pendulum-v1"))
