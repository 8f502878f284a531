"""The ``return_normalizer`` module: reward scaling with VecNormalize semantics.

OpenAI baselines' ``VecNormalize`` (Dhariwal et al. 2017): each env keeps a running discounted
return ``ret <- gamma * ret + r``; the running variance of ``ret`` over all envs and steps scales
the rewards the learner sees, ``clip(r / sqrt(Var[ret] + eps), -clip, clip)``; ``ret`` is reset
to 0 where an episode ends. Rewards are scaled, never centred (centring would change the task).

Unlike baselines, the statistics are part of the checkpoint (``state_dict``), and they change in
``process_experience`` only, so evaluation (which reads raw env rewards) never touches them.
"""

from __future__ import annotations

import numpy as np
import torch

from rlblocks.module import Module, Weights


class ReturnNormalizer(Module, Weights):
    """Scales training rewards by the std of a running discounted return.

    Disabled (``enabled=False``) :meth:`scale` is the identity, so learners call it
    unconditionally. Place it before the module that stores rewards: its statistics include the
    current step before that step's reward is scaled, as in ``VecNormalize.step_wait``.

    Shapes: ``scale`` maps ``[num_envs]`` to ``[num_envs]``.
    """

    name = "return_normalizer"

    def __init__(self, num_envs: int, gamma: float, enabled: bool, clip: float = 10.0, eps: float = 1e-8):
        super().__init__()
        self.enabled, self.gamma, self.clip, self.eps = enabled, gamma, clip, eps
        # Scalar statistics as Python floats (float64): a handful of flops per env step, where
        # tensor ops would cost more in dispatch than in arithmetic. Initial values as baselines'
        # RunningMeanStd (count 1e-4).
        self.mean, self.var, self.count = 0.0, 1.0, 1e-4
        self.ret = np.zeros(num_envs)

    def process_experience(self, exp) -> None:
        if not self.enabled:
            return
        ret = self.ret
        ret *= self.gamma
        ret += exp["reward"].numpy()
        self._update(ret)
        ended = exp["terminated"].numpy() | exp["truncated"].numpy()
        if ended.any():  # rare; a masked write costs more than this test
            ret[ended] = 0.0

    def _update(self, x: np.ndarray) -> None:
        """Chan et al. parallel mean/variance update with a batch ``x`` (as ``RunningMeanStd``)."""
        # Sums rather than np.mean/np.var (each ~10x the cost of a sum on a few floats).
        n = x.shape[0]
        batch_mean = float(x.sum()) / n
        batch_var = max(float(np.dot(x, x)) / n - batch_mean * batch_mean, 0.0)
        delta, total = batch_mean - self.mean, self.count + n
        self.mean += delta * n / total
        self.var = (self.var * self.count + batch_var * n + delta * delta * self.count * n / total) / total
        self.count = total

    @property
    def std(self) -> float:
        return (self.var + self.eps) ** 0.5

    def scale(self, reward: torch.Tensor) -> torch.Tensor:
        """``clip(reward / sqrt(Var[ret] + eps), ±clip)`` (identity when disabled)."""
        if not self.enabled:
            return reward
        return (reward / self.std).clamp(-self.clip, self.clip)

    def state_dict(self):
        stats = torch.tensor([self.mean, self.var, self.count], dtype=torch.float64)
        return {"stats": stats, "ret": torch.from_numpy(self.ret.copy())}

    def load_state_dict(self, state):
        self.mean, self.var, self.count = state["stats"].tolist()
        self.ret = state["ret"].numpy().copy()
