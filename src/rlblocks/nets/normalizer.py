"""Running mean / standard deviation of observations (Welford / Chan et al. parallel update)."""

from __future__ import annotations

import torch
from torch import nn


class RunningMeanStd(nn.Module):
    """Tracks mean and variance of ``[B, *shape]`` batches; normalises and clips.

    Statistics are float64 buffers, so they live in ``state_dict`` and are saved with the
    checkpoint. ``frozen=True`` stops updates (evaluation, pre-normalised policies).

    Same semantics as baselines' ``RunningMeanStd``/``VecNormalize`` (Dhariwal et al. 2017):
    ``clip((x - mean) / sqrt(var + eps), -clip, clip)``.
    """

    def __init__(self, shape: tuple[int, ...], clip: float = 10.0, eps: float = 1e-8):
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))
        self.clip, self.eps = clip, eps
        self.frozen = False

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Fold a batch ``[B, *shape]`` into the statistics (no-op when frozen)."""
        if self.frozen:
            return
        x = x.to(torch.float64)
        batch_mean, batch_var, n = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        delta = batch_mean - self.mean
        total = self.count + n
        self.mean += delta * n / total
        self.var.copy_((self.var * self.count + batch_var * n + delta.square() * self.count * n / total) / total)
        self.count.copy_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean.to(x.dtype), (self.var + self.eps).sqrt().to(x.dtype)
        return ((x - mean) / std).clamp(-self.clip, self.clip)
