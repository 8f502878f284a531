"""Recurrent cells (LSTM, GRU) over ``[T, B]`` sequences, with hidden states packed in one tensor.

A :class:`RecurrentCell` runs ``torch.nn.LSTM`` or ``torch.nn.GRU`` over a whole sequence batch in
one fused call (cuDNN / oneDNN kernels), never a Python loop over time steps. Its hidden state is
one tensor ``[n_states * layers, B, rnn_size]``: ``h`` for a GRU (``n_states = 1``), ``cat(h, c)``
for an LSTM (``n_states = 2``); :meth:`RecurrentCell.unpack` gives torch's form (a tensor or the
pair ``(h, c)``, each ``[layers, B, rnn_size]``). One tensor per state keeps the code that stores,
gathers, resets and checkpoints states the same for both kinds.

A state is reset where an episode starts (:func:`reset_where`): the new episode begins from the
zero state, as in sb3-contrib's ``RecurrentPPO`` and R2D2's zero-state baseline (Kapturowski et
al. 2019, "Recurrent Experience Replay in Distributed Reinforcement Learning", ICLR, Sec. 3).
"""

from __future__ import annotations

import torch
from torch import nn

ARCHS = ("ff", "lstm", "gru")


def reset_where(state: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """``state`` with the columns of the envs whose episode starts set to zero (a new tensor).

    Args:
        state: ``[K, N, ...]`` (the env dimension is 1, e.g. a packed state ``[K, N, H]``).
        starts: ``[N]`` bool, True where an episode starts.
    """
    return state * (~starts).to(state.dtype).view(1, -1, *([1] * (state.dim() - 2)))


class RecurrentCell(nn.Module):
    """``kind`` ("lstm" | "gru") cell of ``layers`` layers mapping ``[T, B, in_dim]`` to ``[T, B, rnn_size]``.

    Initialisation is torch's default (uniform ``±1/sqrt(rnn_size)``), as sb3-contrib's
    recurrent policies leave their LSTMs.

    Raises:
        ValueError: an unknown ``kind``.
    """

    def __init__(self, kind: str, in_dim: int, rnn_size: int, layers: int = 1):
        super().__init__()
        if kind not in ("lstm", "gru"):
            raise ValueError(f"unknown recurrent cell {kind!r}: choose lstm or gru")
        self.kind, self.rnn_size, self.layers = kind, rnn_size, layers
        self.n_states = 2 if kind == "lstm" else 1
        self.rnn = (nn.LSTM if kind == "lstm" else nn.GRU)(in_dim, rnn_size, layers)

    @property
    def state_rows(self) -> int:
        """``K``, the first dimension of a packed state."""
        return self.n_states * self.layers

    def initial_state(self, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The zero state of ``n`` sequences, ``[K, n, rnn_size]``."""
        return torch.zeros(self.state_rows, n, self.rnn_size, device=device)

    def unpack(self, state: torch.Tensor):
        """Torch's form of a packed state: ``h`` (GRU) or ``(h, c)`` (LSTM), each ``[layers, B, H]``."""
        if self.n_states == 1:
            return state
        return state[: self.layers], state[self.layers:]

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One fused call over the sequence: ``x [T, B, in_dim]``, ``state [K, B, H]`` →
        ``(outputs [T, B, H], final state [K, B, H])``. No episode may start inside ``x``
        (the caller splits sequences there or resets the state between calls)."""
        out, new = self.rnn(x, self.unpack(state))
        return out, (torch.cat(new) if self.n_states == 2 else new)

    def final_state(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The state after the first ``lengths[b]`` steps of column ``b`` from the zero state, in one
        fused call over the packed columns: ``x [T, B, in_dim]`` (left-aligned, the rest ignored),
        ``lengths [B]`` integers in ``[0, T]`` → ``[K, B, H]`` (zero where ``lengths`` is 0). R2D2's
        burn-in (Kapturowski et al. 2019, Sec. 3) of variable length."""
        zero = self.initial_state(x.shape[1], x.device)
        if x.shape[0] == 0:
            return zero
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.clamp(min=1).cpu(), enforce_sorted=False)
        _, new = self.rnn(packed, self.unpack(zero))
        new = torch.cat(new) if self.n_states == 2 else new
        return torch.where((lengths > 0).view(1, -1, 1).to(new.device), new, zero)
