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


@pytest.mark.parametrize("algo, env_id, overrides", [
    ("sac", "Pendulum-v1", {}), ("td3", "Pendulum-v1", {}), ("dqn", "CartPole-v1", {}),
    ("sac", "PendulumNoVel-v1", {"arch": "gru", "rnn_size": "8"}), ("ppo", "Pendulum-v1", {}),
    ("ppo", "PendulumNoVel-v1", {"arch": "lstm", "rnn_size": "8"}), ("dqn", "BitFlip-v0", {}),
])
def test_an_actor_acts_without_its_agent(algo, env_id, overrides):
    """Acting reads the actor's own networks and normaliser and its arguments, never ``agent.*``
    (the warm-up and epsilon schedules read the ``env_steps`` argument): detached, it still acts."""
    from rlblocks.module import Actor
    from rlblocks.registry import RunOptions, build_agent, get_algo
    from rlblocks.run import resolve_config

    spec = get_algo(algo)
    cfg = resolve_config(spec, env_id, overrides={"hidden_sizes": "16", "num_envs": "2", **overrides})
    agent = build_agent(spec, env_id, cfg, 0, torch.device("cpu"),
                        RunOptions(None, 100, 0, 0, False, tensorboard=False, training=False))
    try:
        actor, obs = agent.policy, agent.env.obs
        assert isinstance(actor, Actor)
        actor.agent = None  # any agent.* read now raises
        state = actor.initial_state(2)
        for explore, env_steps in ((True, 0), (True, 10**6), (False, 0)):
            action, state, _ = actor.act(obs, state, explore, True, env_steps)
            assert action.shape[0] == 2
    finally:
        agent.env.close()


def test_the_warm_up_is_the_env_steps_argument():
    from rlblocks.registry import RunOptions, build_agent, get_algo
    from rlblocks.run import resolve_config

    spec = get_algo("td3")
    cfg = resolve_config(spec, "Pendulum-v1", overrides={"learning_starts": "50", "exploration_noise": "0"})
    agent = build_agent(spec, "Pendulum-v1", cfg, 0, torch.device("cpu"),
                        RunOptions(None, 100, 0, 0, False, tensorboard=False, training=False))
    try:
        obs = torch.zeros(1, 3)
        greedy = agent.policy.act(obs, (), False)[0]
        torch.manual_seed(0)
        warm = agent.policy.act(obs, (), True, False, 49)[0]
        torch.manual_seed(0)
        assert torch.equal(warm, torch.rand(1, 1) * 2.0 - 1.0)  # uniform while env_steps < learning_starts
        assert torch.equal(agent.policy.act(obs, (), True, False, 50)[0], greedy)  # no noise: the greedy action
    finally:
        agent.env.close()


@pytest.mark.parametrize("algo, env_id, overrides", [
    ("sac", "Pendulum-v1", {}), ("td3", "Pendulum-v1", {}), ("dqn", "CartPole-v1", {}),
    ("sac", "PendulumNoVel-v1", {"arch": "gru", "rnn_size": "8"}), ("ppo", "Pendulum-v1", {}),
    ("ppo", "PendulumNoVel-v1", {"arch": "lstm", "rnn_size": "8"}),
])
def test_an_actors_acting_state_makes_a_copy_act_alike(algo, env_id, overrides):
    """What the learner ships to Ray workers and the evaluator actor is the policy's acting state; a
    copy built with other initial weights then acts exactly alike. (Shipping the ``policy`` and
    ``normalizer`` modules by name left DQN's copies with their own untrained Q network.)"""
    from rlblocks.registry import RunOptions, build_agent, get_algo
    from rlblocks.run import resolve_config

    spec = get_algo(algo)
    cfg = resolve_config(spec, env_id, overrides={"hidden_sizes": "16", **overrides})
    opts = RunOptions(None, 100, 0, 0, False, tensorboard=False, training=False)
    learner, copy = (build_agent(spec, env_id, cfg, seed, torch.device("cpu"), opts) for seed in (0, 1))
    try:
        obs = torch.randn(5, *learner.env.obs_space.shape)
        learner.normalizer.process_experience({"next_obs": obs * 3.0 + 1.0})  # statistics to ship too
        act = lambda agent: agent.policy.act(obs, agent.policy.initial_state(5), False, True)[0]
        assert not torch.equal(act(learner), act(copy))
        copy.policy.load_acting_state(learner.policy.acting_state())
        assert torch.equal(act(learner), act(copy))
    finally:
        learner.env.close()
        copy.env.close()
