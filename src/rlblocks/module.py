"""The building block of an agent: a named object with lifecycle hooks.

Design after mrl (Pitis et al. 2020, "mrl: modular RL", github.com/spitis/mrl): an agent is an
ordered set of modules; every hook a module defines is called by :class:`rlblocks.agent.Agent`
in module order. A module reaches its peers through ``self.agent.<name>`` and never keeps copies
of them, so each module saves and loads only its own state.

Beyond the hooks, a module takes part in the agent's services by declaring a protocol: it
inherits one of the abstract bases below (:class:`MetricsSource`, :class:`ArrayCheckpoint`,
:class:`Closeable`) and the service finds it with ``agent.modules_of(protocol)``, never by
``hasattr`` or by the module's name. A declared protocol whose methods are missing is an error
when the module is built (``TypeError`` from :mod:`abc`), not a silent skip.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlblocks.nets.recurrent import reset_where

if TYPE_CHECKING:
    from rlblocks.agent import Agent

#: Hook names the agent dispatches. A module implements any subset of them by overriding
#: :class:`Module`'s no-op methods of these names; a method that looks like a hook (``on_*``,
#: ``after_*``, ``before_*``, ``process_*``) but is not one is refused when the agent is built.
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

    Its :meth:`state_dict` goes into the torch checkpoint (``state.pt``); large arrays go through
    :class:`ArrayCheckpoint` instead.
    """

    name: str = ""
    requires: tuple[str, ...] = ()

    def __init__(self, name: str | None = None):
        if name is not None:
            self.name = name
        if not self.name:
            raise ValueError(f"{type(self).__name__} needs a name")
        self.agent: Agent | None = None

    # --------------------------------------------------------------- hooks (see HOOKS): no-ops here
    def setup(self) -> None:
        """Once, after all modules are attached, before any env step."""

    def process_experience(self, exp: dict[str, Any]) -> None:
        """After every vector-env step, with its transition batch."""

    def optimize(self) -> None:
        """After every vector-env step; the module decides whether to update."""

    def on_episode_end(self, episode: dict[str, Any]) -> None:
        """Once per finished episode, with ``{"return", "length", "env"}``."""

    def after_step(self) -> None:
        """At the end of every loop iteration: evaluation, logging, checkpoints."""

    def on_train_start(self) -> None:
        """Once per training session, after a resume restored the state."""

    def on_train_end(self) -> None:
        """Once the total env steps are reached and saved (not on a stop)."""

    def implements(self, hook: str) -> bool:
        """Whether this module overrides ``hook`` (one of :data:`HOOKS`), so the agent calls it."""
        return getattr(type(self), hook) is not getattr(Module, hook)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume this module exactly (tensors, numbers, strings)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


# ----------------------------------------------------------------------------- protocols
class MetricsSource(abc.ABC):
    """Reports scalar metrics (losses, entropy, ...) to the logger, one ``progress.csv`` column each.

    ``metric_names`` fixes the columns (in this order) when the logger is set up; ``pop_metrics()``
    is called once per log row and returns the means since the previous call, ``{name: float}``
    (NaN where nothing was recorded), so the update loop itself never synchronises with the host.
    """

    metric_names: tuple[str, ...] = ()

    @abc.abstractmethod
    def pop_metrics(self) -> dict[str, float]:
        """Means of each of ``metric_names`` since the last call; resets them."""


class UpdateCounter(abc.ABC):
    """The algorithm module (``algo``): counts its gradient updates, which ``progress.csv``
    (``updates``) and ``eval.csv`` (``epoch``) report (see :meth:`rlblocks.agent.Agent.updates`)."""

    @abc.abstractmethod
    def update_count(self) -> int:
        """Gradient updates so far."""


class Weights(abc.ABC):
    """Holds trained weights (networks, normaliser statistics) whose ``state_dict()`` ``--load`` copies
    into a new run (:func:`rlblocks.load.load_weights`); optimizers, replay and counters do not declare
    it and start fresh."""


class ArrayCheckpoint(abc.ABC):
    """Holds arrays too large for ``state.pt`` (replay, rollout buffers): a checkpoint saves them as
    ``<module name>.npz`` beside it, read back with ``allow_pickle=False``. Only the newest
    checkpoints keep these files (see :mod:`rlblocks.checkpoint`)."""

    @abc.abstractmethod
    def save(self, path: Path) -> None:
        """Write the arrays to ``path`` (an ``.npz`` file)."""

    @abc.abstractmethod
    def load(self, path: Path) -> None:
        """Restore the arrays :meth:`save` wrote to ``path``."""


class Closeable(abc.ABC):
    """Holds outside resources (env processes, open files, a progress bar) that the run releases
    with ``close()`` when it ends, normally or not. ``close()`` must be safe to call twice."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the resources."""


class Actor(abc.ABC):
    """The acting seam: a policy that can act away from the agent (DESIGN.md, "Seams").

    ``state`` is what a recurrent policy carries from one step to the next, per env: a tensor with
    the env dimension at dim 1 (e.g. a packed hidden state ``[K, N, H]``), or ``()`` for a
    feed-forward policy. Whoever steps envs keeps one state per env (``initial_state(n)``), threads
    it through ``act`` and ``observe`` (the step's reward) and calls ``reset_state`` where episodes start; training and evaluation hold
    their own states. ``act`` reads only the actor's own attributes (networks, the normaliser's
    statistics) and its arguments, never ``agent.*``: training-time schedules (warm-up, epsilon)
    read the ``env_steps`` the collector passes.
    """

    @abc.abstractmethod
    def initial_state(self, n: int):
        """The state of ``n`` envs at the start of their episodes (``()`` when feed-forward)."""

    @abc.abstractmethod
    def act(self, obs, state, explore: bool = True, deterministic: bool = False, env_steps: int = 0):
        """``(action, next state, extras)`` for observations ``obs [N, *obs_shape]`` (CPU).

        ``explore``: training-time acting (sampling, exploration noise, at ``env_steps`` env steps of
        the run so far: the warm-up and exploration schedules' input); else evaluation, the mode
        if ``deterministic``. ``extras`` (a dict of CPU tensors, possibly empty) is what acting
        computed for learning (normalised observation, raw sample, the state used), handed to the
        learner in the experience dict under ``"extras"``.
        """

    @abc.abstractmethod
    def acting_state(self) -> dict[str, Any]:
        """Everything a copy of this actor elsewhere (a Ray worker, an evaluator actor) needs to act
        as this one does: its networks and the normaliser statistics it reads (tensors in plain
        containers), for :meth:`load_acting_state`. This is all the learner ships to acting copies."""

    @abc.abstractmethod
    def load_acting_state(self, state: dict[str, Any]) -> None:
        """Load what :meth:`acting_state` gave (from this actor or a copy of it)."""

    def observe(self, state, reward):
        """``state`` after the env's step returned ``reward`` (``[N]`` float32, CPU), before any
        reset: a policy that takes the previous reward as input (a recurrent off-policy actor with
        ``rnn_inputs=obs_action_reward``) records it here; others pass ``state`` through."""
        return state

    def reset_state(self, state, starts):
        """``state`` with the envs where ``starts`` (``[N]`` bool tensor) is True back at their
        initial (zero) state; a feed-forward ``()`` passes through."""
        return state if isinstance(state, tuple) else reset_where(state, starts)
