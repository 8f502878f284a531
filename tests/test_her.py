"""Hindsight relabelling as a replay stage: each strategy's goal distribution on hand-built
episodes, rewards recomputed for the relabelled goal (1-step and n-step, with a termination and a
goal reached mid-window), complete-episode index sampling, strategy parsing, persistence.

Goals are 1-dim: the achieved goal after step ``t`` of env ``e`` is ``100 e + t`` and the desired
goal of an episode ``1000 + 10 e + k`` (episode ``k``), so every goal names where it came from.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlblocks.buffers.her import SOURCES, HindsightRelabel, parse_strategy
from rlblocks.buffers.replay import ReplayBuffer
from rlblocks.errors import ConfigError

SHAPES = {"observation": (1,), "achieved_goal": (1,), "desired_goal": (1,)}
GAMMA = 0.5


def sparse_reward(achieved, desired, info):
    """The bit-flipping / Fetch convention: 0 at the goal, else -1 (vectorised)."""
    return -(np.abs(achieved - desired).sum(-1) > 0).astype(np.float32)


def ag(t: int, e: int) -> float:
    return 100.0 * e + t


def dg(e: int, k: int) -> float:
    return 1000.0 + 10 * e + k


# env 0: episode 0 = steps 0-2 (truncated at 2), episode 1 = steps 3-6 (truncated at 6), episode 2 runs from 7
# env 1: episode 0 = steps 0-3 (truncated at 3), episode 1 = steps 4-8 (running)
ENDS = {0: (2, 6), 1: (3,)}
STEPS = 9


def episode_of(t: int, e: int) -> int:
    return sum(t > end for end in ENDS[e])


def episode_steps(t: int, e: int) -> list[int]:
    bounds = [-1, *ENDS[e], STEPS - 1]
    k = episode_of(t, e)
    return list(range(bounds[k] + 1, bounds[k + 1] + 1))


def build(n_step: int = 1, rows: int = 16, terminated=frozenset()) -> ReplayBuffer:
    buf = ReplayBuffer(2 * rows, 2, SHAPES, 1, GAMMA, n_step, action_dtype=torch.int64, track_episodes=True)
    for t in range(STEPS):
        obs = {"observation": torch.tensor([[10.0 * t], [10.0 * t + 1]]),
               "achieved_goal": torch.tensor([[ag(t - 1, 0)], [ag(t - 1, 1)]]),
               "desired_goal": torch.tensor([[dg(0, episode_of(t, 0))], [dg(1, episode_of(t, 1))]])}
        nxt = {**obs, "achieved_goal": torch.tensor([[ag(t, 0)], [ag(t, 1)]])}
        term = torch.tensor([(t, e) in terminated for e in range(2)])
        trunc = torch.tensor([t in ENDS[e] and (t, e) not in terminated for e in range(2)])
        buf.add(obs, torch.tensor([t, t]), torch.full((2,), -7.0), nxt, term, trunc)
    return buf


def where(b) -> tuple[list[int], list[int]]:
    """(step, env) of each sampled transition, read back from its observation id."""
    ids = b.obs["observation"][:, 0].long()
    return (ids // 10).tolist(), (ids % 10).tolist()


def test_complete_indices_only_finished_episodes():
    buf = build()
    torch.manual_seed(0)
    t, e = buf.complete_indices(20_000)
    pairs = set(zip(t.tolist(), e.tolist()))
    expected = {(t_, 0) for t_ in range(7)} | {(t_, 1) for t_ in range(4)}
    assert pairs == expected
    counts = np.bincount(t.numpy() * 2 + e.numpy(), minlength=18)
    assert counts[counts > 0].min() > 20_000 / 11 * 0.9  # uniform over the 11 finished transitions
    assert buf.episode_last(torch.tensor([1, 5, 2, 8]), torch.tensor([0, 0, 1, 1])).tolist() == [2, 6, 3, 8]
    assert buf.episode_start_row(torch.tensor([1, 5, 2, 8]), torch.tensor([0, 0, 1, 1])).tolist() == [0, 3, 0, 4]


def source_table(name: str, draws: int = 20_000):
    buf = build()
    stage = HindsightRelabel(parse_strategy(name), sparse_reward)
    torch.manual_seed(1)
    t, e = buf.complete_indices(draws)
    goal, source = stage.choose_goals(buf, t, e)
    return buf, t.tolist(), e.tolist(), goal[:, 0].tolist(), source.tolist()


ALL_DG = {dg(0, 0), dg(0, 1), dg(0, 2), dg(1, 0), dg(1, 1)}
ALL_AG = {ag(t, e) for t in range(STEPS) for e in range(2)}


@pytest.mark.parametrize("name,probs", [
    ("future_4", {"real": 0.2, "future": 0.8}),
    ("final", {"real": 0.5, "final": 0.5}),
    ("episode_3", {"real": 0.25, "episode": 0.75}),
    ("futureactual_2_2", {"real": 0.2, "future": 0.4, "actual": 0.4}),
    ("rfaab_1_4_3_1_1", {"real": 0.1, "future": 0.4, "actual": 0.3, "achieved": 0.1, "behavioural": 0.1}),
])
def test_strategy_goal_distribution(name, probs):
    _, ts, es, goals, sources = source_table(name)
    n = len(ts)
    freq = np.bincount(sources, minlength=len(SOURCES)) / n
    for i, s in enumerate(SOURCES):
        assert freq[i] == pytest.approx(probs.get(s, 0.0), abs=0.015), f"{name}: share of {s}"
    future_hits: dict[tuple[int, int], list[float]] = {}
    for t, e, g, s in zip(ts, es, goals, sources):
        src, steps = SOURCES[s], episode_steps(t, e)
        if src == "real":
            assert g == dg(e, episode_of(t, e))
        elif src == "future":
            assert g in {ag(u, e) for u in steps if u >= t}
            future_hits.setdefault((t, e), []).append(g)
        elif src == "final":
            assert g == ag(steps[-1], e)
        elif src == "episode":
            assert g in {ag(u, e) for u in steps}
        elif src in ("actual", "behavioural"):
            assert g in ALL_DG
        else:
            assert g in ALL_AG
    # future goals of one transition are uniform over t..T: step 0 of env 1 (T = 3) has 4 choices
    if future_hits:
        got = np.unique(future_hits[(0, 1)], return_counts=True)
        assert got[0].tolist() == [ag(u, 1) for u in range(4)]
        assert got[1].min() > got[1].sum() / 4 * 0.75


def test_sample_rewards_recomputed_for_the_goal():
    buf = build()
    stage = HindsightRelabel(parse_strategy("future_4"), sparse_reward)
    torch.manual_seed(2)
    b = stage.sample(buf, 4000)
    ts, es = where(b)
    assert all(t <= ENDS[e][-1] for t, e in zip(ts, es))
    achieved, goal = b.next_obs["achieved_goal"][:, 0], b.obs["desired_goal"][:, 0]
    torch.testing.assert_close(b.next_obs["desired_goal"][:, 0], goal)
    torch.testing.assert_close(b.reward, -(achieved != goal).float())
    assert (b.reward == 0).float().mean() > 0.15  # hindsight goals reached at t: 0.8 * E[1/(T-t+1)]
    torch.testing.assert_close(b.discount, torch.full_like(b.discount, GAMMA))
    assert b.action.dtype == torch.int64 and b.action.tolist() == ts


def test_n_step_her_targets_hand_computed():
    """n = 3, gamma = 1/2. Env 0's first episode (steps 0-2) TERMINATES at step 2; env 1's first
    episode (steps 0-3) is truncated at 3. The relabelled goal is the achieved goal of step 1."""
    buf = build(n_step=3, terminated=frozenset({(2, 0)}))
    stage = HindsightRelabel(parse_strategy("future_4"), sparse_reward)
    t, e = torch.tensor([0, 1, 0, 1, 2]), torch.tensor([0, 0, 1, 1, 1])
    goal = torch.tensor([[ag(1, 0)], [ag(1, 0)], [ag(1, 1)], [ag(1, 1)], [ag(1, 1)]])
    b = buf.assemble(t, e, replace={"desired_goal": goal}, reward_fn=stage.reward_fn(buf, goal))
    # env 0, t=0: r = -1 + 1/2 * 0 + 1/4 * (-1) (goal reached at step 1, left at step 2); terminated: discount 0
    # env 0, t=1: r = 0 + 1/2 * (-1); the episode terminates at step 2: discount 0
    # env 1, t=0: r = -1 + 1/2 * 0 + 1/4 * (-1); bootstraps from step 2's next obs: gamma^3
    # env 1, t=1: r = 0 + 1/2 * (-1) + 1/4 * (-1); gamma^3
    # env 1, t=2: r = -1 + 1/2 * (-1), then the episode ends (truncated at 3): gamma^2
    torch.testing.assert_close(b.reward, torch.tensor([-1.25, -0.5, -1.25, -0.75, -1.5]))
    torch.testing.assert_close(b.discount, torch.tensor([0.0, 0.0, 0.125, 0.125, 0.25]))
    assert b.next_obs["achieved_goal"][:, 0].tolist() == [ag(2, 0), ag(2, 0), ag(2, 1), ag(3, 1), ag(3, 1)]
    assert b.obs["desired_goal"][:, 0].tolist() == goal[:, 0].tolist() == b.next_obs["desired_goal"][:, 0].tolist()
    # without relabelling the stored rewards (-7) are summed
    plain = buf.assemble(t, e)
    torch.testing.assert_close(plain.reward[:2], torch.tensor([-7 * 1.75, -7 * 1.5]))


def test_strategy_parsing():
    assert parse_strategy("none") is None
    assert parse_strategy("future_4").prob("future") == pytest.approx(0.8)
    assert parse_strategy("episode").prob("episode") == pytest.approx(0.8)
    for bad in ("future", "futur_4", "rfaab_1_2", "future_-1", "future_0.5x", "futureactual_0_0"):
        with pytest.raises(ConfigError, match="is not a relabelling strategy"):
            parse_strategy(bad)


def test_episode_tracking_survives_save_load_and_wrap(tmp_path):
    buf = build(rows=6)  # 9 steps into 6 rows: the ring wrapped
    path = tmp_path / "replay.npz"
    buf.save(path)
    other = ReplayBuffer(12, 2, SHAPES, 1, GAMMA, action_dtype=torch.int64, track_episodes=True)
    other.load(path)
    for name in ("episode_end", "episode_start", "episode_len", "action"):
        assert torch.equal(getattr(buf, name), getattr(other, name)), name
    for key in SHAPES:
        assert torch.equal(buf.obs[key], other.obs[key]) and torch.equal(buf.next_obs[key], other.next_obs[key])
    # rows now hold steps 3..8; env 0's episode 1 (3-6) is complete, env 1's second episode runs
    torch.manual_seed(0)
    t, e = other.complete_indices(5000)
    steps = {(int(other.obs["observation"][r, c, 0]) // 10, c) for r, c in zip(t.tolist(), e.tolist())}
    assert steps == {(s, 0) for s in range(3, 7)} | {(3, 1)}
    # env 1's step 3 lost its episode's first steps to the ring: its episode starts at the oldest row
    row3 = 3 % 6
    assert other.episode_start_row(torch.tensor([row3]), torch.tensor([1])).tolist() == [row3]


def test_n_step_her_goal_reached_is_terminal_with_her_terminal():
    """With ``terminal_on_success`` (BitFlip): reaching the relabelled goal mid-window ends the return
    there without bootstrapping; a stored termination of the REAL goal is only an episode end."""
    buf = build(n_step=3, terminated=frozenset({(2, 0)}))
    stage = HindsightRelabel(parse_strategy("future_4"), sparse_reward, terminal_on_success=True)
    t, e = torch.tensor([0, 2, 1, 2]), torch.tensor([0, 0, 1, 1])
    goal = torch.tensor([[ag(1, 0)], [ag(0, 0)], [ag(3, 1)], [ag(9, 9)]])
    b = buf.assemble(t, e, replace={"desired_goal": goal}, reward_fn=stage.reward_fn(buf, goal))
    # env 0, t=0, goal reached at step 1: r = -1 + 1/2 * 0, terminal at step 1: discount 0, next obs of step 1
    # env 0, t=2, goal never reached; the stored termination at 2 (the real goal) ends the episode but is
    #   not terminal for this goal: r = -1, bootstrap gamma^1
    # env 1, t=1, goal reached at step 3 (also the truncation): r = -1 - 1/2 + 1/4 * 0, terminal: discount 0
    # env 1, t=2, unreachable goal, truncated at 3: r = -1 - 1/2, gamma^2
    torch.testing.assert_close(b.reward, torch.tensor([-1.0, -1.0, -1.5, -1.5]))
    torch.testing.assert_close(b.discount, torch.tensor([0.0, 0.5, 0.0, 0.25]))
    assert b.next_obs["achieved_goal"][:, 0].tolist() == [ag(1, 0), ag(2, 0), ag(3, 1), ag(3, 1)]
    one = build(n_step=1, terminated=frozenset({(2, 0)}))
    b1 = one.assemble(t, e, replace={"desired_goal": goal}, reward_fn=stage.reward_fn(one, goal))
    torch.testing.assert_close(b1.reward, torch.tensor([-1.0, -1.0, -1.0, -1.0]))
    torch.testing.assert_close(b1.discount, torch.tensor([0.5, 0.5, 0.5, 0.5]))
