"""rlblocks: modular deep reinforcement learning on PyTorch and gymnasium."""

__version__ = "0.1.0"
