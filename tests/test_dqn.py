"""DQN: double-Q and max targets against hand-computed values, dueling heads, target updates
(hard copy and Polyak), epsilon schedule, integer actions in replay, and CartPole learning."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import pytest
import torch

from rlblocks import run
from rlblocks.algos.dqn import DQN, DQNConfig
from rlblocks.algos.targets import TDTarget
from rlblocks.buffers.replay import Batch
from rlblocks.nets.qnet import QNetwork


class FixedQ(torch.nn.Module):
    """Q(s, .) = a fixed table row selected by the (one-hot) state."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.nn.Parameter(torch.tensor(table))

    def forward(self, obs):
        return obs @ self.table


class Critic:
    def __init__(self, online, target):
        self.q, self.q_target = FixedQ(online), FixedQ(target)


def make_dqn(**cfg) -> DQN:
    algo = DQN(DQNConfig(**cfg))
    algo.critic = Critic([[1.0, 5.0, 2.0], [0.0, 0.0, 3.0]], [[10.0, 20.0, 30.0], [7.0, 8.0, 9.0]])
    return algo


def test_double_q_and_max_targets_hand_computed():
    next_obs = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # double Q: argmax of the online net (actions 1 and 2), valued by the target net: 20, 9
    assert make_dqn(double_q=True).target_value(next_obs).tolist() == [[20.0, 9.0]]  # [E=1, B]
    # max over the target net: 30, 9
    assert make_dqn(double_q=False).target_value(next_obs).tolist() == [[30.0, 9.0]]
    algo = make_dqn(double_q=True, gamma=0.5, her_clip_target=True)
    b = Batch(None, None, torch.tensor([-1.0, -1.0]), next_obs, torch.tensor([0.5, 0.0]))
    # y = r + discount V', clipped to [-1/(1-gamma), 0] = [-2, 0]: -1 + 10 -> 0; -1 + 0 -> -1; by the
    # ``target`` module DQN's update calls (TD(0)/n-step over the algorithm's target_value)
    target = TDTarget()
    target.agent = SimpleNamespace(algo=algo)
    b_q, y = target(b)
    assert b_q is b and y.tolist() == [0.0, -1.0]


def test_dueling_head_mean_zero_advantage():
    torch.manual_seed(0)
    net = QNetwork(4, 3, [16, 8], dueling=True)
    obs = torch.randn(5, 4)
    h = torch.relu(net.trunk(obs))
    q = net(obs)
    assert q.shape == (5, 3)
    # Q = V + A - mean A: the mean over actions of Q is V
    torch.testing.assert_close(q.mean(-1), net.value(h).squeeze(-1))


@pytest.mark.parametrize("interval", [0, 1, 1000])
def test_target_update_hard_copy_or_polyak(tmp_path, interval, one_thread):
    overrides = {"learning_starts": "200", "train_freq": "1", "gradient_steps": "1", "batch_size": "8",
                 "hidden_sizes": "8", "target_update_interval": str(interval), "tau": "0.5", "buffer_size": "500"}
    out = run.train("dqn", "CartPole-v1", steps=230, seed=0, run_dir=str(tmp_path / "r"), eval_every=0,
                    checkpoint_every=0, device="cpu", progress=False, overrides=overrides)
    state = torch.load(out / "checkpoints" / "step_0000000230" / "state.pt", weights_only=True)
    q, qt = state["modules"]["critic"]["q"], state["modules"]["critic"]["q_target"]
    assert state["modules"]["algo"]["updates"] == 31
    if interval == 1:  # a hard copy after every update
        assert all(torch.equal(q[k], qt[k]) for k in q)
    elif interval == 0:  # Polyak averaging: between the initial and the current weights
        assert not any(torch.equal(q[k], qt[k]) for k in q)
    else:  # no copy yet: the target still holds the initial weights (those of a fresh seed-0 agent)
        from rlblocks.registry import RunOptions, build_agent, get_algo

        spec = get_algo("dqn")
        fresh = build_agent(spec, "CartPole-v1", run.resolve_config(spec, "CartPole-v1", overrides=overrides), 0,
                            torch.device("cpu"), RunOptions(None, 1, 0, 0, False, False))
        try:
            initial = fresh.critic.q.state_dict()
            assert all(torch.equal(initial[k], qt[k]) for k in q)
            assert not all(torch.equal(initial[k], q[k]) for k in q)
        finally:
            run._close(fresh)


def test_epsilon_schedule_and_integer_actions(tmp_path, one_thread):
    from rlblocks.registry import RunOptions, build_agent, get_algo

    spec = get_algo("dqn")
    cfg = run.resolve_config(spec, "CartPole-v1", overrides={"learning_starts": "10", "exploration_steps": "100",
                                                              "eps_start": "1.0", "eps_end": "0.1", "buffer_size": "100"})
    agent = build_agent(spec, "CartPole-v1", cfg, 0, torch.device("cpu"), RunOptions(None, 100, 0, 0, False, False))
    try:
        assert agent.policy.epsilon(0) == 1.0
        assert agent.policy.epsilon(50) == pytest.approx(0.55)
        assert agent.policy.epsilon(500) == pytest.approx(0.1)
        agent.train(20)
        assert agent.replay.buffer.action.dtype == torch.int64 and agent.replay.buffer.action.shape == (100, 1)  # [rows, envs]
        assert set(agent.replay.buffer.action[:20, 0].tolist()) <= {0, 1}
    finally:
        run._close(agent)


@pytest.mark.parametrize("seed", [0, 1])
def test_dqn_cartpole_reaches_475_within_50k_steps(tmp_path, seed, one_thread):
    """rl-zoo's CartPole settings (the dqn CartPole preset); about 45 s per seed on this machine.
    Evaluated greedily (10 episodes) every 5,000 steps; DQN on CartPole oscillates, so the bar is
    that an evaluation reaches 475 within the budget (seed 0: 500 at 50k, seed 1: 500 at 35k)."""
    out = run.train("dqn", "CartPole-v1", steps=50_000, seed=seed, run_dir=str(tmp_path / "r"), eval_every=5000,
                    checkpoint_every=0, device="cpu", progress=False)
    with open(out / "eval.csv", newline="") as fh:
        scores = [float(r["score"]) for r in csv.DictReader(fh)]
    assert max(scores) >= 475, scores
