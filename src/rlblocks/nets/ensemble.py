"""Batched ensembles: E independent MLPs evaluated with one batched matmul per layer.

Used for twin Q (E = 2, TD3/SAC, Fujimoto et al. 2018, arXiv 1802.09477) and for larger critic
ensembles. Members never share weights; only the kernel launch is shared.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn


class EnsembleLinear(nn.Module):
    """E linear layers in one module: ``y[e] = x[e] @ W[e] + b[e]``.

    Weights are shaped ``[E, in, out]`` and biases ``[E, 1, out]``; each member is initialised
    like ``nn.Linear`` (uniform in ±1/sqrt(in)).

    Shapes: ``x`` is ``[E, B, in]`` → ``[E, B, out]``.
    """

    def __init__(self, ensemble_size: int, in_features: int, out_features: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(ensemble_size, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(ensemble_size, 1, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, detach_params: bool = False, members: slice | None = None) -> torch.Tensor:
        w, b = (self.weight.detach(), self.bias.detach()) if detach_params else (self.weight, self.bias)
        if members is not None:
            w, b = w[members], b[members]
        if w.shape[-1] == 1:
            # A batched matrix-vector product: multiply-and-sum is ~2.5x faster than bmm on
            # CPU for this shape (forward + backward), e.g. the scalar head of a Q ensemble.
            return (x * w.transpose(1, 2)).sum(-1, keepdim=True) + b
        return torch.baddbmm(b, x, w)


class EnsembleMLP(nn.Module):
    """E MLPs with ReLU hidden layers, as a stack of :class:`EnsembleLinear`.

    Shapes: ``x`` is ``[B, in]`` (shared by all members) or ``[E, B, in]`` → ``[E, B, out]``.

    ``members`` (a slice) evaluates only those members, e.g. ``slice(0, 1)`` for TD3's ``Q_1``.
    ``detach_params=True`` computes the same output without building gradients for the
    ensemble's own parameters (gradients still flow to ``x``): the actor loss of DDPG/TD3/SAC
    needs ``dQ/da`` only, so this skips the weight-gradient matmuls.
    """

    def __init__(self, ensemble_size: int, in_dim: int, hidden_sizes: list[int], out_dim: int,
                 layer_norm: bool = False):
        super().__init__()
        self.ensemble_size = ensemble_size
        dims = [in_dim, *hidden_sizes, out_dim]
        self.layers = nn.ModuleList(EnsembleLinear(ensemble_size, a, b) for a, b in itertools.pairwise(dims))
        self.norms = nn.ModuleList(nn.LayerNorm(d, elementwise_affine=False) for d in hidden_sizes) if layer_norm else None

    def forward(self, x: torch.Tensor, detach_params: bool = False, members: slice | None = None,
                return_hidden: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Output ``[E, B, out]``; with ``return_hidden`` also the last hidden layer ``[E, B, H]``."""
        if x.dim() == 2:
            size = self.ensemble_size if members is None else len(range(self.ensemble_size)[members])
            x = x.expand(size, *x.shape)
        last = len(self.layers) - 1
        hidden = x
        for i, layer in enumerate(self.layers):
            x = layer(x, detach_params, members)
            if i < last:
                if self.norms is not None:
                    x = self.norms[i](x)
                x = hidden = torch.relu(x)
        return (x, hidden) if return_hidden else x


class QEnsemble(nn.Module):
    """E state-action value functions ``Q_e(s, a)`` as one batched module.

    Shapes: ``obs [B, obs_dim]``, ``action [B, act_dim]`` → ``[E, B]`` (``E`` = the number of
    ``members`` selected, all by default).
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: list[int], ensemble_size: int = 2,
                 layer_norm: bool = False):
        super().__init__()
        self.net = EnsembleMLP(ensemble_size, obs_dim + act_dim, hidden_sizes, 1, layer_norm)

    @property
    def ensemble_size(self) -> int:
        return self.net.ensemble_size

    def forward(self, obs: torch.Tensor, action: torch.Tensor, detach_params: bool = False,
                members: slice | None = None, return_hidden: bool = False):
        """``Q [E, B]``; with ``return_hidden`` also the last hidden layer ``[E, B, H]`` (MERL heads)."""
        out = self.net(torch.cat([obs, action], dim=-1), detach_params, members, return_hidden)
        return (out[0].squeeze(-1), out[1]) if return_hidden else out.squeeze(-1)
