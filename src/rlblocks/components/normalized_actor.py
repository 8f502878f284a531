"""The shared part of the policy modules: an Actor reading the agent's observation normaliser."""

from __future__ import annotations

from typing import Any

from rlblocks.module import Actor


class NormalizedActor(Actor):
    """An :class:`~rlblocks.module.Actor` that normalises observations with the ``normalizer``
    module's statistics, bound once in ``setup`` (acting then never reads the agent). Feed-forward by
    default (state ``()``; recurrent policies override :meth:`initial_state`). Its acting state is
    its own ``state_dict()`` and the normaliser's: what a copy elsewhere needs to act alike.

    Mix in before :class:`~rlblocks.module.Module` (``class P(NormalizedActor, Module)``) so that this
    ``setup`` is the one the agent calls.
    """

    def setup(self) -> None:
        self.normalizer = self.agent.normalizer

    def initial_state(self, n: int):
        return ()

    def acting_state(self) -> dict[str, Any]:
        return {"policy": self.state_dict(), "normalizer": self.normalizer.state_dict()}

    def load_acting_state(self, state: dict[str, Any]) -> None:
        self.load_state_dict(state["policy"])
        self.normalizer.load_state_dict(state["normalizer"])
