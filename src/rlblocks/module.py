"""The building block of an agent: a named object with lifecycle hooks.

Design after mrl (Pitis et al. 2020, "mrl: modular RL", github.com/spitis/mrl): an agent is an
ordered set of modules; every hook a module defines is called by :class:`rlblocks.agent.Agent`
in module order. A module reaches its peers through ``self.agent.<name>`` and never keeps copies
of them, so each module saves and loads only its own state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlblocks.agent import Agent

#: Hook names the agent dispatches. A module implements any subset of them.
HOOKS = (
    "setup",  # once, after all modules are attached, before any env step
    "process_experience",  # after every vector-env step, with the transition batch
    "optimize",  # after every vector-env step; the module decides whether to update
    "on_episode_end",  # once per finished episode, with {"return", "length", "env"}
    "after_step",  # end of every loop iteration: evaluation, logging, checkpoints
    "on_train_start",  # once per training session, after a resume restored the state: open outputs
    "on_train_end",  # once the total env steps are reached and saved (not on a stop): last row, last evaluation
)


class Module:
    """Base class for agent modules.

    Attributes:
        name: the attribute name under which the agent exposes this module.
        requires: names of other modules that must be attached, checked at agent construction.
        checkpoint_format: ``"pt"`` (state goes into the torch checkpoint) or ``"npz"`` (large
            arrays such as replay buffers, saved as a separate ``<name>.npz``).
    """

    name: str = ""
    requires: tuple[str, ...] = ()
    checkpoint_format: str = "pt"

    def __init__(self, name: str | None = None):
        if name is not None:
            self.name = name
        if not self.name:
            raise ValueError(f"{type(self).__name__} needs a name")
        self.agent: Agent | None = None

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume this module exactly (tensors, numbers, strings)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
