"""A rollout buffer that also serves sequences: fixed-length chunks split at episode starts.

Recurrent PPO trains on sequences that start from a stored hidden state, the "stored state"
strategy of R2D2 (Kapturowski et al. 2019, "Recurrent Experience Replay in Distributed
Reinforcement Learning", ICLR, Sec. 3) without burn-in, as sb3-contrib's ``RecurrentPPO``:

* each env's column of the ``[T, N]`` rollout is cut into chunks of ``seq_len`` steps; the state
  the actor held at each chunk's first step is stored while collecting (``store_state``);
* a chunk is split where an episode starts inside it; the piece that starts there starts from the
  zero state (the actor's state at an episode start), so **no sequence has an episode start after
  its first step** and the cell runs over a whole padded batch in one fused call;
* an epoch shuffles the chunks and cuts them into ``n_minibatches`` equal groups, so every
  collected step is used exactly once per epoch and every minibatch has ``size / n_minibatches``
  real steps; the pieces of a group are padded to the longest one (the padded layout ``[L, S]``)
  with a mask of the real steps.

The losses are computed on the real steps only: a batch gives the flat positions ``valid`` of its
real steps in the padded ``[L * S]`` layout and the rollout rows ``index`` they came from, so the
network's outputs are gathered at ``valid`` and compared with the rollout's targets at ``index``
(a masked mean over ``[L, S]`` with the mask as weights is the same number).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch

from rlblocks.buffers.rollout import RolloutBuffer


class RolloutSequenceBatch(NamedTuple):
    """A padded batch of ``S`` sequences of at most ``L`` steps, ``M`` of them real.

    Shapes: ``obs [L, S, obs_dim]`` (zeros where padded), ``state [K, S, H]`` (each sequence's
    initial hidden state), ``mask [L, S]`` bool (real steps), ``valid [M]`` int64 (positions
    ``t * S + s`` of the real steps in the flattened layout, ``mask.view(-1)[valid]`` all True),
    ``index [M]`` int64 (their rollout rows ``t * num_envs + env``), and at those steps
    ``action [M, act_dim]`` or ``[M]``, ``log_prob``, ``value``, ``advantage``, ``ret`` ``[M]``.
    """

    obs: torch.Tensor
    state: torch.Tensor
    mask: torch.Tensor
    valid: torch.Tensor
    index: torch.Tensor
    action: torch.Tensor
    log_prob: torch.Tensor
    value: torch.Tensor
    advantage: torch.Tensor
    ret: torch.Tensor


class SequenceRolloutBuffer(RolloutBuffer):
    """:class:`RolloutBuffer` plus the hidden state at every chunk start and sequence minibatches.

    Args:
        seq_len: chunk length; must divide ``n_steps``.
        state_shape: ``(K, H)``, the actor's packed state is ``[K, num_envs, H]``.
        (the rest as :class:`RolloutBuffer`)

    Raises:
        ValueError: ``seq_len`` does not divide ``n_steps``.
    """

    def __init__(self, n_steps: int, num_envs: int, obs_shape, action_shape, seq_len: int,
                 state_shape: tuple[int, int], device="cpu", store_next_obs: bool = False):
        if seq_len < 1 or n_steps % seq_len:
            raise ValueError(f"seq_len={seq_len} does not divide n_steps={n_steps}")
        super().__init__(n_steps, num_envs, obs_shape, action_shape, device, store_next_obs)
        self.seq_len = seq_len
        k, h = state_shape
        self.hidden = torch.zeros(n_steps // seq_len, k, num_envs, h, device=self.device)  # [chunk, K, N, H]
        self.fields = self.fields + ("hidden",)
        if self._views is not None:
            self._views["hidden"] = self.hidden.numpy()
        self._layout = None

    @property
    def n_chunks(self) -> int:
        return self.num_envs * (self.n_steps // self.seq_len)

    def store_state(self, state: torch.Tensor) -> None:
        """Keep ``state [K, N, H]``, the actor's state at the step about to be added, if that step
        starts a chunk. Call before :meth:`add`."""
        if self.pos % self.seq_len == 0:
            self._write("hidden", self.pos // self.seq_len, state)

    # ------------------------------------------------------------------ layout of one full rollout
    def build_layout(self) -> None:
        """Cut the full rollout into pieces (chunks split at episode starts); call once per rollout,
        after the rollout is full and before :meth:`sequence_minibatches` / :meth:`all_sequences`.

        Pieces are numbered env-major (env, then time), so piece ``p``'s steps are consecutive in
        the column-major step order ``env * T + t``.
        """
        T, N, L, dev = self.n_steps, self.num_envs, self.seq_len, self.device
        starts = torch.zeros(T, N, dtype=torch.bool, device=dev)
        starts[1:] = self.terminated[:-1] | self.truncated[:-1]
        t = torch.arange(T, device=dev)
        boundary = (starts | (t % L == 0).unsqueeze(1)).T.reshape(-1)  # [N * T], column-major
        cm = torch.arange(N * T, device=dev)
        piece_of = boundary.cumsum(0) - 1
        first = boundary.nonzero().squeeze(1)  # [P] column-major position of each piece's first step
        length = torch.diff(first, append=first.new_tensor([N * T]))
        env, t0 = first // T, first % T
        chunk = env * (T // L) + t0 // L
        # [K, n_chunks, H], chunk-indexed as above; a piece that starts inside a chunk starts an
        # episode: zero state, as the actor had it.
        by_chunk = self.hidden.permute(1, 2, 0, 3).reshape(self.hidden.shape[1], self.n_chunks, -1)
        self._layout = {
            "piece_of": piece_of, "offset": cm - first[piece_of], "row": (cm % T) * N + cm // T,
            "first": first, "length": length, "env": env, "t0": t0, "chunk": chunk,
            "stored": (t0 % L == 0), "by_chunk": by_chunk,
        }

    @property
    def n_pieces(self) -> int:
        return self._layout["first"].numel()

    def _batch(self, pieces: torch.Tensor, extra: int = 0, normalize_advantage: bool = False) -> RolloutSequenceBatch:
        """The padded batch of ``pieces`` (piece ids, in batch order), ``extra`` padding rows more
        than the longest piece needs."""
        lay, S = self._layout, pieces.numel()
        local = torch.full((self.n_pieces,), -1, dtype=torch.int64, device=self.device)
        local[pieces] = torch.arange(S, device=self.device)
        step_local = local[lay["piece_of"]]
        sel = (step_local >= 0).nonzero().squeeze(1)  # column-major steps of these pieces
        length = int(lay["length"][pieces].max()) + extra
        valid = lay["offset"][sel] * S + step_local[sel]
        rows = lay["row"][sel]
        obs_flat = self.flat("obs")
        obs = obs_flat.new_zeros(length * S, *obs_flat.shape[1:]).index_copy_(0, valid, obs_flat.index_select(0, rows))
        mask = torch.zeros(length * S, dtype=torch.bool, device=self.device).index_fill_(0, valid, True)
        state = lay["by_chunk"][:, lay["chunk"][pieces]] * lay["stored"][pieces].to(obs.dtype).view(1, -1, 1)
        adv = self.flat("advantage").index_select(0, rows)
        if normalize_advantage:
            adv = (adv - adv.mean()) / (adv.std(unbiased=False) + 1e-8)
        return RolloutSequenceBatch(obs.view(length, S, *obs_flat.shape[1:]), state, mask.view(length, S), valid, rows,
                             self.flat("action").index_select(0, rows), self.flat("log_prob").index_select(0, rows),
                             self.flat("value").index_select(0, rows), adv, self.flat("ret").index_select(0, rows))

    def all_sequences(self, extra: int = 0) -> RolloutSequenceBatch:
        """Every piece of the rollout in one batch (piece ``p`` is column ``p``)."""
        return self._batch(torch.arange(self.n_pieces, device=self.device), extra)

    def sequence_minibatches(self, n_minibatches: int, normalize_advantage: bool = False) -> Iterator[RolloutSequenceBatch]:
        """One epoch: the chunks in a random order (torch's RNG), cut into ``n_minibatches`` equal
        groups; each group's pieces form one :class:`RolloutSequenceBatch` of ``size / n_minibatches``
        real steps. ``normalize_advantage`` standardises advantages per minibatch (baselines ppo2).

        Raises:
            ValueError: ``n_minibatches`` does not divide the number of chunks.
        """
        if self.n_chunks % n_minibatches:
            raise ValueError(f"{n_minibatches} minibatches do not divide the {self.n_chunks} sequences of a rollout")
        lay, per = self._layout, self.n_chunks // n_minibatches
        rank = torch.empty(self.n_chunks, dtype=torch.int64, device=self.device)
        rank[torch.randperm(self.n_chunks, device=self.device)] = torch.arange(self.n_chunks, device=self.device)
        piece_rank = rank[lay["chunk"]]
        order = torch.argsort(piece_rank * self.seq_len + lay["t0"] % self.seq_len)
        counts = torch.bincount(piece_rank // per, minlength=n_minibatches).tolist()
        for pieces in torch.split(order, counts):
            yield self._batch(pieces, normalize_advantage=normalize_advantage)
