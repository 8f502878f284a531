"""Plain multi-layer perceptron."""

from __future__ import annotations

from torch import nn


def mlp(in_dim: int, hidden_sizes: list[int], out_dim: int, activation: type[nn.Module] = nn.ReLU,
        layer_norm: bool = False) -> nn.Sequential:
    """``Linear → act`` per hidden width, then a final ``Linear`` (no output activation).

    Shapes: ``[..., in_dim] → [..., out_dim]``. ``layer_norm`` adds LayerNorm before each
    activation (mrl's MuJoCo benchmark setting).
    """
    layers: list[nn.Module] = []
    last = in_dim
    for width in hidden_sizes:
        layers.append(nn.Linear(last, width))
        if layer_norm:
            layers.append(nn.LayerNorm(width))
        layers.append(activation())
        last = width
    layers.append(nn.Linear(last, out_dim))
    return nn.Sequential(*layers)
