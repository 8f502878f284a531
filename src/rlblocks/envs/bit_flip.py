"""Bit flipping: the toy goal environment of Andrychowicz et al. 2017, "Hindsight Experience
Replay" (arXiv 1707.01495, Sec. 3.1).

The state is ``n`` bits, the goal another ``n`` bits, both uniform at reset (redrawn until they
differ). Action ``i`` flips bit ``i``. Reward is sparse: ``-1`` unless the state equals the goal,
then ``0``. An episode lasts at most ``n`` steps (truncation) and ends (``terminated``) at the goal,
as Stable-Baselines3's ``BitFlippingEnv``: unlike Fetch, every action moves away from the goal, so a
never-ending episode could finish at the goal only when its steps left have the parity of the bits
still wrong (half of the episodes). Train it with ``her_terminal=true`` (the registry's BitFlip
preset), which makes reaching a relabelled goal terminal too (mrl's ``first_visit_succ``);
``terminate_on_success=False`` gives the never-terminating variant.

Registered as ``BitFlip-v0`` (``n_bits=10``; ``gym.make("BitFlip-v0", n_bits=N)`` for other sizes)
and ``BitFlip{N}-v0`` for N in 5, 10, 15, 20, 25, 30, 40, 50 (the ids the CLI can name).
Observations are float32 ``{observation, achieved_goal, desired_goal}`` of ``n`` bits each; the
observation equals the achieved goal. ``info["is_success"]`` is 1.0 at the goal, else 0.0.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

SIZES = (5, 10, 15, 20, 25, 30, 40, 50)


class BitFlipEnv(gym.Env):
    """``n_bits`` bits to flip into the goal; see the module docstring.

    Args:
        n_bits: number of bits (>= 1).
        max_steps: steps before truncation (default ``n_bits``, the HER paper's horizon).
        terminate_on_success: end the episode (``terminated``) when the goal is reached (default).
        render_mode: must be ``None`` (no rendering).

    Raises:
        ValueError: ``n_bits`` or ``max_steps`` below 1, or a ``render_mode``.
    """

    metadata = {"render_modes": []}  # noqa: RUF012 - gymnasium's convention

    def __init__(self, n_bits: int = 10, max_steps: int | None = None, terminate_on_success: bool = True,
                 render_mode: str | None = None):
        if render_mode is not None:
            raise ValueError(f"BitFlip has no rendering (render_mode={render_mode!r})")
        if n_bits < 1 or (max_steps is not None and max_steps < 1):
            raise ValueError(f"BitFlip needs n_bits >= 1 and max_steps >= 1, got {n_bits}, {max_steps}")
        self.n_bits = int(n_bits)
        self.max_steps = int(max_steps if max_steps is not None else n_bits)
        self.terminate_on_success = bool(terminate_on_success)
        box = gym.spaces.Box(0.0, 1.0, (self.n_bits,), np.float32)
        self.observation_space = gym.spaces.Dict({"observation": box, "achieved_goal": box, "desired_goal": box})
        self.action_space = gym.spaces.Discrete(self.n_bits)
        # public arrays and numbers: captured by rlblocks.envs.snapshot for exact resume
        self.state = np.zeros(self.n_bits, dtype=np.float32)
        self.goal = np.ones(self.n_bits, dtype=np.float32)
        self.steps = 0

    def compute_reward(self, achieved_goal, desired_goal, info=None) -> np.ndarray:
        """``-1`` where any bit differs, else ``0``; vectorised over leading dimensions
        (``[..., n]`` → ``[...]`` float32)."""
        return 0.0 - np.any(np.asarray(achieved_goal) != np.asarray(desired_goal), axis=-1).astype(np.float32)

    def _obs(self) -> dict[str, np.ndarray]:
        return {"observation": self.state.copy(), "achieved_goal": self.state.copy(), "desired_goal": self.goal.copy()}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.state = self.np_random.integers(0, 2, self.n_bits).astype(np.float32)
        self.goal = self.np_random.integers(0, 2, self.n_bits).astype(np.float32)
        while np.array_equal(self.state, self.goal):
            self.goal = self.np_random.integers(0, 2, self.n_bits).astype(np.float32)
        self.steps = 0
        return self._obs(), {}

    def step(self, action):
        a = int(action)
        if not 0 <= a < self.n_bits:
            raise ValueError(f"BitFlip action {action} is not in [0, {self.n_bits})")
        self.state[a] = 1.0 - self.state[a]
        self.steps += 1
        reward = float(self.compute_reward(self.state, self.goal))
        success = reward == 0.0
        terminated = self.terminate_on_success and success
        truncated = self.steps >= self.max_steps and not terminated
        return self._obs(), reward, terminated, truncated, {"is_success": float(success)}


def register() -> None:
    """Register ``BitFlip-v0`` and ``BitFlip{N}-v0`` (idempotent)."""
    entry = "rlblocks.envs.bit_flip:BitFlipEnv"
    if "BitFlip-v0" not in gym.registry:
        gym.register("BitFlip-v0", entry_point=entry, kwargs={"n_bits": 10})
    for n in SIZES:
        if f"BitFlip{n}-v0" not in gym.registry:
            gym.register(f"BitFlip{n}-v0", entry_point=entry, kwargs={"n_bits": n})
