"""Experience storage (knows nothing of algorithms)."""

from rlblocks.buffers.replay import Batch, ReplayBuffer

__all__ = ["Batch", "ReplayBuffer"]
