"""The ``checkpointer`` module: periodic atomic checkpoints of the whole agent."""

from __future__ import annotations

from pathlib import Path

from rlblocks.checkpoint import save_checkpoint
from rlblocks.errors import NonFiniteError
from rlblocks.finite import first_non_finite
from rlblocks.module import Module

#: Modules whose state holds statistics, not weights (a NaN there is reported, not a reason to refuse).
SKIP_FINITE = ("logger", "evaluator", "env")


class Checkpointer(Module):
    """Saves a checkpoint every ``every`` env steps (at the end of a loop iteration, so the
    state is consistent) and on demand (:meth:`save`, used at the end of a run and on Ctrl-C).

    A periodic save that falls on the last step (``total_steps``) is left to the end-of-run save,
    so no step is saved twice. Weights holding NaN or Inf are never saved (see :meth:`save`).
    """

    name = "checkpointer"

    def __init__(self, run_dir: Path, every: int, total_steps: int, keep_full: int = 2):
        super().__init__()
        self.root = Path(run_dir) / "checkpoints"
        self.every, self.total_steps, self.keep_full = every, total_steps, keep_full
        self.next_save = every

    def after_step(self) -> None:
        if self.every > 0 and self.agent.env_steps >= self.next_save:
            self.next_save += self.every
            if self.agent.env_steps < self.total_steps:
                self.save()

    def save(self) -> Path:
        """Write a checkpoint of the agent now; returns its directory.

        Raises:
            NonFiniteError: a module's weights hold NaN or Inf; nothing is written, so the latest
                checkpoint keeps the last good weights.
        """
        bad = first_non_finite({name: m.state_dict() for name, m in self.agent.modules.items()
                                if name not in SKIP_FINITE})
        if bad is not None:
            raise NonFiniteError(f"{bad} holds NaN or Inf at env step {self.agent.env_steps}: not checkpointing it; "
                                 "the latest checkpoint keeps the last good weights (lower the learning rates, or look "
                                 "for NaN/Inf in the env's rewards and observations, then resume)")
        return save_checkpoint(self.root, self.agent, self.keep_full)

    def state_dict(self):
        return {"next_save": self.next_save}

    def load_state_dict(self, state):
        self.next_save = int(state["next_save"])
