"""HER's DDPG exploration and actor regulariser (Plappert et al. 2018, arXiv 1802.09464; baselines
``her/ddpg.py``): ``random_eps`` (a uniform random action with that probability per env step) and
``action_l2`` (``+ l2 · mean(mu(s)^2)`` in the actor loss), against values computed by hand."""

import pytest
import torch

from rlblocks.algos.ddpg import DDPGConfig
from rlblocks.algos.td3 import TD3Config
from rlblocks.buffers.replay import Batch
from rlblocks.registry import RunOptions, build_agent, get_algo

OPTS = RunOptions(run_dir=None, total_steps=1000, eval_every=0, checkpoint_every=0, progress=False, tensorboard=False)


def agent_for(algo: str, cfg, seed: int = 0):
    return build_agent(get_algo(algo), "Pendulum-v1", cfg, seed, torch.device("cpu"), OPTS)


def test_random_eps_replaces_whole_actions_with_uniform_ones():
    n, eps, sigma = 64, 0.3, 0.1
    agent = agent_for("ddpg", DDPGConfig(num_envs=n, learning_starts=0, random_eps=eps, exploration_noise=sigma))
    try:
        obs = torch.randn(n, 3)
        torch.manual_seed(5)
        action = agent.policy.act(obs)[0]
        # By hand, with the same draws in the same order: noise, the per-env coin, the uniform action.
        torch.manual_seed(5)
        noise = sigma * torch.randn(n, 1)
        pick = torch.rand(n, 1) < eps
        uniform = torch.rand(n, 1) * 2.0 - 1.0
        with torch.no_grad():
            greedy = (agent.policy.actor(agent.normalizer(obs)) + noise).clamp(-1.0, 1.0)
        assert torch.equal(action, torch.where(pick, uniform, greedy))
        assert 0 < int(pick.sum()) < n  # both branches taken
        assert torch.equal(agent.policy.act(obs, explore=False)[0], agent.policy.act(obs, explore=False)[0])  # eval: no draws
    finally:
        agent.env.close()


def test_random_eps_zero_draws_nothing_more():
    agent = agent_for("td3", TD3Config(learning_starts=0))
    try:
        torch.manual_seed(3)
        agent.policy.act(torch.zeros(1, 3))
        after = torch.rand(1)
        torch.manual_seed(3)
        torch.randn(1, 1)  # the Gaussian noise only
        assert torch.equal(after, torch.rand(1))
    finally:
        agent.env.close()


@pytest.mark.parametrize("l2", [0.5, 2.0])
def test_action_l2_adds_mean_squared_action_to_the_actor_loss(l2):
    g = torch.Generator().manual_seed(1)
    b = Batch(torch.randn(32, 3, generator=g), torch.rand(32, 1, generator=g) * 2 - 1, torch.randn(32, generator=g),
              torch.randn(32, 3, generator=g), torch.full((32,), 0.99))
    losses = {}
    for key in (0.0, l2):
        agent = agent_for("ddpg", DDPGConfig(learning_starts=0, batch_size=32, action_l2=key))
        try:
            with torch.no_grad():
                mu = agent.policy.actor(b.obs)  # the actor is stepped after its loss is taken
            _, actor_loss, _ = agent.algo.update(b)
            losses[key] = float(actor_loss)
        finally:
            agent.env.close()
    assert losses[l2] - losses[0.0] == pytest.approx(l2 * float(mu.square().mean()), rel=1e-5, abs=1e-7)
    assert float(mu.square().mean()) > 1e-4  # the premise: the penalty is not zero
