"""The agent: an ordered set of named modules and the environment loop that drives them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

import torch

from rlblocks.errors import RLBlocksError
from rlblocks.module import HOOKS, Module, UpdateCounter

#: Name prefixes of hook-like methods: one that is not in ``HOOKS`` is a misspelt hook.
HOOK_PREFIXES = ("on_", "after_", "before_", "process_")

P = TypeVar("P")


class Agent:
    """Attach modules, check their requirements, dispatch hooks, run the training loop.

    Modules are reachable as attributes (``agent.replay``). Hooks are called on every module
    that defines them, in the order the modules were given.

    Args:
        modules: the modules, in hook-call order. Names must be unique.
        config: the resolved algorithm config (saved in checkpoints).
        device: torch device for networks and buffers.

    Raises:
        RLBlocksError: a duplicate module name or an unmet ``requires`` entry.
    """

    def __init__(self, modules: Iterable[Module], config: Any, device: torch.device):
        self.config = config
        self.device = device
        self.modules: dict[str, Module] = {}
        self.env_steps = 0  # transitions collected, summed over vector envs
        self.vector_steps = 0  # calls to the vector env's step()
        self.stop_requested = False
        self._update_counter = None
        for module in modules:
            if module.name in self.modules or hasattr(self, module.name):
                raise RLBlocksError(f"module name {module.name!r} is used twice or is reserved")
            module.agent = self
            self.modules[module.name] = module
        for module in self.modules.values():
            missing = [r for r in module.requires if r not in self.modules]
            if missing:
                raise RLBlocksError(
                    f"module {module.name!r} requires {missing} but the agent has only "
                    f"{list(self.modules)}; add those modules to the preset"
                )
            for attr in dir(type(module)):
                if attr.startswith(HOOK_PREFIXES) and attr not in HOOKS:
                    raise RLBlocksError(f"module {module.name!r} ({type(module).__name__}) defines {attr}(), which is "
                                        f"not a hook, so it would never be called; hooks are {', '.join(HOOKS)}")
        self._hooks = {hook: [getattr(m, hook) for m in self.modules.values() if m.implements(hook)]
                       for hook in HOOKS}
        counters = self.modules_of(UpdateCounter)
        self._update_counter = counters[0] if counters else None  # read every step by some services
        self.call("setup")

    def __getattr__(self, name: str) -> Module:
        modules = self.__dict__.get("modules", {})
        if name in modules:
            return modules[name]
        raise AttributeError(name)

    @property
    def updates(self) -> int:
        """Gradient updates of the algorithm module (:class:`~rlblocks.module.UpdateCounter`); 0 without one."""
        return 0 if self._update_counter is None else self._update_counter.update_count()

    def modules_of(self, protocol: type[P]) -> list[P]:
        """The modules that declare ``protocol`` (a class such as
        :class:`~rlblocks.module.MetricsSource`), in module order."""
        return [m for m in self.modules.values() if isinstance(m, protocol)]

    def call(self, hook: str, *args: Any) -> None:
        """Call ``hook(*args)`` on every module that implements it, in module order."""
        for fn in self._hooks[hook]:
            fn(*args)

    # ---------------------------------------------------------------- training loop
    def train(self, total_env_steps: int) -> None:
        """Step the vector env until ``env_steps >= total_env_steps``.

        Per iteration: ``env.step`` → ``process_experience(exp)`` → ``optimize()`` →
        ``on_episode_end(ep)`` for finished episodes → ``after_step()``. Stops early (after a
        complete iteration, so a checkpoint is consistent) when ``stop_requested`` is set.
        """
        env = self.modules["env"]
        while self.env_steps < total_env_steps and not self.stop_requested:
            exp, finished = env.step()
            self.env_steps += env.num_envs
            self.vector_steps += 1
            self.call("process_experience", exp)
            self.call("optimize")
            for episode in finished:
                self.call("on_episode_end", episode)
            self.call("after_step")

    # ---------------------------------------------------------------- checkpoint state
    def state_dict(self) -> dict[str, Any]:
        """Counters, the torch RNG and every module's state, keyed by module name."""
        return {
            "counters": {"env_steps": self.env_steps, "vector_steps": self.vector_steps},
            "torch_rng": torch.get_rng_state(),
            "modules": {name: m.state_dict() for name, m in self.modules.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.env_steps = int(state["counters"]["env_steps"])
        self.vector_steps = int(state["counters"]["vector_steps"])
        torch.set_rng_state(state["torch_rng"])
        for name, module in self.modules.items():
            if name in state["modules"]:
                module.load_state_dict(state["modules"][name])
