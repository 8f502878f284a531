"""Learned environment models (world-model ensembles)."""

from rlblocks.models.world_model import RunningMoments, WorldModel

__all__ = ["RunningMoments", "WorldModel"]
