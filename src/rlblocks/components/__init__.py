"""Generic agent modules shared by every algorithm: env runner, normaliser, replay, evaluation,
logging, checkpoints and thread count."""

from rlblocks.components.checkpointer import Checkpointer
from rlblocks.components.env_runner import EnvRunner
from rlblocks.components.evaluator import Evaluator, evaluate
from rlblocks.components.logger import Logger
from rlblocks.components.normalizer import ObsNormalizer
from rlblocks.components.replay import Replay
from rlblocks.components.threads import Threads

__all__ = ["Checkpointer", "EnvRunner", "Evaluator", "Logger", "ObsNormalizer", "Replay", "Threads", "evaluate"]
