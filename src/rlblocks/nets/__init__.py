"""Neural network building blocks (know nothing of algorithms)."""

from rlblocks.nets.actors import DeterministicActor, SquashedGaussianActor
from rlblocks.nets.ensemble import EnsembleLinear, EnsembleMLP, QEnsemble
from rlblocks.nets.mlp import mlp
from rlblocks.nets.normalizer import RunningMeanStd
from rlblocks.nets.target import polyak_update, target_copy

__all__ = [
    "DeterministicActor",
    "EnsembleLinear",
    "EnsembleMLP",
    "QEnsemble",
    "RunningMeanStd",
    "SquashedGaussianActor",
    "mlp",
    "polyak_update",
    "target_copy",
]
