"""``target_update_every``: the Polyak step of DDPG/TD3/SAC's target networks on every k-th policy step only
(mrl's ``target_network_update_freq``, HER baselines' once-per-cycle target update)."""

import pytest
import torch

from rlblocks.registry import RunOptions, build_agent, get_algo
from rlblocks.run import resolve_config

TINY = {"hidden_sizes": "8,8", "batch_size": "4", "learning_starts": "1000000", "tau": "0.25"}


def _agent(algo: str, overrides: dict):
    spec = get_algo(algo)
    cfg = resolve_config(spec, "Pendulum-v1", overrides={**TINY, **overrides})
    opts = RunOptions(None, 100_000, eval_every=0, checkpoint_every=0, progress=False, tensorboard=False)
    return build_agent(spec, "Pendulum-v1", cfg, 0, torch.device("cpu"), opts)


def _one_update(agent) -> None:
    """One gradient step, counted as ``optimize`` counts it."""
    algo = agent.algo
    algo.update(algo.normalized(agent.replay.sample(4)))
    algo.updates += 1


@pytest.mark.parametrize("algo, every, policy_delay, moves_at", [
    ("sac", 3, 1, 3),   # SAC: every 3rd update
    ("ddpg", 3, 1, 3),  # DDPG: a policy step per update, the targets move at the 3rd
    ("td3", 2, 2, 4),   # TD3: policy steps at updates 2, 4, ...; every 2nd of them is update 4
])
def test_targets_move_on_every_kth_policy_step_only(algo, every, policy_delay, moves_at, one_thread):
    overrides = {"target_update_every": str(every)}
    if algo == "td3":
        overrides["policy_delay"] = str(policy_delay)
    agent = _agent(algo, overrides)
    try:
        agent.train(20)  # random actions into the replay buffer; no update before learning_starts
        q, q_target = agent.critic.q.net.layers[1].weight, agent.critic.q_target.net.layers[1].weight
        initial = q_target.detach().clone()
        for _ in range(moves_at - 1):
            _one_update(agent)
            assert torch.equal(q_target, initial), "the targets moved before their k-th policy step"
        assert not torch.equal(q, initial), "the online critic should have moved"
        _one_update(agent)
        # theta' <- (1 - tau) theta' + tau theta, once, with the online weights of this update
        torch.testing.assert_close(q_target, 0.75 * initial + 0.25 * q.detach())
    finally:
        agent.env.close()


def test_default_moves_targets_after_every_update(one_thread):
    agent = _agent("sac", {})
    try:
        agent.train(20)
        q, q_target = agent.critic.q.net.layers[1].weight, agent.critic.q_target.net.layers[1].weight
        initial = q_target.detach().clone()
        _one_update(agent)
        torch.testing.assert_close(q_target, 0.75 * initial + 0.25 * q.detach())
    finally:
        agent.env.close()
