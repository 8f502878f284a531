"""The ``replay`` module: puts every transition into a :class:`ReplayBuffer`."""

from __future__ import annotations

from pathlib import Path

from rlblocks.buffers.replay import ReplayBuffer
from rlblocks.module import ArrayCheckpoint, Module


class Replay(Module, ArrayCheckpoint):
    """Agent-side wrapper of :class:`rlblocks.buffers.ReplayBuffer` (saved as ``replay.npz``)."""

    name = "replay"

    def __init__(self, buffer: ReplayBuffer):
        super().__init__()
        self.buffer = buffer

    def process_experience(self, exp) -> None:
        self.buffer.add(exp["obs"], exp["action"], exp["reward"], exp["next_obs"], exp["terminated"], exp["truncated"])

    def sample(self, batch_size: int):
        return self.buffer.sample(batch_size)

    def save(self, path: Path) -> None:
        self.buffer.save(path)

    def load(self, path: Path) -> None:
        self.buffer.load(path)
