"""Target networks (Mnih et al. 2015) with Polyak averaging (Lillicrap et al. 2015, Eq. in Alg. 1)."""

from __future__ import annotations

import copy

import torch
from torch import nn


def target_copy(net: nn.Module) -> nn.Module:
    """A frozen deep copy of ``net`` (no gradients) to serve as its target network."""
    target = copy.deepcopy(net)
    target.requires_grad_(False)
    return target


@torch.no_grad()
def polyak_update(target_params: list[torch.Tensor], params: list[torch.Tensor], tau: float) -> None:
    """``theta' <- (1 - tau) theta' + tau theta`` for all tensors at once (one foreach kernel)."""
    torch._foreach_lerp_(target_params, params, tau)
