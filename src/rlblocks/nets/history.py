"""History encoder: a recurrent cell over observations and, optionally, the previous action and reward.

The encoder of the recurrent off-policy actors and critics (RDPG, Heess et al. 2015, "Memory-based
control with recurrent neural networks", arXiv 1512.04455, Sec. 3: ``h_t`` summarises
``o_1, a_1, ..., a_{t-1}, o_t``). Which inputs it reads is ``inputs``:

* ``obs``: ``o_t`` only;
* ``obs_action``: ``o_t`` and ``a_{t-1}``;
* ``obs_action_reward``: ``o_t``, ``a_{t-1}`` and ``r_{t-1}`` (Ni, Eysenbach, Salakhutdinov 2022,
  "Recurrent Model-Free RL Can Be a Strong Baseline for Many POMDPs", arXiv 2110.05038, Sec. 4).

``a_{t-1}`` and ``r_{t-1}`` are zero at an episode's first step. The inputs are concatenated (no
embedding layers) and fed to a :class:`~rlblocks.nets.recurrent.RecurrentCell`.
"""

from __future__ import annotations

import torch
from torch import nn

from rlblocks.nets.recurrent import RecurrentCell

INPUTS = ("obs", "obs_action", "obs_action_reward")


class HistoryEncoder(nn.Module):
    """``(o_t, a_{t-1}, r_{t-1}) → h_t`` with a ``kind`` ("lstm" | "gru") cell of ``rnn_size`` units.

    Shapes: sequences ``obs [T, B, obs_dim]``, ``prev_action [T, B, act_dim]``, ``prev_reward [T, B]``
    → ``[T, B, rnn_size]``; one step drops the ``T``. States are packed ``[K, B, rnn_size]``
    (:mod:`rlblocks.nets.recurrent`).

    Raises:
        ValueError: an unknown ``kind`` or ``inputs``.
    """

    def __init__(self, kind: str, obs_dim: int, act_dim: int, rnn_size: int, layers: int = 1,
                 inputs: str = "obs_action_reward"):
        super().__init__()
        if inputs not in INPUTS:
            raise ValueError(f"unknown history inputs {inputs!r}: choose one of {', '.join(INPUTS)}")
        self.use_action, self.use_reward = inputs != "obs", inputs == "obs_action_reward"
        in_dim = obs_dim + (act_dim if self.use_action else 0) + (1 if self.use_reward else 0)
        self.cell = RecurrentCell(kind, in_dim, rnn_size, layers)
        self.rnn_size = rnn_size

    @property
    def state_rows(self) -> int:
        return self.cell.state_rows

    def initial_state(self, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
        return self.cell.initial_state(n, device)

    def inputs(self, obs: torch.Tensor, prev_action: torch.Tensor, prev_reward: torch.Tensor) -> torch.Tensor:
        """The cell's input ``[..., in_dim]``: the selected parts concatenated."""
        parts = [obs]
        if self.use_action:
            parts.append(prev_action)
        if self.use_reward:
            parts.append(prev_reward.unsqueeze(-1))
        return torch.cat(parts, -1) if len(parts) > 1 else obs

    def forward(self, obs, prev_action, prev_reward, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sequences from ``state``: ``(h [T, B, H], final state [K, B, H])``, one fused call."""
        return self.cell(self.inputs(obs, prev_action, prev_reward), state)

    def step(self, obs, prev_action, prev_reward, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One acting step: ``obs [N, obs_dim]`` ... → ``(h [N, H], next state [K, N, H])``."""
        out, new = self.cell(self.inputs(obs, prev_action, prev_reward).unsqueeze(0), state)
        return out[0], new

    def burn_in(self, obs, prev_action, prev_reward, lengths: torch.Tensor) -> torch.Tensor:
        """The state after ``lengths [B]`` left-aligned steps from the zero state (see
        :meth:`RecurrentCell.final_state`); the zero state where a length is 0 or ``T = 0``."""
        return self.cell.final_state(self.inputs(obs, prev_action, prev_reward), lengths)
