"""``tanh`` through ``sigmoid`` for large CPU batches.

``tanh(x) = 2 sigmoid(2x) - 1``. On CPU (torch 2.13, AVX2) ``torch.tanh`` costs ~3.2 ns per
float32 element against ~1 ns for ``torch.sigmoid`` (measured on [2, 512, 64]: 212 µs vs 63 µs),
so at PPO's 8-env minibatch (512) the two tanh layers of the trunks were a fifth of an update step.
The backward is tanh's own, ``grad * (1 - y^2)`` from the saved output. The result differs from
``torch.tanh`` by at most a few float32 ulps of 1 (absolute ~1e-7).
"""

from __future__ import annotations

import torch

# Below this many elements the extra ops cost more than tanh's slower kernel.
_MIN_NUMEL = 1 << 14


class _SigmoidTanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = torch.sigmoid(x * 2.0).mul_(2.0).sub_(1.0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


def fast_tanh(x: torch.Tensor) -> torch.Tensor:
    """``tanh(x)``, any shape; via ``2 sigmoid(2x) - 1`` for large CPU tensors, else ``torch.tanh``."""
    if x.numel() < _MIN_NUMEL or x.device.type != "cpu":
        return torch.tanh(x)
    return _SigmoidTanh.apply(x)
