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

    def update(self, x: torch.Tensor) -> None:
        """Fold a batch ``[B, *shape]`` into the statistics (no-op when frozen)."""
        if self.frozen:
            return
        n = x.shape[0]
        if self._numpy is None and self.mean.device.type != "cpu":
            with torch.no_grad():
                x = x.to(self.mean.device, torch.float64)
                self._combine(x.mean(0), x.var(0, unbiased=False), n, self.mean, self.var, self.count)
                self._refresh()
            return
        # CPU: NumPy on views of the buffers, written as reductions and in-place ufuncs because at
        # [8, 17] each call is overhead (np.mean/np.var cost 3x add.reduce, the torch path 5x this).
        mean, var, count, mean32, inv_std32 = self.numpy_views()
        x = x.numpy()
        batch_mean = np.add.reduce(x, 0, dtype=np.float64)
        batch_mean /= n
        d = x - batch_mean
        d *= d
        batch_var = np.add.reduce(d, 0)
        batch_var /= n
        # _combine's formula, in place with a Python-float count (same operations, same rounding).
        c = float(count)
        total = c + n
        delta = batch_mean
        delta -= mean
        var *= c
        batch_var *= n
        var += batch_var
        batch_var = np.multiply(delta, delta, out=batch_var)
        batch_var *= c * n / total
        var += batch_var
        var /= total
        delta *= n / total
        mean += delta
        count[...] = total
        mean32[...] = mean
        d = var + self.eps
        np.sqrt(d, out=d)
        np.divide(1.0, d, out=inv_std32, casting="same_kind")

    @staticmethod
    def _combine(batch_mean, batch_var, n, mean, var, count) -> None:
        """Chan et al.'s parallel update, in place on ``mean``, ``var``, ``count`` (torch tensors, any device)."""
        delta = batch_mean - mean
        total = count + n
        var.copy_((var * count + batch_var * n + delta * delta * (count * n / total)) / total)
        mean.add_(delta * (n / total))
        count.copy_(total)

    @torch.no_grad()
    def _refresh(self) -> None:
        self._mean32.copy_(self.mean)
        self._inv_std32.copy_((self.var + self.eps).rsqrt())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self._mean32) * self._inv_std32).clamp_(-self.clip, self.clip)
