"""Running mean / standard deviation of observations (Welford / Chan et al. parallel update)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class RunningMeanStd(nn.Module):
    """Tracks mean and variance of ``[B, *shape]`` batches; normalises and clips.

    Statistics are float64 buffers, so they live in ``state_dict`` and are saved with the
    checkpoint. ``frozen=True`` stops updates (evaluation, pre-normalised policies).

    Same semantics as baselines' ``RunningMeanStd``/``VecNormalize`` (Dhariwal et al. 2017):
    ``clip((x - mean) / sqrt(var + eps), -clip, clip)``.

    Called once per env step with a handful of numbers, the cost is per-op overhead: on CPU the
    update runs in NumPy on views of the buffers, and ``forward`` uses float32 copies of
    ``mean`` and ``1/std`` refreshed after each update (three tensor ops per call).
    """

    def __init__(self, shape: tuple[int, ...], clip: float = 10.0, eps: float = 1e-8):
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))
        self.register_buffer("_mean32", torch.zeros(shape), persistent=False)
        self.register_buffer("_inv_std32", torch.ones(shape), persistent=False)
        self.clip, self.eps = clip, eps
        self.frozen = False
        self._numpy: tuple[np.ndarray, ...] | None = None  # views of the CPU buffers, see numpy_views
        self.register_load_state_dict_post_hook(lambda module, keys: module._refresh())
        self._refresh()

    def _apply(self, fn, recurse=True):
        self._numpy = None  # .to()/.float() may replace the buffers the views point at
        return super()._apply(fn, recurse)

    def numpy_views(self) -> tuple[np.ndarray, ...]:
        """NumPy views of ``(mean, var, count, mean32, inv_std32)``, shared with the buffers, so they
        see every update and ``load_state_dict`` (CPU buffers only; rebuilt after ``.to()``).

        ``mean32``/``inv_std32`` are the float32 ``mean`` and ``1/sqrt(var + eps)`` that ``forward``
        uses; NumPy callers (the CPU acting path) normalise with them."""
        if self._numpy is None:
            b = self._buffers
            self._numpy = tuple(b[k].numpy() for k in ("mean", "var", "count", "_mean32", "_inv_std32"))
        return self._numpy

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Fold a batch ``[B, *shape]`` into the statistics (no-op when frozen)."""
        if self.frozen:
            return
        n = x.shape[0]
        if self.mean.device.type != "cpu":
            x = x.to(self.mean.device, torch.float64)
            self._combine(x.mean(0), x.var(0, unbiased=False), n, self.mean, self.var, self.count)
            self._refresh()
            return
        mean, var, count, mean32, inv_std32 = self.numpy_views()
        x = x.numpy()
        if n == 1:  # one env: the batch is the sample, its variance 0
            batch_mean, batch_var = x[0].astype(np.float64), 0.0
        else:
            batch_mean = x.mean(0, dtype=np.float64)
            batch_var = np.square(x - batch_mean).mean(0)
        self._combine(batch_mean, batch_var, n, mean, var, count)
        mean32[...] = mean
        np.reciprocal(np.sqrt(var + self.eps), out=inv_std32, casting="same_kind")

    @staticmethod
    def _combine(batch_mean, batch_var, n, mean, var, count) -> None:
        """Chan et al.'s parallel update, in place on ``mean``, ``var``, ``count`` (NumPy or torch)."""
        delta = batch_mean - mean
        total = count + n
        var[...] = (var * count + batch_var * n + delta * delta * (count * n / total)) / total
        mean += delta * (n / total)
        count[...] = total

    @torch.no_grad()
    def _refresh(self) -> None:
        self._mean32.copy_(self.mean)
        self._inv_std32.copy_((self.var + self.eps).rsqrt())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self._mean32) * self._inv_std32).clamp_(-self.clip, self.clip)
