"""Batched hidden layers ``act(bias + x @ weight)`` for small ensembles of MLP trunks.

``tanh_layer`` is one autograd node for the batched matmul and the tanh, with tanh computed as
``2 sigmoid(2z) - 1``. On CPU (torch 2.13, AVX2) ``torch.tanh`` costs ~3.2 ns per float32
element against ~1 ns for ``torch.sigmoid`` (measured on [2, 512, 64]: 212 µs vs 63 µs), so at
PPO's 8-env minibatch (512 rows) the two tanh layers of the trunks were a fifth of an update
step. The factor 2 is folded into the matmul (``baddbmm`` with ``alpha = beta = 2``, exact in
floating point) and the sigmoid runs in place, so the forward pass is three kernels where
``tanh(baddbmm(...))`` through autograd was five plus two graph nodes; the backward is
``baddbmm``'s with tanh's ``grad * (1 - y^2)`` from the saved output. Values differ from
``torch.tanh`` by at most a few float32 ulps of 1 (absolute ~1e-7).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

# Below this many output elements (256 rows of 2 x 64) the Python of a custom autograd node costs
# more than tanh's slower kernel saves (measured: 64 rows 1.34x and 128 rows 1.13x slower fused).
_MIN_NUMEL = 1 << 15
_MINUS_ONE = torch.tensor(-1.0)


class _TanhLayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        y = torch.baddbmm(bias, x, weight, beta=2.0, alpha=2.0).sigmoid_()  # sigmoid(2z)
        y = torch.add(_MINUS_ONE, y, alpha=2.0)  # 2 sigmoid(2z) - 1 in one kernel
        ctx.save_for_backward(x, weight, y)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight, y = ctx.saved_tensors
        grad_z = torch.ops.aten.tanh_backward(grad, y)
        need_x, need_w, need_b = ctx.needs_input_grad
        return (grad_z.bmm(weight.transpose(1, 2)) if need_x else None,
                x.transpose(1, 2).bmm(grad_z) if need_w else None,
                grad_z.sum(1, keepdim=True) if need_b else None)


def tanh_layer(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``tanh(bias + x @ weight)`` per ensemble member.

    Shapes: ``x [E, B, in]`` (an expanded view is fine), ``weight [E, in, out]``,
    ``bias [E, 1, out]`` → ``[E, B, out]``. Large CPU batches take the fused sigmoid form above;
    small ones (acting) and other devices ``torch.tanh(torch.baddbmm(...))``.
    """
    if x.device.type != "cpu" or x.shape[0] * x.shape[1] * weight.shape[-1] < _MIN_NUMEL:
        return torch.tanh(torch.baddbmm(bias, x, weight))
    return _TanhLayer.apply(x, weight, bias)


def relu_layer(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``relu(bias + x @ weight)`` per ensemble member; shapes as :func:`tanh_layer`."""
    return torch.relu(torch.baddbmm(bias, x, weight))
