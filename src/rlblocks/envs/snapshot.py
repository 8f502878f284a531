"""Capture and restore an env's full state, so a resumed run continues mid-episode exactly.

gymnasium has no generic get/set-state API. :class:`Snapshot` covers the state that decides
future transitions for the env families we support:

* the env's ``np_random`` bit-generator state (reset noise, stochastic dynamics);
* ``TimeLimit``'s elapsed-step counter (so truncation happens at the same step);
* MuJoCo envs: the integration state from ``mujoco.mj_getState(mjSTATE_INTEGRATION)``
  (qpos, qvel, act, warm-start, controls, mocap poses, time, ...), the model arrays of
  :data:`MODEL_FIELDS` (changed per episode by dynamics randomisation) and the derived arrays of
  :data:`DERIVED_FIELDS` (positions and velocities of bodies, geoms and sites, as the env left them);
* other envs (classic control, Box2D-free toy envs): their public array/number attributes
  such as Pendulum's ``state`` and ``last_u``; MuJoCo goal envs (Fetch) too, for their sampled
  ``goal``.

Snapshots are JSON-serialisable (floats round-trip exactly through ``repr``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

#: MuJoCo model arrays saved in snapshots (what :class:`rlblocks.envs.dynamics.DynamicsRandomization`
#: changes): body masses and inertias, joint damping, geom friction.
MODEL_FIELDS = ("body_mass", "body_inertia", "dof_damping", "geom_friction")

#: MuJoCo data arrays computed from the state (by ``mj_forward`` and by ``mj_step`` before it
#: integrates) that snapshots keep as they are. After ``mj_step`` they describe the state at the start
#: of its last substep, not the current one, and envs read them before their next ``mj_step``
#: (gymnasium-robotics' FetchPickAndPlace moves the mocap to the gripper's ``xpos``/``xquat``, Ant's
#: reward takes the torso's ``xpos``, Humanoid's the centre of mass from ``xipos``), so recomputing
#: them from the restored state with ``mj_forward`` alone would change the next step.
DERIVED_FIELDS = ("xpos", "xquat", "xmat", "xipos", "ximat", "xanchor", "xaxis", "geom_xpos", "geom_xmat",
                  "site_xpos", "site_xmat", "subtree_com", "cinert", "cdof", "cvel", "cdof_dot", "cacc",
                  "cfrc_int", "cfrc_ext", "subtree_linvel", "subtree_angmom", "sensordata")


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


#: The info key of the step that cuts an episode a snapshot could not restore (:class:`Snapshot`).
CUT_KEY = "episode_cut"


def _holds_box2d(base: gym.Env) -> bool:
    """Whether the env keeps its state in a Box2D world (LunarLander, BipedalWalker, CarRacing),
    which has no state API: bodies, joints and contacts cannot be saved and put back."""
    return any(type(v).__module__.split(".")[0] == "Box2D" for v in vars(base).values())


class Snapshot(gym.Wrapper):
    """Outermost per-env wrapper adding ``get_snapshot()`` / ``set_snapshot(list)``.

    ``set_snapshot`` takes the list of all envs' snapshots and picks entry ``index``, so one
    ``vector_env.call("set_snapshot", snaps)`` restores sync and async vector envs alike.

    An env whose state cannot be captured (``exact`` False: a Box2D world) is restored only in part:
    its random generator, and its last observation. Its next ``step`` then does not step the env: it
    cuts the episode in progress at that observation (``truncated``, reward 0, ``info[CUT_KEY]``
    saying why), so the vector env's autoreset starts a new episode from the restored generator.
    Every stored transition stays a real one but that cut, which is bootstrapped like a time limit.
    """

    def __init__(self, env: gym.Env, index: int = 0):
        super().__init__(env)
        self.index = index
        self.exact = not _holds_box2d(env.unwrapped)
        self._last_obs = None  # tracked where the state cannot be captured: what a restored episode ends at
        self._cut = False

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        if not self.exact:
            self._last_obs, self._cut = obs, False
        return obs, info

    def step(self, action):
        if self._cut:
            self._cut = False
            return self._last_obs, 0.0, False, True, {CUT_KEY: f"{type(self.env.unwrapped).__name__}'s Box2D world "
                                                               "cannot be saved in a checkpoint"}
        out = self.env.step(action)
        if not self.exact:
            self._last_obs = np.array(out[0])  # a copy: an env may reuse its array
        return out

    def get_snapshot(self) -> dict[str, Any]:
        base = self.env.unwrapped
        snap: dict[str, Any] = {"rng": base.np_random.bit_generator.state}
        if not self.exact:
            last = np.zeros(self.observation_space.shape) if self._last_obs is None else self._last_obs
            snap["cut"] = {"obs": np.asarray(last).tolist(), "dtype": str(self.observation_space.dtype)}
            return snap
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
            # the model parameters dynamics randomisation changes per episode (envs/dynamics.py)
            snap["model"] = {name: getattr(model, name).tolist() for name in MODEL_FIELDS}
            snap["derived"] = {name: getattr(data, name).tolist() for name in DERIVED_FIELDS}
            if hasattr(base, "compute_reward"):  # a MuJoCo goal env (Fetch): its sampled goal lives outside MuJoCo
                snap["attrs"] = _public_attrs(base)
        else:
            snap["attrs"] = _public_attrs(base)
        return snap

    def set_snapshot(self, snapshots: list[dict[str, Any]]) -> None:
        """Restore entry ``index`` of ``snapshots`` (as :meth:`get_snapshot` made it).

        Only what this env's own :meth:`get_snapshot` captures is restored, and each value is
        checked against it first (kind, shape, number type), so a hand-edited or foreign snapshot can
        neither set other attributes nor leave the env half restored.

        Raises:
            ValueError: a snapshot that this env did not produce, naming the first bad entry.
        """
        snap = snapshots[self.index] if isinstance(snapshots, list) and len(snapshots) > self.index else None
        if not isinstance(snap, dict):
            raise ValueError(f"env {self.index}'s snapshot is missing or not an object")  # noqa: TRY004 (documented: every bad snapshot is a ValueError)
        reference = self.get_snapshot()
        _check_snapshot(snap, reference)
        base = self.env.unwrapped
        bit_generator = base.np_random.bit_generator
        before = bit_generator.state
        try:
            bit_generator.state = snap["rng"]
        except (TypeError, ValueError, KeyError) as e:
            bit_generator.state = before
            raise ValueError(f"env {self.index}'s snapshot has an invalid rng state ({e})") from None
        if "cut" in snap:  # see the class docstring: the next step ends the episode at its last observation
            self._last_obs = np.asarray(snap["cut"]["obs"], dtype=snap["cut"]["dtype"])
            self._cut = True
            return
        limit = _time_limit(self.env)
        if limit is not None and "elapsed" in snap:
            limit._elapsed_steps = snap["elapsed"]
        if "mujoco" in snap:
            mujoco, model, data = _mujoco_parts(base)
            for name, values in snap.get("model", {}).items():
                _assign(getattr(model, name), values)
            mujoco.mj_setState(model, data, np.asarray(snap["mujoco"], dtype=np.float64),
                               mujoco.mjtState.mjSTATE_INTEGRATION)
            # mj_setState sets the state only: everything computed from it (positions of bodies and
            # sites, contacts, ...) still belonged to the env's previous episode. mj_forward makes it
            # fit the restored state; the arrays envs read before stepping then get the values the
            # snapshotted env had (DERIVED_FIELDS: not always the ones mj_forward computes).
            # Snapshots without them (older checkpoints) get mj_forward's.
            mujoco.mj_forward(model, data)
            for name, values in snap.get("derived", {}).items():
                _assign(getattr(data, name), values)
        for key, spec in snap.get("attrs", {}).items():
            if "array" in spec:
                setattr(base, key, np.asarray(spec["array"], dtype=spec["dtype"]))
            elif "scalar" in spec:
                setattr(base, key, np.dtype(spec["dtype"]).type(spec["scalar"]))
            elif "tuple" in spec:
                setattr(base, key, tuple(spec["tuple"]))
            else:
                setattr(base, key, spec["value"])


def _assign(target: np.ndarray, values: list) -> None:
    # reshape: an empty array's tolist() is [] whatever its shape (a model without sites: (0, 3))
    target[:] = np.asarray(values, dtype=np.float64).reshape(target.shape)


def _public_attrs(base: gym.Env) -> dict[str, Any]:
    """The env's public array and number attributes, as JSON-ready entries."""
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
    return attrs


def _is_number(value: Any) -> bool:
    return isinstance(value, (bool, int, float))


def _check_snapshot(snap: dict[str, Any], reference: dict[str, Any]) -> None:
    """Raise ``ValueError`` unless ``snap`` has the structure of ``reference`` (this env's own snapshot).

    Attribute entries may only name attributes that ``reference`` captures (a fixed list per env
    class); arrays and tuples keep their shape and hold numbers (:func:`_sequence_fits`), numbers stay
    numbers (``None`` is allowed where the env itself may hold ``None``, e.g. Pendulum's ``last_u``
    before its first step, CartPole's ``steps_beyond_terminated`` before its episode ends).
    """
    unknown = set(snap) - set(reference)
    if unknown or "rng" not in snap or not isinstance(snap["rng"], dict):
        raise ValueError(f"snapshot keys {sorted(snap)} do not match this env's {sorted(reference)}")
    if "elapsed" in reference and not (isinstance(snap.get("elapsed"), int) and not isinstance(snap["elapsed"], bool)
                                       and snap["elapsed"] >= 0):
        raise ValueError(f"snapshot 'elapsed' is {snap.get('elapsed')!r}, not a step count")
    if "mujoco" in reference:
        state = snap.get("mujoco")
        if not (isinstance(state, list) and len(state) == len(reference["mujoco"]) and all(map(_is_number, state))):
            raise ValueError(f"snapshot 'mujoco' must be {len(reference['mujoco'])} numbers")
    if "cut" in reference:
        cut = snap.get("cut")
        if not (isinstance(cut, dict) and set(cut) == {"obs", "dtype"} and cut["dtype"] == reference["cut"]["dtype"]
                and _numeric_list(cut["obs"]) and _shape(cut["obs"]) == _shape(reference["cut"]["obs"])):
            raise ValueError(f"snapshot 'cut' must hold this env's last observation, {reference['cut']['dtype']} of "
                             f"shape {_shape(reference['cut']['obs'])}")
    for part, names in (("model", MODEL_FIELDS), ("derived", DERIVED_FIELDS)):
        if part not in snap:
            continue
        fields = snap[part]
        if not isinstance(fields, dict) or set(fields) - set(names) or any(
                not _numeric_list(v) or _shape(v) != np.shape(reference[part][k]) for k, v in fields.items()):
            listed = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
            raise ValueError(f"snapshot {part!r} must hold {listed} of this env's shapes")
    attrs, ref_attrs = snap.get("attrs", {}), reference.get("attrs", {})
    if not isinstance(attrs, dict):
        raise ValueError("snapshot 'attrs' is not an object")  # noqa: TRY004 (as above)
    for key, spec in attrs.items():
        ref = ref_attrs.get(key)
        if ref is None or not isinstance(spec, dict) or len(spec) not in (1, 2):
            raise ValueError(f"snapshot attribute {key!r} is not one this env saves")
        if "array" in ref or "tuple" in ref:
            ok = _sequence_fits(spec, ref)
        else:  # a number, a NumPy scalar or None
            if "scalar" in spec:
                ok = _is_number(spec["scalar"]) and spec.get("dtype") in _NUMERIC_DTYPES
            else:
                value = spec.get("value", ...)
                ok = value is None or (_is_number(value) and (ref.get("value") is None or "scalar" in ref
                                                              or _is_number(ref.get("value"))))
        if not ok:
            raise ValueError(f"snapshot attribute {key!r} is {str(spec)[:80]}, unlike this env's {str(ref)[:80]}")


def _sequence_fits(spec: dict[str, Any], ref: dict[str, Any]) -> bool:
    """True if ``spec`` (an ``array`` or ``tuple`` entry) may replace this env's ``ref`` entry.

    The shape must match, but not the container or the number type: envs change them between
    ``reset`` and ``step`` (gymnasium 1.x: Acrobot's ``state`` is float32 after ``reset`` and float64
    after ``step``, MountainCarContinuous's the other way round; MountainCar's ``state`` is an array
    after ``reset`` and a tuple of numbers after ``step``), so a snapshot keeps its own dtype, which
    must be numeric, and bool only where this env's entry is bool.
    """
    values = spec.get("array", spec.get("tuple"))
    if ("array" in spec) == ("tuple" in spec) or not _numeric_list(values):
        return False
    shape = _shape(values)
    if shape != np.shape(ref.get("array", ref.get("tuple"))):
        return False
    if "tuple" in spec:
        return len(spec) == 1 and len(shape) == 1 and ref.get("dtype", "float64") != "bool"
    return spec.get("dtype") in _NUMERIC_DTYPES and (spec["dtype"] == "bool") == (ref.get("dtype") == "bool")


def _shape(values: list) -> tuple[int, ...] | None:
    """``np.shape`` of nested lists; ``None`` for ragged ones (numpy raises on them)."""
    try:
        return np.shape(values)
    except ValueError:
        return None


_NUMERIC_DTYPES = {str(np.dtype(c)) for c in "?bhilqBHILQefdg"}


def _numeric_list(value: Any) -> bool:
    if isinstance(value, list):
        return all(_numeric_list(v) for v in value)
    return _is_number(value)
