"""One contiguous tensor for a set of parameters and one for their gradients.

Small-network updates on CPU are bound by per-tensor overhead, not arithmetic: zeroing, the
global-norm clip and Adam each loop over every parameter tensor (13 for PPO's actor-critic).
:class:`FlatParameters` re-points each parameter at a slice of one flat tensor and its ``.grad``
at a slice of one flat gradient, so those three steps become one op each on one tensor while the
modules keep working unchanged (autograd accumulates into the existing ``.grad`` views in place).
The same idea as Apex/DeepSpeed's flat master parameters.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


class FlatParameters:
    """Views ``params`` (all on one device and dtype) into one flat parameter with one flat grad.

    Call it after the modules are on their final device (``Module.to`` would replace the views).
    Hand ``flat.param`` to the optimiser; use :meth:`zero_grad` instead of the optimiser's (the
    per-parameter ``.grad`` views must never be set to ``None``).

    Raises:
        ValueError: no parameters, or parameters on several devices or dtypes.
    """

    def __init__(self, params: Iterable[nn.Parameter]):
        params = list(params)
        if not params:
            raise ValueError("FlatParameters needs at least one parameter")
        if len({(p.device, p.dtype) for p in params}) != 1:
            raise ValueError("FlatParameters needs all parameters on one device with one dtype")
        ref = params[0]
        total = sum(p.numel() for p in params)
        flat = torch.empty(total, device=ref.device, dtype=ref.dtype)
        grad = torch.zeros_like(flat)
        offset = 0
        for p in params:
            n = p.numel()
            flat[offset:offset + n].copy_(p.detach().reshape(-1))
            p.data = flat[offset:offset + n].view_as(p)
            p.grad = grad[offset:offset + n].view_as(p)
            offset += n
        self.params = params
        self.param = nn.Parameter(flat)
        self.param.grad = grad

    def zero_grad(self) -> None:
        self.param.grad.zero_()

    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """Scale the gradient to global L2 norm at most ``max_norm`` (as ``nn.utils.clip_grad_norm_``)."""
        return nn.utils.clip_grad_norm_([self.param], max_norm)
