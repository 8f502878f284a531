"""The ``normalizer`` module: running observation normalisation, saved with the agent."""

from __future__ import annotations

import torch

from rlblocks.module import Module, Weights
from rlblocks.nets.normalizer import RunningMeanStd


class ObsNormalizer(Module, Weights):
    """Normalises observations with running statistics of every observation seen in training.

    Disabled (``enabled=False``) it is the identity, so algorithms call it unconditionally.
    Statistics update in ``process_experience`` only, hence they are frozen during evaluation.

    Shapes: ``__call__`` maps ``[B, *obs_shape]`` to the same shape.
    """

    name = "normalizer"

    def __init__(self, obs_shape: tuple[int, ...], enabled: bool, clip: float = 10.0, eps: float = 1e-8):
        super().__init__()
        self.enabled = enabled
        self.rms = RunningMeanStd(obs_shape, clip=clip, eps=eps)

    def process_experience(self, exp) -> None:
        if self.enabled:
            self.rms.update(exp["next_obs"])

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        return self.rms(obs) if self.enabled else obs

    def to(self, device) -> ObsNormalizer:
        self.rms.to(device)
        return self

    def state_dict(self):
        return {k: v.clone() for k, v in self.rms.state_dict().items()}

    def load_state_dict(self, state):
        self.rms.load_state_dict(state)
