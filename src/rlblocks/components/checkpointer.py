"""The ``checkpointer`` module: periodic atomic checkpoints of the whole agent."""

from __future__ import annotations

from pathlib import Path

from rlblocks.checkpoint import save_checkpoint
from rlblocks.module import Module


class Checkpointer(Module):
    """Saves a checkpoint every ``every`` env steps (at the end of a loop iteration, so the
    state is consistent) and on demand (:meth:`save`, used at the end of a run and on Ctrl-C).

    A periodic save that falls on the last step (``total_steps``) is left to the end-of-run save,
    so no step is saved twice.
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
        return save_checkpoint(self.root, self.agent, self.keep_full)

    def state_dict(self):
        return {"next_save": self.next_save}

    def load_state_dict(self, state):
        self.next_save = int(state["next_save"])
