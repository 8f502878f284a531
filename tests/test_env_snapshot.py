"""Env snapshots: restoring ``get_snapshot()`` into a fresh env reproduces the future exactly —
observations, rewards, the time-limit truncation step and the reset noise of the next episode."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rlblocks.envs import Snapshot, make_env, make_vec_env


def rollout(env, actions):
    """Step through ``actions``; reset (unseeded, so from the env's own RNG) at episode ends."""
    out = []
    for a in actions:
        obs, reward, terminated, truncated, _ = env.step(a)
        out.append((obs.copy(), float(reward), bool(terminated), bool(truncated)))
        if terminated or truncated:
            obs, _ = env.reset()
            out.append((obs.copy(), None, None, None))
    return out


def assert_same(a, b):
    assert len(a) == len(b)
    for (oa, ra, ta, ua), (ob, rb, tb, ub) in zip(a, b):
        np.testing.assert_array_equal(oa, ob)
        assert (ra, ta, ua) == (rb, tb, ub)


@pytest.mark.parametrize("env_id, warmup, horizon", [
    ("Pendulum-v1", 190, 30),  # TimeLimit 200: truncates 10 steps after the snapshot, then resets
    ("HalfCheetah-v5", 990, 30),  # TimeLimit 1000; MuJoCo integration state
])
def test_snapshot_reproduces_future_in_fresh_env(env_id, warmup, horizon):
    rng = np.random.default_rng(0)
    env = make_env(env_id)
    assert isinstance(env, Snapshot)
    low, high = env.action_space.low, env.action_space.high
    actions = rng.uniform(low, high, size=(warmup + horizon, *env.action_space.shape)).astype(np.float32)
    env.reset(seed=3)
    for a in actions[:warmup]:
        _, _, terminated, truncated, _ = env.step(a)
        assert not (terminated or truncated)
    snap = env.get_snapshot()
    snap = json.loads(json.dumps(snap))  # what a checkpoint stores (JSON inside state.pt)
    if env_id.startswith("HalfCheetah"):
        assert "mujoco" in snap
    else:
        assert set(snap["attrs"]) >= {"state", "last_u"}
    assert snap["elapsed"] == warmup
    base_attrs = {k: v for k, v in vars(env.unwrapped).items() if k in ("state", "last_u")}
    expected = rollout(env, actions[warmup:])
    assert any(u for _, _, _, u in expected), "the horizon should cross the time limit"
    env.close()

    fresh = make_env(env_id)
    fresh.reset(seed=12345)  # a different state and RNG, to be overwritten
    for a in actions[:7]:
        fresh.step(a)
    fresh.set_snapshot([snap])
    for key, value in base_attrs.items():  # numpy arrays and numpy scalars, dtype kept
        restored = getattr(fresh.unwrapped, key)
        assert type(restored) is type(value) and np.array_equal(restored, value), key
    got = rollout(fresh, actions[warmup:])
    fresh.close()
    assert_same(got, expected)


def test_snapshot_differs_without_restore():
    """Control: a fresh env without the snapshot does not reproduce the same future (so the
    equality above is not trivial)."""
    env = make_env("Pendulum-v1")
    env.reset(seed=3)
    actions = np.full((20, 1), 0.5, dtype=np.float32)
    for a in actions[:10]:
        env.step(a)
    expected = rollout(env, actions[10:])
    other = make_env("Pendulum-v1")
    other.reset(seed=4)
    got = rollout(other, actions[10:])
    assert not np.array_equal(got[0][0], expected[0][0])
    env.close()
    other.close()


def test_vector_env_snapshot_by_index():
    """``set_snapshot`` takes every env's snapshot and picks its own by index (one ``call`` for
    the whole vector env)."""
    vec = make_vec_env("HalfCheetah-v5", 2)
    vec.reset(seed=5)
    rng = np.random.default_rng(1)
    acts = rng.uniform(-1, 1, size=(40, 2, 6)).astype(np.float32)
    for a in acts[:20]:
        vec.step(a)
    snaps = json.loads(json.dumps(list(vec.call("get_snapshot"))))
    assert snaps[0]["mujoco"] != snaps[1]["mujoco"]  # seeds 5 and 6 differ
    expected = [vec.step(a)[:2] for a in acts[20:]]
    vec.close()

    fresh = make_vec_env("HalfCheetah-v5", 2)
    fresh.reset(seed=0)
    fresh.call("set_snapshot", snaps)
    for a, (obs, rew) in zip(acts[20:], expected):
        o, r, *_ = fresh.step(a)
        np.testing.assert_array_equal(o, obs)
        np.testing.assert_array_equal(r, rew)
    fresh.close()


def test_vector_env_keeps_only_the_info_keys_asked_for():
    """``info_keys`` drops the envs' own info (what EnvRunner asks for) but never the vector
    env's ``final_obs``, and snapshots still reach the innermost wrapper through the filter."""
    acts = np.zeros((1, 2, 6), dtype=np.float32)
    full = make_vec_env("HalfCheetah-v5", 2)
    full.reset(seed=0)
    assert "x_position" in full.step(acts[0])[4]
    full.close()
    for keys, expected in (((), set()), (("x_position",), {"x_position", "_x_position"})):
        vec = make_vec_env("HalfCheetah-v5", 2, info_keys=keys)
        vec.reset(seed=0)
        assert set(vec.step(acts[0])[4]) == expected
        assert len(vec.call("get_snapshot")) == 2
        vec.close()
    pend = make_vec_env("Pendulum-v1", 1, info_keys=())
    pend.reset(seed=0)
    for _ in range(199):
        pend.step(np.zeros((1, 1), dtype=np.float32))
    info = pend.step(np.zeros((1, 1), dtype=np.float32))[4]
    assert set(info) == {"final_obs", "_final_obs", "final_info", "_final_info"} and info["_final_obs"][0]
    pend.close()
