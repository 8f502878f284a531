"""Survive an env that raises: rebuild it and drop the episode, not the run."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import gymnasium as gym

from rlblocks.errors import RLBlocksError

#: The info key (and vector-env mask ``_env_error``) set on the step where an env raised.
ERROR_KEY = "env_error"


class RebuildOnError(gym.Wrapper):
    """Outermost per-env wrapper: an exception raised by the env's ``step`` closes that env, builds
    a fresh one with ``make()`` and ends the episode there.

    The failed step returns the last good observation, reward 0, ``terminated=False``,
    ``truncated=True`` (a cut episode, never a terminal state) and ``info["env_error"]`` (one line:
    the exception's type and message). The vector env's autoreset then resets the new env, seeded
    from the old one's generator, so a seeded run stays reproducible. :class:`~rlblocks.components.
    env_runner.EnvRunner` drops that episode from the statistics and logs the event.

    Args:
        make: builds the env (the same call that built the first one).
        max_failures: consecutive failed steps (no good step between them) tolerated; one more
            raises :class:`~rlblocks.errors.RLBlocksError` naming the last exception.
    """

    def __init__(self, make: Callable[[], gym.Env], max_failures: int = 3):
        super().__init__(make())
        self._make, self.max_failures = make, max_failures
        self.failures = 0
        self._last_obs = None
        self._reseed: int | None = None

    def reset(self, **kwargs):
        if self._reseed is not None and kwargs.get("seed") is None:
            kwargs["seed"], self._reseed = self._reseed, None
        obs, info = self.env.reset(**kwargs)
        self._last_obs = obs
        return obs, info

    def step(self, action):
        try:
            obs, reward, terminated, truncated, info = self.env.step(action)
        except Exception as e:
            self.failures += 1
            text = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}".rstrip(": ")
            if self.failures > self.max_failures:
                raise RLBlocksError(f"the env failed {self.failures} steps in a row, even after being rebuilt "
                                    f"({text}); fix the env") from e
            try:
                self._reseed = int(self.env.unwrapped.np_random.integers(2**31 - 1))
            except Exception:  # noqa: BLE001 - a broken env may not even have its generator
                self._reseed = None
            with contextlib.suppress(Exception):  # closing a broken env may fail too; the new one replaces it
                self.env.close()
            self.env = self._make()
            return self._last_obs, 0.0, False, True, {ERROR_KEY: text}
        self.failures = 0
        self._last_obs = obs
        return obs, reward, terminated, truncated, info
