"""Sequence replay: the assemble stage that cuts fixed-length windows, with burn-in, out of a replay buffer.

The storage is the ordinary :class:`~rlblocks.buffers.replay.ReplayBuffer` (it knows nothing of
sequences); this stage reads it (DESIGN.md, "Replay in stages": choose indices → relabel →
**assemble** → normalise). For each chosen transition (row ``s``, env ``e``) it returns the window
of ``seq_len`` steps ``s, s+1, ...`` of that env, cut where its episode ends (terminated *or*
truncated) or where the stored data ends, and the ``burn_in`` steps before ``s`` in the same
episode (fewer where the episode started later or the ring overwrote them):

* trained part, ``T = seq_len``: ``action, reward, discount, mask [T, B]`` for steps ``k < L_b``
  (``L_b`` the window's length), zero after; the history inputs ``obs, prev_action, prev_reward``
  have ``T + 1`` positions: position ``k`` is the input at step ``s + k``, and position ``L_b`` is
  the bootstrap input of the last step (its ``next_obs``: the true final observation where the
  episode ended). Inputs after position ``L_b`` are zero, so no window reads another episode's data.
* burn-in part: ``burn_obs, burn_prev_action, burn_prev_reward [burn_in, B, ...]`` left-aligned with
  ``burn_len [B]`` valid steps; a learner runs it without gradient from the zero state to get the
  state at ``s`` (R2D2, Kapturowski et al. 2019, "Recurrent Experience Replay in Distributed
  Reinforcement Learning", ICLR, Sec. 3). Where the burn-in reaches back to the episode's first
  step the state it produces is the exact one.

``discount = gamma (1 - terminated)``: a time-limit truncation bootstraps (gymnasium semantics).
The history inputs follow :mod:`rlblocks.nets.history`: ``prev_action``/``prev_reward`` at a step are
the previous step's action and reward in the same episode, zero at the episode's first step (and,
as an approximation, at the oldest stored row, whose predecessor is gone).

Sampling: ``s`` is uniform over the stored transitions (with replacement); a window that starts
near its episode's end or the newest row is short, and losses average over the real steps
(``mask``), so a step's weight grows with the number of windows that reach it (up to ``seq_len``
steps into its episode).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from rlblocks.buffers.replay import ReplayBuffer


class ReplaySequenceBatch(NamedTuple):
    """A sequence minibatch (time first). ``B`` windows of ``T = seq_len`` trained steps.

    Shapes: ``obs [T+1, B, *obs_shape]``, ``prev_action [T+1, B, act_dim]``, ``prev_reward [T+1, B]``
    (history inputs); ``action [T, B, act_dim]``, ``reward, discount [T, B]``, ``mask [T, B]`` bool
    (real steps); ``valid [M]`` the flat positions ``k * B + b`` of the ``M`` real steps (so
    ``valid + B`` are their bootstrap positions in the ``[T+1, B]`` inputs); burn-in
    ``burn_obs [burn_in, B, *obs_shape]``, ``burn_prev_action``, ``burn_prev_reward`` and
    ``burn_len [B]`` (long). Padding is zero.
    """

    obs: torch.Tensor
    prev_action: torch.Tensor
    prev_reward: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    discount: torch.Tensor
    mask: torch.Tensor
    valid: torch.Tensor
    burn_obs: torch.Tensor
    burn_prev_action: torch.Tensor
    burn_prev_reward: torch.Tensor
    burn_len: torch.Tensor

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        """``x [T(+1), B, ...]`` at the real steps, ``[M, ...]``."""
        return x.reshape(-1, *x.shape[2:]).index_select(0, self.valid)

    def next_rows(self, x: torch.Tensor) -> torch.Tensor:
        """``x [T+1, B, ...]`` at the real steps' bootstrap positions, ``[M, ...]``."""
        return x.reshape(-1, *x.shape[2:]).index_select(0, self.valid + self.mask.shape[1])


class SequenceSampler:
    """Draws :class:`ReplaySequenceBatch` es from ``buffer`` (flat Box observations, float actions).

    Args:
        buffer: the storage (its ``n_step`` is not used: sequences are 1-step TD per position).
        seq_len: trained steps per window, ``T >= 1``.
        burn_in: steps before the window run without gradient, ``>= 0``.

    Raises:
        ValueError: ``seq_len < 1``, ``burn_in < 0``, dict observations or integer actions.
    """

    def __init__(self, buffer: ReplayBuffer, seq_len: int, burn_in: int = 0):
        if seq_len < 1 or burn_in < 0:
            raise ValueError(f"seq_len={seq_len} must be >= 1 and burn_in={burn_in} >= 0")
        if buffer.keys is not None or not buffer.action.dtype.is_floating_point:
            raise ValueError("sequence replay needs flat Box observations and float actions")
        self.buffer, self.seq_len, self.burn_in = buffer, seq_len, burn_in
        dev = buffer.device
        self._ahead = torch.arange(max(seq_len + 1, burn_in), device=dev)  # positions 0, 1, ...
        self._back = torch.arange(1, burn_in + 2, device=dev)  # 1..burn_in+1 rows before s

    def sample(self, batch_size: int) -> ReplaySequenceBatch:
        """``batch_size`` windows whose first trained step is uniform over the stored transitions."""
        s, e = self.buffer.sample_indices(batch_size)
        return self.assemble(s, e)

    def assemble(self, s: torch.Tensor, e: torch.Tensor) -> ReplaySequenceBatch:
        """The windows whose first trained step is row ``s``, env ``e`` (``[B]`` each)."""
        buf, T, R = self.buffer, self.seq_len, self.buffer.rows
        filled = R if buf.full else buf.pos
        newest = (buf.pos - 1) % R
        age = (newest - s) % R  # rows stored after s
        done = buf.terminated | buf.truncated  # [R, E]

        # forward: step s+k is real if stored and no episode ended before it
        k = self._ahead[:T]
        rows = (s[:, None] + k) % R  # [B, T]
        stored = k <= age[:, None]
        ended = done[rows, e[:, None]] & stored
        before = torch.cumsum(ended.int(), 1) - ended.int()
        alive = stored & (before == 0)  # [B, T]
        length = alive.sum(1)  # L_b >= 1

        # backward: rows s-1, s-2, ... continue s's episode while stored and not an episode end
        back_rows = (s[:, None] - self._back) % R  # [B, burn_in + 1]
        older = filled - 1 - age  # rows stored before s
        cont = (self._back <= older[:, None]) & ~done[back_rows, e[:, None]]
        run = torch.cumprod(cont.int(), 1).sum(1)  # consecutive earlier steps of the episode
        burn_len = run.clamp(max=self.burn_in)
        prev_s = run > 0  # s has a predecessor in its episode
        b0 = s - burn_len  # first burn-in row (mod R)
        prev_b0 = run > burn_len

        obs, prev_a, prev_r = self._inputs(s, e, T + 1, length + 1, prev_s)
        burn = self._inputs(b0, e, self.burn_in, burn_len, prev_b0)
        mask = alive.T.contiguous()  # [T, B]
        flat = (rows * buf.num_envs + e[:, None]).T  # [T, B]
        m = mask.unsqueeze(-1)
        action = buf.flat(buf.action)[flat] * m
        reward = buf.flat(buf.reward)[flat] * mask
        discount = buf.gamma * (~buf.flat(buf.terminated)[flat]).float() * mask
        valid = mask.view(-1).nonzero().squeeze(1)
        return ReplaySequenceBatch(obs, prev_a, prev_r, action, reward, discount, mask, valid, *burn, burn_len)

    def _inputs(self, first: torch.Tensor, e: torch.Tensor, n: int, length: torch.Tensor, prev_first: torch.Tensor):
        """History inputs at rows ``first + p`` for ``p < n`` (``[n, B, ...]``), zero from ``length``
        on: ``obs`` of the first row then ``next_obs`` of the row before each position (equal inside
        an episode; at its end the true final observation), the previous row's action and reward
        (at ``p = 0`` only where ``prev_first``)."""
        buf, R, E = self.buffer, self.buffer.rows, self.buffer.num_envs
        p = self._ahead[:n]
        prev = ((first[None, :] + p[:, None] - 1) % R) * E + e[None, :]  # [n, B] flat rows of step p-1
        real = p[:, None] < length[None, :]  # [n, B]
        has_prev = real & ((p[:, None] > 0) | prev_first[None, :])
        obs = buf.flat(buf.next_obs)[prev]
        if n > 0:
            obs[0] = buf.flat(buf.obs)[first * E + e]
        obs = obs * real.view(*real.shape, *([1] * (obs.dim() - 2)))
        prev_action = buf.flat(buf.action)[prev] * has_prev.unsqueeze(-1)
        prev_reward = buf.flat(buf.reward)[prev] * has_prev
        return obs, prev_action, prev_reward
