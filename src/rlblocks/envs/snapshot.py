"""Capture and restore an env's full state, so a resumed run continues mid-episode exactly.

gymnasium has no generic get/set-state API. :class:`Snapshot` covers the state that decides
future transitions for the env families we support:

* the env's ``np_random`` bit-generator state (reset noise, stochastic dynamics);
* ``TimeLimit``'s elapsed-step counter (so truncation happens at the same step);
* MuJoCo envs: the integration state from ``mujoco.mj_getState(mjSTATE_INTEGRATION)``
  (qpos, qvel, act, warm-start, controls, time, ...);
* other envs (classic control, Box2D-free toy envs): their public array/number attributes
  such as Pendulum's ``state`` and ``last_u``.

Snapshots are JSON-serialisable (floats round-trip exactly through ``repr``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


def _time_limit(env: gym.Env) -> gym.wrappers.TimeLimit | None:
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.TimeLimit):
            return env
        env = env.env
    return None


def _mujoco_parts(env: gym.Env):
    model, data = getattr(env, "model", None), getattr(env, "data", None)
    if model is None or data is None or type(model).__module__.split(".")[0] != "mujoco":
        return None
    import mujoco

    return mujoco, model, data


class Snapshot(gym.Wrapper):
    """Outermost per-env wrapper adding ``get_snapshot()`` / ``set_snapshot(list)``.

    ``set_snapshot`` takes the list of all envs' snapshots and picks entry ``index``, so one
    ``vector_env.call("set_snapshot", snaps)`` restores sync and async vector envs alike.
    """

    def __init__(self, env: gym.Env, index: int = 0):
        super().__init__(env)
        self.index = index

    def get_snapshot(self) -> dict[str, Any]:
        base = self.env.unwrapped
        snap: dict[str, Any] = {"rng": base.np_random.bit_generator.state}
        limit = _time_limit(self.env)
        if limit is not None:
            snap["elapsed"] = limit._elapsed_steps
        parts = _mujoco_parts(base)
        if parts is not None:
            mujoco, model, data = parts
            spec = mujoco.mjtState.mjSTATE_INTEGRATION
            state = np.empty(mujoco.mj_stateSize(model, spec))
            mujoco.mj_getState(model, data, state, spec)
            snap["mujoco"] = state.tolist()
        else:
            attrs = {}
            for key, value in vars(base).items():
                if key.startswith("_"):
                    continue
                if isinstance(value, np.ndarray) and value.dtype.kind in "fiub":
                    attrs[key] = {"array": value.tolist(), "dtype": str(value.dtype)}
                elif isinstance(value, np.generic) and value.dtype.kind in "fiub":  # e.g. Pendulum's last_u
                    attrs[key] = {"scalar": value.item(), "dtype": str(value.dtype)}
                elif value is None or isinstance(value, (bool, int, float)):
                    attrs[key] = {"value": value}
                elif isinstance(value, tuple) and all(isinstance(v, (int, float)) for v in value):
                    attrs[key] = {"tuple": list(value)}
            snap["attrs"] = attrs
        return snap

    def set_snapshot(self, snapshots: list[dict[str, Any]]) -> None:
        snap = snapshots[self.index]
        base = self.env.unwrapped
        base.np_random.bit_generator.state = snap["rng"]
        limit = _time_limit(self.env)
        if limit is not None and "elapsed" in snap:
            limit._elapsed_steps = snap["elapsed"]
        if "mujoco" in snap:
            mujoco, model, data = _mujoco_parts(base)
            mujoco.mj_setState(model, data, np.asarray(snap["mujoco"]), mujoco.mjtState.mjSTATE_INTEGRATION)
        for key, spec in snap.get("attrs", {}).items():
            if "array" in spec:
                setattr(base, key, np.asarray(spec["array"], dtype=spec["dtype"]))
            elif "scalar" in spec:
                setattr(base, key, np.dtype(spec["dtype"]).type(spec["scalar"]))
            elif "tuple" in spec:
                setattr(base, key, tuple(spec["tuple"]))
            else:
                setattr(base, key, spec["value"])
