"""The agent core: declared hooks and protocols, checked when the agent is built."""

from __future__ import annotations

import pytest
import torch

from rlblocks.agent import Agent
from rlblocks.errors import RLBlocksError
from rlblocks.module import HOOKS, Module, UpdateCounter


class Counter(Module):
    name = "counter"

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def setup(self):
        self.calls.append("setup")

    def on_episode_end(self, episode):
        self.calls.append(f"episode {episode}")


class Algo(Module, UpdateCounter):
    name = "algo"

    def update_count(self) -> int:
        return 7


def test_hooks_are_dispatched_to_the_modules_that_override_them():
    counter, quiet = Counter(), Module("quiet")
    agent = Agent([counter, quiet], config=None, device=torch.device("cpu"))
    assert counter.calls == ["setup"]
    agent.call("on_episode_end", 3)
    assert counter.calls == ["setup", "episode 3"]
    assert [m.name for hook in HOOKS for m in (counter, quiet) if m.implements(hook)] == ["counter", "counter"]
    assert agent._hooks["after_step"] == []  # a module's no-op base hooks cost nothing per step


def test_a_misspelt_hook_is_refused_when_the_agent_is_built():
    class Misspelt(Module):
        name = "misspelt"

        def on_episode_ends(self, episode):  # never called: the hook is on_episode_end
            raise AssertionError

    with pytest.raises(RLBlocksError, match=r"'misspelt' \(Misspelt\) defines on_episode_ends\(\), which is not a hook"):
        Agent([Misspelt()], config=None, device=torch.device("cpu"))


def test_updates_come_from_the_declared_update_counter():
    cpu = torch.device("cpu")
    assert Agent([Module("other")], None, cpu).updates == 0
    assert Agent([Module("other"), Algo()], None, cpu).updates == 7


def test_a_missing_required_module_is_named():
    class NeedsTarget(Module):
        name = "needs"
        requires = ("target",)

    with pytest.raises(RLBlocksError, match=r"module 'needs' requires \['target'\]"):
        Agent([NeedsTarget()], None, torch.device("cpu"))
