"""Action noise for deterministic policies, in the normalised action box [-1, 1].

Both processes draw from torch's global RNG so that a checkpoint's RNG state covers them.
"""

from __future__ import annotations

import torch


class GaussianNoise:
    """i.i.d. ``N(0, sigma^2)`` per action dimension (TD3, Fujimoto et al. 2018, Sec. 6.1)."""

    def __init__(self, num_envs: int, act_dim: int, sigma: float):
        self.sigma = sigma
        self.shape = (num_envs, act_dim)

    def __call__(self) -> torch.Tensor:
        return self.sigma * torch.randn(self.shape)

    def reset(self, env_index: int) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class OrnsteinUhlenbeckNoise:
    """Temporally correlated noise (DDPG, Lillicrap et al. 2015, Sec. 7: theta 0.15, sigma 0.2).

    ``x <- x + theta (mu - x) dt + sigma sqrt(dt) N(0, 1)``, one process per env, reset to 0
    at each episode start.
    """

    def __init__(self, num_envs: int, act_dim: int, sigma: float, theta: float = 0.15, dt: float = 1e-2):
        self.sigma, self.theta, self.dt = sigma, theta, dt
        self.x = torch.zeros(num_envs, act_dim)

    def __call__(self) -> torch.Tensor:
        self.x += self.theta * -self.x * self.dt + self.sigma * self.dt**0.5 * torch.randn_like(self.x)
        return self.x.clone()

    def reset(self, env_index: int) -> None:
        self.x[env_index] = 0.0

    def state_dict(self) -> dict:
        return {"x": self.x.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.x.copy_(state["x"])


def make_noise(kind: str, num_envs: int, act_dim: int, sigma: float):
    """``kind`` is ``"gaussian"`` or ``"ou"``."""
    if kind == "ou":
        return OrnsteinUhlenbeckNoise(num_envs, act_dim, sigma)
    return GaussianNoise(num_envs, act_dim, sigma)
