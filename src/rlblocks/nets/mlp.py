"""Plain multi-layer perceptron: the one builder of the feed-forward networks (the batched
ensembles are :class:`rlblocks.nets.ensemble.EnsembleMLP`)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def mlp(in_dim: int, hidden_sizes: list[int], out_dim: int | None, activation: type[nn.Module] = nn.ReLU,
        layer_norm: bool = False, init: Callable[[nn.Linear], nn.Linear] | None = None) -> nn.Sequential:
    """``Linear → act`` per hidden width, then a final ``Linear`` (no output activation), or none
    when ``out_dim`` is ``None`` (a trunk whose output is the last hidden layer).

    Shapes: ``[..., in_dim] → [..., out_dim]`` (``[..., hidden_sizes[-1]]`` for a trunk).
    ``layer_norm`` adds LayerNorm before each activation (mrl's MuJoCo benchmark setting);
    ``init`` re-initialises each hidden ``Linear`` right after it is built (e.g. baselines'
    orthogonal init), so the draws happen in construction order.
    """
    layers: list[nn.Module] = []
    last = in_dim
    for width in hidden_sizes:
        layer = nn.Linear(last, width)
        layers.append(init(layer) if init is not None else layer)
        if layer_norm:
            layers.append(nn.LayerNorm(width))
        layers.append(activation())
        last = width
    if out_dim is not None:
        layers.append(nn.Linear(last, out_dim))
    return nn.Sequential(*layers)
