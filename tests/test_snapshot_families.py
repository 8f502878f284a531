"""Env snapshots per env family: restored into a fresh env (reset with another seed), a snapshot
gives the same next steps as the env it was taken from, bit for bit.

Classic control: the envs change the container or dtype of their state between ``reset`` and
``step`` (Acrobot float32 -> float64, MountainCarContinuous float64 -> float32, MountainCar array ->
tuple), so a snapshot taken in one form must restore into an env holding the other. MuJoCo: the
envs read positions that MuJoCo derives from the state (Fetch's mocap follows the gripper body's
``xpos``, Ant's reward the torso's ``xpos``, Humanoid's the centre of mass) before they step."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rlblocks.envs import make_env


def actions_for(env, n: int, seed: int = 0) -> list:
    env.action_space.seed(seed)
    return [env.action_space.sample() for _ in range(n)]


def rollout(env, actions) -> list:
    """``(flat obs, reward, terminated, truncated)`` per step; unseeded resets (from the env's own RNG)
    at episode ends, their first observation appended."""
    def flat(obs):
        return np.concatenate([np.ravel(obs[k]) for k in sorted(obs)]) if isinstance(obs, dict) else np.ravel(obs)

    out = []
    for a in actions:
        obs, reward, terminated, truncated, _ = env.step(a)
        out.append((flat(obs).copy(), float(reward), bool(terminated), bool(truncated)))
        if terminated or truncated:
            out.append((flat(env.reset()[0]).copy(), None, None, None))
    return out


def assert_same(got, expected):
    assert len(got) == len(expected)
    for i, ((oa, *ra), (ob, *rb)) in enumerate(zip(got, expected)):
        np.testing.assert_array_equal(oa, ob, err_msg=f"step {i} after the restore")
        assert ra == rb, f"step {i} after the restore"


def snapshot_then_restore(env_id: str, warmup: int, horizon: int, fresh_steps: int):
    """Step ``warmup`` actions, snapshot (through JSON, as checkpoints store it), run ``horizon`` more;
    restore into a fresh env reset with another seed and stepped ``fresh_steps`` times; run the same
    ``horizon``. Returns (original's future, restored env's future, snapshot, original's attributes)."""
    env = make_env(env_id)
    actions = actions_for(env, warmup + horizon)
    env.reset(seed=3)
    for a in actions[:warmup]:
        _, _, terminated, truncated, _ = env.step(a)
        assert not (terminated or truncated), "the snapshot should be taken mid-episode"
    snap = json.loads(json.dumps(env.get_snapshot()))
    attrs = {k: v for k, v in vars(env.unwrapped).items() if k in snap.get("attrs", {})}
    attrs = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in attrs.items()}
    expected = rollout(env, actions[warmup:])
    env.close()
    fresh = make_env(env_id)
    fresh.reset(seed=12345)
    for a in actions_for(fresh, fresh_steps, seed=1):
        fresh.step(a)
    fresh.set_snapshot([snap])
    restored = {k: getattr(fresh.unwrapped, k) for k in attrs}
    got = rollout(fresh, actions[warmup:])
    fresh.close()
    return expected, got, attrs, restored


CLASSIC = ["CartPole-v1", "MountainCar-v0", "MountainCarContinuous-v0", "Pendulum-v1", "Acrobot-v1"]


@pytest.mark.parametrize("env_id", CLASSIC)
@pytest.mark.parametrize("warmup, fresh_steps", [(0, 3), (7, 0)])  # reset-time form into a stepped env, and back
def test_classic_control_snapshot_restores_across_reset_and_step_forms(env_id, warmup, fresh_steps):
    expected, got, attrs, restored = snapshot_then_restore(env_id, warmup, horizon=60, fresh_steps=fresh_steps)
    assert_same(got, expected)
    for key, value in attrs.items():  # each attribute comes back in the snapshot's own container and dtype
        assert type(restored[key]) is type(value), key
        if isinstance(value, np.ndarray):
            assert restored[key].dtype == value.dtype and np.array_equal(restored[key], value), key
        else:
            assert restored[key] == value, key


def test_snapshot_check_allows_a_new_number_type_but_nothing_foreign():
    """The check lets an array change its numeric dtype (and array <-> tuple of the same length) but
    still refuses non-numeric dtypes, bool for numbers, other shapes and attributes the env does not save."""
    env = make_env("Acrobot-v1")
    env.reset(seed=0)
    env.step(0)
    snap = json.loads(json.dumps(env.get_snapshot()))
    assert snap["attrs"]["state"]["dtype"] == "float64"
    fresh = make_env("Acrobot-v1")
    fresh.reset(seed=1)  # holds a float32 state
    fresh.set_snapshot([snap])
    assert fresh.unwrapped.state.dtype == np.float64
    fresh.set_snapshot([{**snap, "attrs": {"state": {"tuple": snap["attrs"]["state"]["array"]}}}])
    state = snap["attrs"]["state"]["array"]
    for bad in ({"array": state, "dtype": "object"}, {"array": state, "dtype": "<U8"},
                {"array": [True] * 4, "dtype": "bool"}, {"array": state[:3], "dtype": "float64"},
                {"array": [state], "dtype": "float64"}, {"tuple": state[:3]}, {"tuple": ["a", 1, 2, 3]},
                {"value": 1.0}, {"array": state, "dtype": "float64", "extra": 1}):
        with pytest.raises(ValueError, match="snapshot attribute 'state'"):
            fresh.set_snapshot([{**snap, "attrs": {"state": bad}}])
    with pytest.raises(ValueError, match="snapshot attribute 'np_random' is not one this env saves"):
        fresh.set_snapshot([{**snap, "attrs": {"np_random": {"value": 1}}}])


def test_mujoco_snapshot_check_refuses_foreign_derived_arrays():
    env = make_env("HalfCheetah-v5")
    env.reset(seed=0)
    snap = json.loads(json.dumps(env.get_snapshot()))
    xpos = snap["derived"]["xpos"]
    for bad in ({**snap["derived"], "qpos": [0.0]}, {"xpos": xpos[:-1]}, {"xpos": [[str(v) for v in xpos[0]]]}, []):
        with pytest.raises(ValueError, match="snapshot 'derived' must hold"):
            env.set_snapshot([{**snap, "derived": bad}])
    old = {k: v for k, v in snap.items() if k != "derived"}  # checkpoints from before derived arrays were kept
    env.set_snapshot([old])


@pytest.mark.parametrize("env_id, warmup, horizon", [
    ("FetchReach-v4", 23, 40),  # TimeLimit 50: the horizon crosses a reset
    ("FetchPush-v4", 23, 40),
    ("FetchPickAndPlace-v4", 23, 40),  # gripper not blocked: no mj_forward after its step
    ("HalfCheetahDR-v5", 990, 20),  # model arrays resampled at the reset after the snapshot
    ("Ant-v5", 20, 20),
    ("Humanoid-v5", 10, 10),
])
def test_mujoco_snapshot_restores_the_future(env_id, warmup, horizon):
    pytest.importorskip("mujoco", reason="the MuJoCo extra is not installed")
    if env_id.startswith("Fetch"):
        pytest.importorskip("gymnasium_robotics", reason="gymnasium-robotics is not installed (pip install -e \".[robotics]\")")
    expected, got, _, _ = snapshot_then_restore(env_id, warmup, horizon, fresh_steps=5)
    if env_id.startswith(("Fetch", "HalfCheetah")):
        assert any(step[1] is None for step in expected), "the horizon should cross an episode end"
    assert_same(got, expected)
