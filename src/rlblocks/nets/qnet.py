"""Discrete-action Q networks: one output per action, optionally with a dueling head."""

from __future__ import annotations

import torch
from torch import nn

from rlblocks.nets.mlp import mlp


class QNetwork(nn.Module):
    """``Q(s, .)`` for ``n_actions`` discrete actions (Mnih et al. 2015, Nature 518).

    With ``dueling`` (Wang et al. 2016, "Dueling Network Architectures for Deep Reinforcement
    Learning", arXiv 1511.06581, Eq. 9) the last hidden layer feeds a value stream ``V(s)`` and an
    advantage stream ``A(s, a)``, combined as ``Q = V + A - mean_a A``.

    Shapes: ``obs [B, obs_dim]`` → ``[B, n_actions]``.
    """

    def __init__(self, obs_dim: int, n_actions: int, hidden_sizes: list[int], dueling: bool = False):
        super().__init__()
        self.dueling = dueling
        if dueling:
            self.trunk = mlp(obs_dim, hidden_sizes[:-1], hidden_sizes[-1])
            self.value = nn.Linear(hidden_sizes[-1], 1)
            self.advantage = nn.Linear(hidden_sizes[-1], n_actions)
        else:
            self.net = mlp(obs_dim, hidden_sizes, n_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if not self.dueling:
            return self.net(obs)
        h = torch.relu(self.trunk(obs))
        a = self.advantage(h)
        return self.value(h) + a - a.mean(-1, keepdim=True)
