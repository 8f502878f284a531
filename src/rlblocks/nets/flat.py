"""One contiguous tensor for a set of parameters and one for their gradients.

Small-network updates on CPU are bound by per-tensor overhead, not arithmetic: zeroing, the
global-norm clip and Adam each loop over every parameter tensor (13 for PPO's actor-critic).
:class:`FlatParameters` re-points each parameter at a slice of one flat tensor and its ``.grad``
at a slice of one flat gradient, so those three steps become one op each on one tensor while the
modules keep working unchanged (autograd accumulates into the existing ``.grad`` views in place).
The same idea as Apex/DeepSpeed's flat master parameters.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.optim.adam import adam


def accepts_keyword(fn: Callable, name: str) -> bool:
    """Whether ``fn`` takes the keyword argument ``name``."""
    return name in inspect.signature(fn).parameters


#: torch 2.7 merged AdamW into Adam: its functional ``adam`` (and the optimiser's param groups) gained
#: ``decoupled_weight_decay``. torch 2.4-2.6 have neither, and passing it there is a TypeError.
#: Checked once, at import, on the installed torch's signature.
_ADAM_DECOUPLED_WEIGHT_DECAY = accepts_keyword(adam, "decoupled_weight_decay")


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
        """Scale the gradient to global L2 norm at most ``max_norm``; returns the norm before clipping.

        The formula of ``nn.utils.clip_grad_norm_`` (``g *= min(1, max_norm / (||g|| + 1e-6))``)
        written for one tensor: 3 ops, where the general utility's grouping and checks cost
        4× as much on PPO's 11k parameters.
        """
        grad = self.param.grad
        norm = torch.linalg.vector_norm(grad)
        grad.mul_((max_norm / (norm + 1e-6)).clamp_(max=1.0))
        return norm

    @torch.no_grad()
    def adam_step(self, optimizer: torch.optim.Adam) -> None:
        """``optimizer.step()`` through torch's functional ``adam`` with the optimizer's own state,
        hyperparameters and kernel (fused where the optimizer is): the same update, without
        ``Optimizer.step``'s per-call hooks and group bookkeeping (half the cost at PPO's size).
        The first call, which creates the state, goes through ``optimizer.step()``.

        Raises:
            ValueError: ``optimizer`` is not a ``torch.optim.Adam`` (before torch 2.7 ``AdamW`` is another
                class, whose decoupled decay this step would not apply), does not hold exactly
                ``self.param`` in one group, or uses amsgrad.
        """
        groups = optimizer.param_groups
        params = groups[0]["params"]
        if (not isinstance(optimizer, torch.optim.Adam) or len(groups) != 1 or len(params) != 1
                or params[0] is not self.param or groups[0]["amsgrad"]):
            raise ValueError("adam_step needs an Adam optimizer over [flat.param] alone, without amsgrad")
        state = optimizer.state.get(self.param)
        if not state:
            optimizer.step()
            return
        g = groups[0]
        beta1, beta2 = g["betas"]
        decoupled = g.get("decoupled_weight_decay", False)  # AdamW is Adam with this flag from torch 2.7
        extra = {"decoupled_weight_decay": decoupled} if _ADAM_DECOUPLED_WEIGHT_DECAY else {}
        adam([self.param], [self.param.grad], [state["exp_avg"]], [state["exp_avg_sq"]], [], [state["step"]],
             foreach=g["foreach"], capturable=g["capturable"], differentiable=g["differentiable"],
             fused=g["fused"], amsgrad=False, beta1=beta1, beta2=beta2, lr=g["lr"],
             weight_decay=g["weight_decay"], eps=g["eps"], maximize=g["maximize"], **extra)
