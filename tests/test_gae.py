"""GAE(lambda) of the rollout buffer: hand-computed values, truncation bootstraps, termination does not."""

from __future__ import annotations

import pytest
import torch

from rlblocks.buffers.rollout import RolloutBuffer, compute_gae

GAMMA, LAM = 0.9, 0.8


def _two_env_rollout():
    """T = 3 steps, 2 envs. Env 0 terminates at t=1; env 1 is truncated at t=0 (V(final obs) = 4)."""
    rewards = torch.tensor([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0]])
    values = torch.tensor([[0.5, 1.0], [1.0, 2.0], [1.5, 3.0]])
    terminated = torch.tensor([[False, False], [True, False], [False, False]])
    truncated = torch.tensor([[False, True], [False, False], [False, False]])
    final_values = torch.tensor([[99.0, 4.0], [99.0, 99.0], [99.0, 99.0]])  # 99: must never be read
    last_value = torch.tensor([2.0, 5.0])
    return rewards, values, terminated, truncated, final_values, last_value


def test_gae_hand_computed_with_truncation_and_termination():
    adv, ret = compute_gae(*_two_env_rollout(), GAMMA, LAM)
    gl = GAMMA * LAM
    # env 0: t=2 bootstraps from last_value; t=1 terminated (no bootstrap, recursion cut); t=0 carries t=1.
    a0_2 = 3.0 + GAMMA * 2.0 - 1.5
    a0_1 = 2.0 - 1.0
    a0_0 = (1.0 + GAMMA * 1.0 - 0.5) + gl * a0_1
    # env 1: t=2 and t=1 as usual; t=0 truncated: bootstraps from V(final obs) = 4, recursion cut.
    a1_2 = 1.0 + GAMMA * 5.0 - 3.0
    a1_1 = (1.0 + GAMMA * 3.0 - 2.0) + gl * a1_2
    a1_0 = 1.0 + GAMMA * 4.0 - 1.0
    expected = torch.tensor([[a0_0, a1_0], [a0_1, a1_1], [a0_2, a1_2]])
    assert torch.allclose(adv, expected, atol=1e-6)
    assert torch.allclose(adv, torch.tensor([[2.12, 3.6], [1.0, 3.5], [3.3, 2.5]]), atol=1e-6)
    assert torch.allclose(ret, expected + _two_env_rollout()[1], atol=1e-6)


def test_truncation_at_the_last_step_uses_final_value_not_last_value():
    rewards = torch.tensor([[1.0]])
    values = torch.tensor([[0.0]])
    adv, _ = compute_gae(rewards, values, torch.tensor([[False]]), torch.tensor([[True]]),
                         torch.tensor([[10.0]]), torch.tensor([-50.0]), GAMMA, LAM)
    assert adv.item() == pytest.approx(1.0 + GAMMA * 10.0)


def _reference_gae(rewards, values, terminated, truncated, final_values, last_value, gamma, lam):
    """Per-env, per-step Python loop straight from the definition."""
    T, N = rewards.shape
    adv = torch.zeros(T, N, dtype=torch.float64)
    for i in range(N):
        running = 0.0
        for t in reversed(range(T)):
            if truncated[t, i]:
                nxt = final_values[t, i]
            elif t == T - 1:
                nxt = last_value[i]
            else:
                nxt = values[t + 1, i]
            delta = rewards[t, i] + gamma * (0.0 if terminated[t, i] else float(nxt)) - values[t, i]
            done = bool(terminated[t, i] or truncated[t, i])
            running = delta + (0.0 if done else gamma * lam * running)
            adv[t, i] = running
    return adv


def test_gae_matches_reference_on_random_rollout():
    g = torch.Generator().manual_seed(0)
    T, N = 50, 3
    rewards, values = torch.randn(T, N, generator=g), torch.randn(T, N, generator=g)
    terminated = torch.rand(T, N, generator=g) < 0.08
    truncated = (torch.rand(T, N, generator=g) < 0.08) & ~terminated
    final_values, last_value = torch.randn(T, N, generator=g), torch.randn(N, generator=g)
    adv, ret = compute_gae(rewards, values, terminated, truncated, final_values, last_value, 0.99, 0.95)
    ref = _reference_gae(rewards, values, terminated, truncated, final_values, last_value, 0.99, 0.95)
    assert torch.allclose(adv.double(), ref, atol=1e-5)
    assert torch.allclose(ret, adv + values)


def test_lambda_one_without_episode_ends_is_discounted_return_plus_bootstrap():
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    values = torch.tensor([[0.3], [0.2], [0.1]])
    no = torch.zeros(3, 1, dtype=torch.bool)
    _, ret = compute_gae(rewards, values, no, no, torch.zeros(3, 1), torch.tensor([4.0]), 0.5, 1.0)
    assert ret[0, 0].item() == pytest.approx(1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 4)


def test_rollout_buffer_fills_computes_and_iterates_minibatches():
    buf = RolloutBuffer(3, 2, (4,), (1,))
    rewards, values, terminated, truncated, final_values, last_value = _two_env_rollout()
    for t in range(3):
        obs = torch.full((2, 4), float(t))
        buf.add(obs, torch.zeros(2, 1), rewards[t], terminated[t], truncated[t], final_obs=obs)
    assert buf.full
    buf.value.copy_(values)  # the learner's batched pass (PPO.score_rollout) fills these
    buf.final_value.copy_(final_values)
    buf.compute_returns(last_value, GAMMA, LAM)
    assert torch.allclose(buf.advantage, torch.tensor([[2.12, 3.6], [1.0, 3.5], [3.3, 2.5]]), atol=1e-6)
    torch.manual_seed(0)
    seen = []
    for mb in buf.minibatches(3):
        assert mb.obs.shape == (2, 4) and mb.advantage.shape == (2,)
        # every field of a sample comes from the same flat position t * N + env
        t = mb.index // 2
        assert torch.equal(mb.obs[:, 0], t.float())
        assert torch.allclose(mb.advantage, buf.advantage.view(-1)[mb.index])
        seen += mb.index.tolist()
    assert sorted(seen) == list(range(6))
    buf.reset()
    assert not buf.full and buf.pos == 0
