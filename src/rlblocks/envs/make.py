"""Make single and vector gymnasium envs with clear errors and per-env seeding."""

from __future__ import annotations

import contextlib
import difflib
import io
import signal
import warnings

import gymnasium as gym
from gymnasium.vector import AutoresetMode

from rlblocks.envs.recover import RebuildOnError
from rlblocks.envs.snapshot import CUT_KEY, Snapshot
from rlblocks.errors import RLBlocksError


def _mujoco_warning(message: str) -> None:
    # MuJoCo 3.3+ warns (on stderr and in ./MUJOCO_LOG.TXT) about a deprecated attribute in
    # gymnasium's own XML files at every make(); pass on everything else as a Python warning.
    if "settotalmass" not in message:
        warnings.warn(f"MuJoCo: {message.strip()}", stacklevel=2)


def _quiet_mujoco() -> None:
    try:
        import mujoco
    except (ImportError, RuntimeError):  # not installed, or MUJOCO_GL invalid: make_env reports it for MuJoCo envs
        return
    if mujoco.get_mju_user_warning() is not _mujoco_warning:
        mujoco.set_mju_user_warning(_mujoco_warning)

_EXTRA_HINT = {
    "mujoco": 'install the MuJoCo extra: pip install -e ".[mujoco]"',
    "box2d": 'install Box2D: pip install "gymnasium[box2d]"',
    "robotics": 'install the robotics extra: pip install -e ".[robotics]"',
}


def _register_optional() -> None:
    """Register gymnasium-robotics' envs (Fetch*, HandManipulate*, ...) when it is installed.

    Its import prints notices about envs we do not use (AdroitHand reward versions) and may warn;
    they are silenced here so that they do not precede an unrelated error message.
    """
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            import gymnasium_robotics

            gym.register_envs(gymnasium_robotics)
    except ImportError:
        pass


def check_env_id(env_id: str) -> None:
    """Raise :class:`RLBlocksError` with close matches if ``env_id`` is not registered."""
    if env_id in gym.registry:
        return
    _register_optional()
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see gymnasium.pprint_registry() for the ids"
    raise RLBlocksError(f"unknown env id {env_id!r}{hint}")


def make_env(env_id: str, index: int = 0, render_mode: str | None = None, **kwargs) -> gym.Env:
    """``gym.make`` wrapped in :class:`Snapshot` (for exact resume).

    Raises:
        RLBlocksError: unknown id, or a missing optional dependency (names the extra to install).
    """
    check_env_id(env_id)
    _quiet_mujoco()
    try:
        env = gym.make(env_id, render_mode=render_mode, **kwargs)
    except (ImportError, gym.error.DependencyNotInstalled) as e:
        text = str(e).lower()
        extra = next((k for k in _EXTRA_HINT if k in text), None)
        hint = _EXTRA_HINT[extra] if extra else "install the package it names"
        raise RLBlocksError(f"{env_id} needs a package that is missing ({e}); {hint}") from None
    except RuntimeError as e:  # mujoco refuses to import with an unknown MUJOCO_GL
        if "MUJOCO_GL" not in str(e):
            raise
        raise RLBlocksError(f"{env_id}: {e}; set MUJOCO_GL to egl, osmesa or glfw, or unset it") from None
    return Snapshot(env, index)


class KeepInfoKeys(gym.Wrapper):
    """Keeps only ``keys`` of the info dicts an env returns from ``step`` and ``reset``.

    Vector envs merge every per-env info key into arrays at every step (gymnasium's
    ``VectorEnv._add_info``): for HalfCheetah's four keys, 10% of ``SyncVectorEnv.step``'s time
    under cProfile on the CI machine (a few µs per env step), spent on values nobody reads.
    """

    def __init__(self, env: gym.Env, keys: tuple[str, ...] = ()):
        super().__init__(env)
        self.keys = (*keys, CUT_KEY)  # the Snapshot wrapper's own key, which the env runner reads

    def _filter(self, info: dict) -> dict:
        return {k: info[k] for k in self.keys if k in info}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, self._filter(info)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return obs, self._filter(info)


def make_vec_env(env_id: str, num_envs: int, mode: str = "sync", render_mode: str | None = None,
                 info_keys: tuple[str, ...] | None = None, copy: bool = True,
                 autoreset_mode: AutoresetMode = AutoresetMode.SAME_STEP, recover: bool = False) -> gym.vector.VectorEnv:
    """A gymnasium vector env with ``SAME_STEP`` autoreset (``autoreset_mode`` to change it).

    With ``SAME_STEP``, a step that ends an episode returns the first observation of the next
    one and puts the true last observation in ``info["final_obs"]`` (mask ``info["_final_obs"]``),
    so every stored transition is a real one and no step is spent on a reset.
    Seeding is done by the caller through ``reset(seed=s)``: env ``i`` gets seed ``s + i``.
    ``info_keys`` (``None``: all) limits the envs' own info keys passed on (see :class:`KeepInfoKeys`);
    ``final_obs`` is the vector env's and always present. ``copy=False`` returns the vector env's
    own observation array, overwritten by the next step (for callers that convert it at once).
    ``recover`` wraps each env in :class:`~rlblocks.envs.recover.RebuildOnError`: an env that raises
    in ``step`` is rebuilt and its episode cut there (``info["env_error"]`` says why).
    """
    check_env_id(env_id)
    if mode == "async":
        make_env(env_id, 0).close()  # surface dependency errors here, not inside a worker process

    def make(i: int) -> gym.Env:
        if mode == "async":
            # In a worker process: Ctrl-C in a terminal and a scheduler's SIGTERM reach every process
            # of the group; the driver alone decides (it checkpoints, then closes the workers).
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        def build() -> gym.Env:
            env = make_env(env_id, i, render_mode)
            return env if info_keys is None else KeepInfoKeys(env, info_keys)

        return RebuildOnError(build) if recover else build()

    fns = [lambda i=i: make(i) for i in range(num_envs)]
    cls = gym.vector.AsyncVectorEnv if mode == "async" else gym.vector.SyncVectorEnv
    return cls(fns, autoreset_mode=autoreset_mode, copy=copy)
