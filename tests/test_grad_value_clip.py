"""``grad_value_clip`` (mrl's ``grad_value_clipping``) and ``actor_layer_norm`` of DDPG/TD3/SAC."""

import pytest
import torch

from rlblocks.registry import RunOptions, build_agent, get_algo
from rlblocks.run import resolve_config

TINY = {"hidden_sizes": "8,8", "batch_size": "16", "learning_starts": "1000000"}


def _agent(algo: str, overrides: dict):
    spec = get_algo(algo)
    cfg = resolve_config(spec, "Pendulum-v1", overrides={**TINY, **overrides})
    opts = RunOptions(None, 100_000, eval_every=0, checkpoint_every=0, progress=False, tensorboard=False)
    return build_agent(spec, "Pendulum-v1", cfg, 0, torch.device("cpu"), opts)


def _largest_stepped_gradients(agent) -> list[float]:
    """Max |gradient element| that each optimizer step of one update sees."""
    seen: list[float] = []
    for opt in agent.algo.optimizers().values():
        step = opt.step

        def recording(*args, _step=step, _opt=opt, **kw):
            grads = [p.grad.abs().max() for g in _opt.param_groups for p in g["params"] if p.grad is not None]
            seen.append(float(torch.stack(grads).max()))
            return _step(*args, **kw)

        opt.step = recording
    torch.manual_seed(0)
    agent.algo.update(agent.algo.normalized(agent.replay.sample(16)))
    return seen


@pytest.mark.parametrize("algo", ["ddpg", "sac"])
def test_each_step_sees_gradients_clipped_to_the_value(algo, one_thread):
    unclipped_agent, clipped_agent = _agent(algo, {}), _agent(algo, {"grad_value_clip": "0.001"})
    try:
        for agent in (unclipped_agent, clipped_agent):
            agent.train(50)  # random actions into the replay buffer, no update before learning_starts
        unclipped, clipped = _largest_stepped_gradients(unclipped_agent), _largest_stepped_gradients(clipped_agent)
        assert len(clipped) == len(unclipped) == 2  # the critic step, then the actor (+ temperature) step
        assert min(unclipped) > 0.001  # so the clip has something to do
        assert max(clipped) == pytest.approx(0.001)  # the largest elements sit at the bound
    finally:
        unclipped_agent.env.close()
        clipped_agent.env.close()


@pytest.mark.parametrize("algo", ["ddpg", "sac"])
def test_actor_layer_norm_puts_layernorm_before_each_hidden_activation(algo, one_thread):
    agent = _agent(algo, {"actor_layer_norm": "true"})
    try:
        layers = [type(m).__name__ for m in agent.policy.actor.net]
        assert layers == ["Linear", "LayerNorm", "ReLU", "Linear", "LayerNorm", "ReLU", "Linear"]
        if algo == "ddpg":  # the target actor is a copy of the same architecture
            assert [type(m).__name__ for m in agent.policy.actor_target.net] == layers
    finally:
        agent.env.close()
