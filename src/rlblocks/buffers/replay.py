"""Preallocated ring replay buffer for vector envs, with n-step returns.

Transitions are stored per vector step in ``[rows, num_envs, ...]`` tensors (flattened for
sampling), keeping ``terminated`` and ``truncated`` apart: a truncated episode (time limit) is
bootstrapped, a terminated one is not (gymnasium semantics). ``next_obs`` is the true last
observation of the episode at an episode end, never the autoreset observation.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from rlblocks.errors import CheckpointError


class Batch(NamedTuple):
    """A sampled minibatch. ``target = reward + discount * V(next_obs)``.

    Shapes: ``obs, next_obs [B, *obs_shape]``, ``action [B, act_dim]``, ``reward, discount [B]``.
    ``reward`` is the (n-step) discounted return and ``discount = gamma^m (1 - terminated)``
    with ``m`` the number of steps summed.
    """

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    discount: torch.Tensor


class ReplayBuffer:
    """Ring buffer of ``capacity`` transitions from ``num_envs`` parallel envs.

    Args:
        capacity: total transitions kept (rounded down to a multiple of ``num_envs``).
        num_envs: width of each :meth:`add`.
        obs_shape, act_dim: per-transition shapes.
        gamma: discount used for n-step returns and the bootstrap discount.
        n_step: steps summed before bootstrapping (1 = TD(0)); the sum stops at episode ends
            and at the newest stored step (a shorter return that bootstraps earlier is still an
            unbiased n-step target of lower n).
        device: where the storage lives (sampling returns tensors on it).
    """

    FIELDS = ("obs", "action", "reward", "next_obs", "terminated", "truncated")

    def __init__(self, capacity: int, num_envs: int, obs_shape: tuple[int, ...], act_dim: int,
                 gamma: float, n_step: int = 1, device: torch.device | str = "cpu"):
        self.rows = max(1, capacity // num_envs)
        self.num_envs, self.gamma, self.n_step = num_envs, gamma, n_step
        self.device = torch.device(device)
        shape = (self.rows, num_envs)
        kw = {"device": self.device}
        self.obs = torch.zeros(*shape, *obs_shape, **kw)
        self.next_obs = torch.zeros(*shape, *obs_shape, **kw)
        self.action = torch.zeros(*shape, act_dim, **kw)
        self.reward = torch.zeros(shape, **kw)
        self.terminated = torch.zeros(shape, dtype=torch.bool, **kw)
        self.truncated = torch.zeros(shape, dtype=torch.bool, **kw)
        self.pos, self.full = 0, False
        self._powers = gamma ** torch.arange(n_step + 1, dtype=torch.float32, device=self.device)
        self._offsets = torch.arange(n_step, device=self.device)

    def __len__(self) -> int:
        return (self.rows if self.full else self.pos) * self.num_envs

    @property
    def capacity(self) -> int:
        return self.rows * self.num_envs

    def add(self, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, next_obs: torch.Tensor,
            terminated: torch.Tensor, truncated: torch.Tensor) -> None:
        """Store one vector step. Each argument has leading dimension ``num_envs``."""
        p = self.pos
        self.obs[p].copy_(obs)
        self.action[p].copy_(action)
        self.reward[p].copy_(reward)
        self.next_obs[p].copy_(next_obs)
        self.terminated[p].copy_(terminated)
        self.truncated[p].copy_(truncated)
        self.pos = (p + 1) % self.rows
        self.full = self.full or self.pos == 0

    def sample(self, batch_size: int) -> Batch:
        """Uniformly sample ``batch_size`` transitions (with replacement), using torch's RNG."""
        filled = self.rows if self.full else self.pos
        t = torch.randint(filled, (batch_size,), device=self.device)
        e = torch.randint(self.num_envs, (batch_size,), device=self.device)
        E = self.num_envs
        flat = lambda x: x.view(self.rows * E, *x.shape[2:])
        first = t * E + e
        obs, action = flat(self.obs)[first], flat(self.action)[first]
        if self.n_step == 1:
            last = first
            reward = flat(self.reward)[first]
            discount = self.gamma * (~flat(self.terminated)[first]).float()
        else:
            # steps t..t+n-1 of the same env; a step counts if every earlier one was not an
            # episode end and it is not newer than the newest stored row.
            ahead = (self.pos - 1 - t) % self.rows + 1  # rows available from t onwards, >= 1
            rows = (t[:, None] + self._offsets) % self.rows  # [B, n]
            idx = rows * E + e[:, None]
            done = flat(self.terminated)[idx] | flat(self.truncated)[idx]
            valid = self._offsets < ahead[:, None]
            ended_before = torch.cumsum(done.int(), 1) - done.int()  # episode ends strictly before j
            alive = valid & (ended_before == 0)
            m = alive.sum(1)  # >= 1
            reward = (flat(self.reward)[idx] * alive * self._powers[:-1]).sum(1)
            last = idx.gather(1, (m - 1)[:, None]).squeeze(1)
            discount = self._powers[m] * (~flat(self.terminated)[last]).float()
        return Batch(obs, action, reward, flat(self.next_obs)[last], discount)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Write the filled part to ``path`` (``.npz``, no pickled objects)."""
        filled = self.rows if self.full else self.pos
        arrays = {f: getattr(self, f)[:filled].cpu().numpy() for f in self.FIELDS}
        with open(path, "wb") as fh:
            np.savez(fh, pos=np.int64(self.pos), full=np.bool_(self.full), rows=np.int64(self.rows), **arrays)

    def load(self, path: str | Path) -> None:
        """Inverse of :meth:`save`.

        Raises:
            CheckpointError: an unreadable file, or contents that do not fit this buffer: another
                capacity or shape, a dtype other than the buffer's, ``pos`` outside ``[0, rows)`` or
                a filled length that disagrees with ``pos``/``full``.
        """
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [k for k in ("pos", "full", "rows", *self.FIELDS) if k not in data.files]
                if missing:
                    raise CheckpointError(f"replay buffer {path} lacks {', '.join(missing)}; resume from an earlier "
                                          "checkpoint")
                rows, pos, full = data["rows"], data["pos"], data["full"]
                if any(a.shape != () for a in (rows, pos, full)) or rows.dtype.kind not in "iu" or \
                        pos.dtype.kind not in "iu" or full.dtype != np.bool_:
                    raise CheckpointError(f"replay buffer {path} has malformed pos/full/rows entries; resume from "
                                          "an earlier checkpoint")
                if int(rows) != self.rows or any(
                        data[f].shape[1:] != tuple(getattr(self, f).shape[1:]) for f in self.FIELDS):
                    raise CheckpointError(f"replay buffer {path} has another shape than the config; "
                                          "resume with the run's own config.json")
                pos, full = int(pos), bool(full)
                filled = self.rows if full else pos
                if not 0 <= pos < self.rows:
                    raise CheckpointError(f"replay buffer {path} has pos={pos} outside [0, {self.rows}); resume from "
                                          "an earlier checkpoint")
                for f in self.FIELDS:
                    arr, want = data[f], getattr(self, f)
                    if arr.shape[0] != filled or str(arr.dtype) != str(want.dtype).replace("torch.", ""):
                        raise CheckpointError(f"replay buffer {path}: {f} has {arr.shape[0]} rows of {arr.dtype} but "
                                              f"pos={pos}, full={full} need {filled} rows of "
                                              f"{str(want.dtype).replace('torch.', '')}; resume from an earlier "
                                              "checkpoint")
                for f in self.FIELDS:
                    getattr(self, f)[:filled].copy_(torch.from_numpy(data[f]))
                self.pos, self.full = pos, full
        except (OSError, EOFError, KeyError, ValueError, RuntimeError, zipfile.BadZipFile) as e:
            # EOFError: empty file; BadZipFile: truncated .npz
            raise CheckpointError(f"replay buffer {path} is unreadable ({e}); resume from an earlier checkpoint") from None
