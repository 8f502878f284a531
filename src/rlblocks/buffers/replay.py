"""Preallocated ring replay buffer for vector envs, with n-step returns.

Transitions are stored per vector step in ``[rows, num_envs, ...]`` tensors (flattened for
sampling), keeping ``terminated`` and ``truncated`` apart: a truncated episode (time limit) is
bootstrapped, a terminated one is not (gymnasium semantics). ``next_obs`` is the true last
observation of the episode at an episode end, never the autoreset observation.

Sampling runs in stages (DESIGN.md, "Seams"): choose indices (:meth:`ReplayBuffer.sample_indices`,
or :meth:`ReplayBuffer.complete_indices` for transitions of finished episodes) → relabel (a
replay stage outside the storage, e.g. :mod:`rlblocks.buffers.her`) → assemble
(:meth:`ReplayBuffer.assemble`: 1-step or n-step) → normalise (the agent's normaliser). Storage
knows nothing of goals: dict observations are stored per key (``obs_shape`` a dict of shapes) and
the relabel stage passes replacement keys and a reward function to :meth:`ReplayBuffer.assemble`.
The action dtype follows the action space: float vectors for Box, integers (``[rows, E]``) for
Discrete.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from rlblocks.errors import CheckpointError


class Batch(NamedTuple):
    """A sampled minibatch. ``target = reward + discount * V(next_obs)``.

    Shapes: ``obs, next_obs [B, *obs_shape]`` (a dict of such tensors for dict observations),
    ``action [B, act_dim]`` (``[B]`` integers for discrete actions), ``reward, discount [B]``.
    ``reward`` is the (n-step) discounted return and ``discount = gamma^m (1 - terminated)``
    with ``m`` the number of steps summed.
    """

    obs: torch.Tensor | dict[str, torch.Tensor]
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor | dict[str, torch.Tensor]
    discount: torch.Tensor


#: ``reward_fn(idx) -> (rewards [B, n], terminal [B, n] or None)``: rewards of the stored
#: transitions at flat indices ``idx [B, n]`` and, optionally, which of them are terminal (a
#: relabel stage's recomputed rewards and goal-reached flags; see :meth:`ReplayBuffer.assemble`).
RewardFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]


class ReplayBuffer:
    """Ring buffer of ``capacity`` transitions from ``num_envs`` parallel envs.

    Args:
        capacity: total transitions kept (rounded down to a multiple of ``num_envs``).
        num_envs: width of each :meth:`add`.
        obs_shape: per-transition observation shape, or ``{key: shape}`` for dict observations
            (each key stored in its own preallocated tensor).
        act_dim: action width (float actions ``[act_dim]``); ignored for integer ``action_dtype``
            (a discrete action is one integer).
        gamma: discount used for n-step returns and the bootstrap discount.
        n_step: steps summed before bootstrapping (1 = TD(0)); the sum stops at episode ends
            and at the newest stored step (a shorter return that bootstraps earlier is still an
            unbiased n-step target of lower n).
        device: where the storage lives (sampling returns tensors on it).
        action_dtype: ``torch.float32`` (Box) or an integer dtype (Discrete, stored as integers).
        track_episodes: also keep, per transition, the row of its episode's last step
            (``episode_end``, -1 while the episode runs) and of its first step (``episode_start``),
            which :meth:`complete_indices`, :meth:`episode_last` and :meth:`episode_start_row`
            need (hindsight relabelling).
    """

    FIELDS = ("obs", "action", "reward", "next_obs", "terminated", "truncated")

    def __init__(self, capacity: int, num_envs: int, obs_shape: tuple[int, ...] | dict[str, tuple[int, ...]],
                 act_dim: int, gamma: float, n_step: int = 1, device: torch.device | str = "cpu",
                 action_dtype: torch.dtype = torch.float32, track_episodes: bool = False):
        self.rows = max(1, capacity // num_envs)
        self.num_envs, self.gamma, self.n_step = num_envs, gamma, n_step
        self.device = torch.device(device)
        shape = (self.rows, num_envs)
        kw = {"device": self.device}
        self.keys = tuple(obs_shape) if isinstance(obs_shape, dict) else None
        if self.keys is None:
            self.obs = torch.zeros(*shape, *obs_shape, **kw)
            self.next_obs = torch.zeros(*shape, *obs_shape, **kw)
        else:
            self.obs = {k: torch.zeros(*shape, *s, **kw) for k, s in obs_shape.items()}
            self.next_obs = {k: torch.zeros(*shape, *s, **kw) for k, s in obs_shape.items()}
        act_shape = () if not action_dtype.is_floating_point else (act_dim,)
        self.action = torch.zeros(*shape, *act_shape, dtype=action_dtype, **kw)
        self.reward = torch.zeros(shape, **kw)
        self.terminated = torch.zeros(shape, dtype=torch.bool, **kw)
        self.truncated = torch.zeros(shape, dtype=torch.bool, **kw)
        self.pos, self.full = 0, False
        self.track_episodes = track_episodes
        if track_episodes:
            self.episode_end = torch.full(shape, -1, dtype=torch.int64, **kw)
            self.episode_start = torch.zeros(shape, dtype=torch.int64, **kw)
            self.episode_len = torch.zeros(num_envs, dtype=torch.int64)  # stored steps of each running episode
        self._powers = gamma ** torch.arange(n_step + 1, dtype=torch.float32, device=self.device)
        self._offsets = torch.arange(n_step, device=self.device)

    def __len__(self) -> int:
        return (self.rows if self.full else self.pos) * self.num_envs

    @property
    def capacity(self) -> int:
        return self.rows * self.num_envs

    def _arrays(self) -> dict[str, torch.Tensor]:
        """Every stored tensor by its file name (dict observations as ``obs.<key>``)."""
        out: dict[str, torch.Tensor] = {}
        for f in self.FIELDS:
            value = getattr(self, f)
            if isinstance(value, dict):
                out.update({f"{f}.{k}": v for k, v in value.items()})
            else:
                out[f] = value
        if self.track_episodes:
            out["episode_end"] = self.episode_end
            out["episode_start"] = self.episode_start
        return out

    def add(self, obs, action: torch.Tensor, reward: torch.Tensor, next_obs, terminated: torch.Tensor,
            truncated: torch.Tensor) -> None:
        """Store one vector step. Each argument has leading dimension ``num_envs`` (``obs`` and
        ``next_obs``: a dict of such tensors for dict observations)."""
        p = self.pos
        if self.keys is None:
            self.obs[p].copy_(obs)
            self.next_obs[p].copy_(next_obs)
        else:
            for k in self.keys:
                self.obs[k][p].copy_(obs[k])
                self.next_obs[k][p].copy_(next_obs[k])
        self.action[p].copy_(action)
        self.reward[p].copy_(reward)
        self.terminated[p].copy_(terminated)
        self.truncated[p].copy_(truncated)
        if self.track_episodes:
            self._track(p, terminated | truncated)
        self.pos = (p + 1) % self.rows
        self.full = self.full or self.pos == 0

    def _track(self, p: int, done: torch.Tensor) -> None:
        """Mark row ``p`` as running with its episode's first row; where an episode ended, write ``p``
        as the end row of all its stored steps."""
        self.episode_end[p] = -1
        self.episode_len += 1
        self.episode_start[p] = ((p + 1 - self.episode_len) % self.rows).to(self.device)
        for e in torch.nonzero(done.cpu()).flatten().tolist():  # once per finished episode
            length = min(int(self.episode_len[e]), self.rows)
            rows = torch.arange(p - length + 1, p + 1) % self.rows
            self.episode_end[rows.to(self.device), e] = p
            self.episode_len[e] = 0

    # ------------------------------------------------------------------ stage 1: choose indices
    def sample_indices(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows ``t`` and envs ``e`` (``[B]`` each) of ``batch_size`` transitions drawn uniformly with
        replacement from everything stored, using torch's RNG."""
        filled = self.rows if self.full else self.pos
        t = torch.randint(filled, (batch_size,), device=self.device)
        e = torch.randint(self.num_envs, (batch_size,), device=self.device)
        return t, e

    def complete_indices(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`sample_indices`, uniform over the transitions of finished episodes only
        (mrl's online HER adds a trajectory when it ends); everything stored while no episode
        has finished yet. Needs ``track_episodes``."""
        filled = self.rows if self.full else self.pos
        complete = filled - self.episode_len.clamp(max=filled)  # [E] oldest rows of each env
        total = int(complete.sum())
        if total == 0:
            return self.sample_indices(batch_size)
        u = torch.randint(total, (batch_size,))
        ends = complete.cumsum(0)
        e = torch.searchsorted(ends, u, right=True)
        offset = u - (ends[e] - complete[e])
        base = self.pos if self.full else 0  # the oldest row
        t = (base + offset) % self.rows
        return t.to(self.device), e.to(self.device)

    def episode_last(self, t: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """Row ``[B]`` of the last stored step of each transition's episode: its end where the
        episode finished, else the newest row. Needs ``track_episodes``."""
        end = self.episode_end[t, e]
        newest = (self.pos - 1) % self.rows
        return torch.where(end < 0, torch.full_like(end, newest), end)

    def episode_start_row(self, t: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """Row ``[B]`` of the first still-stored step of each transition's episode. Needs ``track_episodes``."""
        back = (t - self.episode_start[t, e]) % self.rows
        if self.full:  # the ring may have overwritten the episode's first steps
            back = torch.minimum(back, (t - self.pos) % self.rows)
        return (t - back) % self.rows

    def transitions(self, t: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The stored one-step transitions at rows ``t`` of envs ``e`` (``[B]`` each), as stored (no
        n-step sum, no relabelling, not normalised): ``(obs [B, *obs_shape], action, reward [B],
        next_obs, terminated [B] bool)``, what a world model learns from. Flat observations only."""
        i = self.flat_index(t, e)
        return (self.flat(self.obs)[i], self.flat(self.action)[i], self.flat(self.reward)[i],
                self.flat(self.next_obs)[i], self.flat(self.terminated)[i])

    def flat_index(self, t: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """Index into the ``[rows * num_envs]`` view of the storage."""
        return t * self.num_envs + e

    def flat(self, x: torch.Tensor) -> torch.Tensor:
        """``[rows, E, ...]`` storage as ``[rows * E, ...]`` (a view)."""
        return x.view(self.rows * self.num_envs, *x.shape[2:])

    def sample(self, batch_size: int) -> Batch:
        """Uniformly sample ``batch_size`` transitions (with replacement), using torch's RNG."""
        t, e = self.sample_indices(batch_size)
        return self.assemble(t, e)

    # ------------------------------------------------------------------ stage 3: assemble
    def _gather_obs(self, source, index: torch.Tensor, replace: dict[str, torch.Tensor] | None):
        if self.keys is None:
            return self.flat(source)[index]
        replace = replace or {}
        return {k: replace[k] if k in replace else self.flat(v)[index] for k, v in source.items()}

    def assemble(self, t: torch.Tensor, e: torch.Tensor, replace: dict[str, torch.Tensor] | None = None,
                 reward_fn: RewardFn | None = None) -> Batch:
        """The (n-step) transitions starting at rows ``t``, envs ``e`` (``[B]`` each).

        Args:
            replace: ``{key: [B, ...]}`` values that replace those keys of a dict observation in
                both ``obs`` and ``next_obs`` (a relabelled goal).
            reward_fn: recomputes the stored rewards: called with the flat indices ``[B, n]`` of
                the steps considered (``[B, 1]`` for 1-step), returns their rewards ``[B, n]`` and
                either ``None`` (the stored ``terminated`` flags hold) or terminal flags ``[B, n]``
                that replace them: the return stops after a terminal step and does not bootstrap
                from it; stored episode ends still end the window (without cutting the bootstrap
                unless terminal).
        """
        E = self.num_envs
        first = t * E + e
        action = self.flat(self.action)[first]
        if self.n_step == 1:
            last = first
            if reward_fn is None:
                reward = self.flat(self.reward)[first]
                discount = self.gamma * (~self.flat(self.terminated)[first]).float()
            else:
                rewards, terminal = reward_fn(first[:, None])
                reward = rewards[:, 0]
                terminal = self.flat(self.terminated)[first] if terminal is None else terminal[:, 0]
                discount = self.gamma * (~terminal).float()
        else:
            # steps t..t+n-1 of the same env; a step counts if every earlier one was not an
            # episode end and it is not newer than the newest stored row.
            ahead = (self.pos - 1 - t) % self.rows + 1  # rows available from t onwards, >= 1
            rows = (t[:, None] + self._offsets) % self.rows  # [B, n]
            idx = rows * E + e[:, None]
            done = self.flat(self.terminated)[idx] | self.flat(self.truncated)[idx]
            terminal = None
            if reward_fn is None:
                rewards = self.flat(self.reward)[idx]
            else:
                rewards, terminal = reward_fn(idx)
                if terminal is not None:  # the relabelled goal reached: the return stops there too
                    done = done | terminal
            valid = self._offsets < ahead[:, None]
            ended_before = torch.cumsum(done.int(), 1) - done.int()  # episode ends strictly before j
            alive = valid & (ended_before == 0)
            m = alive.sum(1)  # >= 1
            reward = (rewards * alive * self._powers[:-1]).sum(1)
            last = idx.gather(1, (m - 1)[:, None]).squeeze(1)
            if terminal is None:
                discount = self._powers[m] * (~self.flat(self.terminated)[last]).float()
            else:
                discount = self._powers[m] * (~terminal.gather(1, (m - 1)[:, None]).squeeze(1)).float()
        return Batch(self._gather_obs(self.obs, first, replace), action, reward,
                     self._gather_obs(self.next_obs, last, replace), discount)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Write the filled part to ``path`` (``.npz``, no pickled objects)."""
        filled = self.rows if self.full else self.pos
        arrays = {f: v[:filled].cpu().numpy() for f, v in self._arrays().items()}
        if self.track_episodes:
            arrays["episode_len"] = self.episode_len.numpy().copy()
        with open(path, "wb") as fh:
            np.savez(fh, pos=np.int64(self.pos), full=np.bool_(self.full), rows=np.int64(self.rows), **arrays)

    def load(self, path: str | Path) -> None:
        """Inverse of :meth:`save`.

        Raises:
            CheckpointError: an unreadable file, or contents that do not fit this buffer: another
                capacity or shape, a dtype other than the buffer's, ``pos`` outside ``[0, rows)`` or
                a filled length that disagrees with ``pos``/``full``.
        """
        fields = self._arrays()
        try:
            with np.load(path, allow_pickle=False) as data:
                extra = ("episode_len",) if self.track_episodes else ()
                missing = [k for k in ("pos", "full", "rows", *fields, *extra) if k not in data.files]
                if missing:
                    raise CheckpointError(f"replay buffer {path} lacks {', '.join(missing)}; resume from an earlier "
                                          "checkpoint")
                rows, pos, full = data["rows"], data["pos"], data["full"]
                if any(a.shape != () for a in (rows, pos, full)) or rows.dtype.kind not in "iu" or \
                        pos.dtype.kind not in "iu" or full.dtype != np.bool_:
                    raise CheckpointError(f"replay buffer {path} has malformed pos/full/rows entries; resume from "
                                          "an earlier checkpoint")
                if int(rows) != self.rows or any(data[f].shape[1:] != tuple(v.shape[1:]) for f, v in fields.items()):
                    raise CheckpointError(f"replay buffer {path} has another shape than the config; "
                                          "resume with the run's own config.json")
                pos, full = int(pos), bool(full)
                filled = self.rows if full else pos
                if not 0 <= pos < self.rows:
                    raise CheckpointError(f"replay buffer {path} has pos={pos} outside [0, {self.rows}); resume from "
                                          "an earlier checkpoint")
                for f, want in fields.items():
                    arr = data[f]
                    if arr.shape[0] != filled or str(arr.dtype) != str(want.dtype).replace("torch.", ""):
                        raise CheckpointError(f"replay buffer {path}: {f} has {arr.shape[0]} rows of {arr.dtype} but "
                                              f"pos={pos}, full={full} need {filled} rows of "
                                              f"{str(want.dtype).replace('torch.', '')}; resume from an earlier "
                                              "checkpoint")
                if self.track_episodes:
                    lengths = data["episode_len"]
                    if lengths.shape != (self.num_envs,) or lengths.dtype != np.int64 or (lengths < 0).any():
                        raise CheckpointError(f"replay buffer {path} has a malformed episode_len; resume from an "
                                              "earlier checkpoint")
                    for key, low in (("episode_end", -1), ("episode_start", 0)):
                        rows_ = data[key]
                        if rows_.size and (rows_.min() < low or rows_.max() >= self.rows):
                            raise CheckpointError(f"replay buffer {path} has {key} rows outside [{low}, {self.rows}); "
                                                  "resume from an earlier checkpoint")
                    self.episode_len.copy_(torch.from_numpy(lengths))
                for f, want in fields.items():
                    want[:filled].copy_(torch.from_numpy(data[f]))
                self.pos, self.full = pos, full
        except (OSError, EOFError, KeyError, ValueError, RuntimeError, zipfile.BadZipFile) as e:
            # EOFError: empty file; BadZipFile: truncated .npz
            raise CheckpointError(f"replay buffer {path} is unreadable ({e}); resume from an earlier checkpoint") from None
