"""ReplayBuffer: n-step returns at episode ends, the newest-row cut-off, ring wrap-around,
TD(0) discounts, .npz persistence and corrupt-file errors.

Every stored transition gets a unique observation value ``10 * t + e`` (step ``t``, env ``e``),
so each sampled transition can be looked up in a table of hand-computed expectations.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlblocks.buffers import Batch, ReplayBuffer
from rlblocks.errors import CheckpointError

GAMMA = 0.5  # powers of 1/2 keep the hand arithmetic exact in float32


def oid(t: int, e: int) -> float:
    """Observation value of step ``t`` of env ``e``."""
    return 10.0 * t + e


def nid(t: int, e: int) -> float:
    """``next_obs`` value of step ``t`` of env ``e`` (the true final obs at an episode end)."""
    return 1000.0 + oid(t, e)


def add_step(buf: ReplayBuffer, t: int, rewards, terminated=(False, False), truncated=(False, False)) -> None:
    obs = torch.tensor([[oid(t, 0)], [oid(t, 1)]])
    buf.add(obs, obs.clone(), torch.tensor(rewards, dtype=torch.float32), torch.tensor([[nid(t, 0)], [nid(t, 1)]]),
            torch.tensor(terminated), torch.tensor(truncated))


# Env 0: rewards 1..7, episode TERMINATED at step 1.
# Env 1: rewards 10..70, episode TRUNCATED at step 2 (time limit), TERMINATED at step 5.
REWARDS = {0: [1, 2, 3, 4, 5, 6, 7], 1: [10, 20, 30, 40, 50, 60, 70]}
TERMINATED = {(1, 0), (5, 1)}
TRUNCATED = {(2, 1)}


def fill(buf: ReplayBuffer, steps: int) -> None:
    for t in range(steps):
        add_step(buf, t, [REWARDS[0][t], REWARDS[1][t]],
                 terminated=((t, 0) in TERMINATED, (t, 1) in TERMINATED),
                 truncated=((t, 0) in TRUNCATED, (t, 1) in TRUNCATED))


def make_buffer(n_step: int, rows: int = 5) -> ReplayBuffer:
    return ReplayBuffer(capacity=2 * rows, num_envs=2, obs_shape=(1,), act_dim=1, gamma=GAMMA, n_step=n_step)


def sampled_table(buf: ReplayBuffer, draws: int = 4000) -> dict[float, tuple[float, float, float]]:
    """Sample many transitions; return ``{obs: (reward, discount, next_obs)}``, checking that
    every draw of the same transition gave the same target and that action == obs (alignment)."""
    torch.manual_seed(0)
    b = buf.sample(draws)
    assert isinstance(b, Batch)
    assert b.obs.shape == (draws, 1) and b.action.shape == (draws, 1) and b.next_obs.shape == (draws, 1)
    assert b.reward.shape == (draws,) and b.discount.shape == (draws,)
    torch.testing.assert_close(b.action, b.obs)
    table: dict[float, tuple[float, float, float]] = {}
    for o, r, d, n in zip(b.obs[:, 0].tolist(), b.reward.tolist(), b.discount.tolist(), b.next_obs[:, 0].tolist()):
        if o in table:
            assert table[o] == (r, d, n), f"transition obs={o} sampled with two different targets"
        table[o] = (r, d, n)
    return table


def assert_table(got: dict, expected: dict) -> None:
    assert set(got) == set(expected), f"sampled transitions {sorted(got)} != stored {sorted(expected)}"
    for o, (r, d, n) in expected.items():
        gr, gd, gn = got[o]
        assert gr == pytest.approx(r, abs=1e-5), f"obs {o}: reward {gr} != {r}"
        assert gd == pytest.approx(d, abs=1e-7), f"obs {o}: discount {gd} != {d}"
        assert gn == n, f"obs {o}: next_obs {gn} != {n}"


def test_n_step_returns_before_wrap():
    """4 of 5 rows filled, n = 3, gamma = 1/2 (hand-computed)."""
    buf = make_buffer(n_step=3)
    fill(buf, 4)
    assert len(buf) == 8 and not buf.full
    expected = {
        # env 0, terminated at step 1: the sum stops there and does not bootstrap (discount 0)
        oid(0, 0): (1 + 0.5 * 2, 0.0, nid(1, 0)),
        oid(1, 0): (2, 0.0, nid(1, 0)),
        # newest-row cut-off: only steps 2 and 3 exist, so m = 2, bootstrap from step 3's next_obs
        oid(2, 0): (3 + 0.5 * 4, 0.25, nid(3, 0)),
        oid(3, 0): (4, 0.5, nid(3, 0)),
        # env 1, truncated at step 2: sum stops there but bootstraps from the true final obs
        oid(0, 1): (10 + 0.5 * 20 + 0.25 * 30, 0.125, nid(2, 1)),
        oid(1, 1): (20 + 0.5 * 30, 0.25, nid(2, 1)),
        oid(2, 1): (30, 0.5, nid(2, 1)),
        oid(3, 1): (40, 0.5, nid(3, 1)),
    }
    assert_table(sampled_table(buf), expected)


def test_n_step_returns_after_ring_wrap():
    """7 steps into 5 rows: steps 5 and 6 overwrite rows 0 and 1; windows wrap from row 4 to row 0
    and stop at the newest row (step 6) without reading the oldest row (step 2) behind it."""
    buf = make_buffer(n_step=3)
    fill(buf, 7)
    assert buf.full and buf.pos == 2 and len(buf) == 10
    expected = {
        oid(2, 0): (3 + 0.5 * 4 + 0.25 * 5, 0.125, nid(4, 0)),
        oid(3, 0): (4 + 0.5 * 5 + 0.25 * 6, 0.125, nid(5, 0)),  # rows 3, 4, 0
        oid(4, 0): (5 + 0.5 * 6 + 0.25 * 7, 0.125, nid(6, 0)),  # rows 4, 0, 1
        oid(5, 0): (6 + 0.5 * 7, 0.25, nid(6, 0)),  # cut off at the newest row
        oid(6, 0): (7, 0.5, nid(6, 0)),
        oid(2, 1): (30, 0.5, nid(2, 1)),  # truncated: bootstrap after one step
        oid(3, 1): (40 + 0.5 * 50 + 0.25 * 60, 0.0, nid(5, 1)),  # terminated at step 5 (row 0)
        oid(4, 1): (50 + 0.5 * 60, 0.0, nid(5, 1)),
        oid(5, 1): (60, 0.0, nid(5, 1)),
        oid(6, 1): (70, 0.5, nid(6, 1)),
    }
    assert_table(sampled_table(buf), expected)


def test_one_step_discount_is_gamma_times_not_terminated():
    """n_step = 1: reward as stored, discount = gamma (1 - terminated) — truncated still bootstraps."""
    buf = make_buffer(n_step=1)
    fill(buf, 7)
    expected = {}
    for t in range(2, 7):
        for e in range(2):
            expected[oid(t, e)] = (REWARDS[e][t], 0.0 if (t, e) in TERMINATED else GAMMA, nid(t, e))
    assert expected[oid(2, 1)][1] == GAMMA  # the truncated transition is in the table
    assert expected[oid(5, 1)][1] == 0.0  # and the terminated one
    assert_table(sampled_table(buf), expected)


def test_n_step_larger_than_filled_rows():
    """n = 4 with only 2 rows stored: every window is cut at the newest row."""
    buf = make_buffer(n_step=4)
    add_step(buf, 0, [1.0, 10.0])
    add_step(buf, 1, [2.0, 20.0])
    expected = {
        oid(0, 0): (1 + 0.5 * 2, 0.25, nid(1, 0)), oid(1, 0): (2, 0.5, nid(1, 0)),
        oid(0, 1): (10 + 0.5 * 20, 0.25, nid(1, 1)), oid(1, 1): (20, 0.5, nid(1, 1)),
    }
    assert_table(sampled_table(buf), expected)


def test_sampling_uses_torch_rng():
    buf = make_buffer(n_step=3)
    fill(buf, 7)
    torch.manual_seed(123)
    a = buf.sample(64)
    torch.manual_seed(123)
    b = buf.sample(64)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_capacity_rounds_down_to_whole_rows():
    buf = ReplayBuffer(capacity=11, num_envs=2, obs_shape=(3,), act_dim=2, gamma=0.9)
    assert buf.rows == 5 and buf.capacity == 10 and len(buf) == 0


# ---------------------------------------------------------------------------- persistence
@pytest.mark.parametrize("steps", [4, 7])  # before and after the ring wrapped
def test_save_load_round_trip(tmp_path, steps):
    buf = make_buffer(n_step=3)
    fill(buf, steps)
    path = tmp_path / "replay.npz"
    buf.save(path)

    with np.load(path, allow_pickle=False) as data:  # no pickled objects inside
        assert set(data.files) == {"pos", "full", "rows", *ReplayBuffer.FIELDS}
        filled = min(5, steps)
        assert data["obs"].shape == (filled, 2, 1)
        assert int(data["pos"]) == steps % 5 and bool(data["full"]) == (steps >= 5) and int(data["rows"]) == 5
        assert data["terminated"].dtype == np.bool_
        np.testing.assert_array_equal(data["reward"], buf.reward[:filled].numpy())

    other = make_buffer(n_step=3)
    other.load(path)
    assert (other.pos, other.full, len(other)) == (buf.pos, buf.full, len(buf))
    for f in ReplayBuffer.FIELDS:
        torch.testing.assert_close(getattr(other, f), getattr(buf, f), rtol=0, atol=0)
    # the loaded buffer samples the same minibatches, and keeps working as a ring
    torch.manual_seed(7)
    a = buf.sample(32)
    torch.manual_seed(7)
    b = other.sample(32)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    add_step(other, 7, [8.0, 80.0])
    assert other.pos == (buf.pos + 1) % 5


def _valid_npz(tmp_path) -> bytes:
    buf = make_buffer(n_step=3)
    fill(buf, 3)
    buf.save(tmp_path / "ok.npz")
    return (tmp_path / "ok.npz").read_bytes()


@pytest.mark.parametrize("kind", ["garbage", "empty", "truncated", "missing", "pickled", "missing_key"])
def test_load_corrupt_file_raises_checkpoint_error(tmp_path, kind):
    raw = _valid_npz(tmp_path)
    path = tmp_path / "bad.npz"
    if kind == "garbage":
        path.write_bytes(b"not a zip file at all" * 20)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif kind == "pickled":  # a valid buffer file whose obs is an object array: never unpickled
        with np.load(tmp_path / "ok.npz") as data:
            arrays = {k: data[k] for k in data.files}
        arrays["obs"] = np.array([[{"evil": 1}]] * 3, dtype=object)
        np.savez(path, **arrays)
    elif kind == "missing_key":
        np.savez(path, pos=np.int64(0), full=np.bool_(False), rows=np.int64(5))
    buf = make_buffer(n_step=3)
    with pytest.raises(CheckpointError, match="bad.npz"):
        buf.load(path)


def test_load_foreign_shape_raises_checkpoint_error(tmp_path):
    buf = make_buffer(n_step=3)
    fill(buf, 3)
    buf.save(tmp_path / "r.npz")
    with pytest.raises(CheckpointError, match="another shape"):
        make_buffer(n_step=3, rows=6).load(tmp_path / "r.npz")
    wider = ReplayBuffer(capacity=10, num_envs=2, obs_shape=(1,), act_dim=3, gamma=GAMMA, n_step=3)
    with pytest.raises(CheckpointError):
        wider.load(tmp_path / "r.npz")


# ---------------------------------------------------------------------------- TD targets in the algorithms
def _tiny_agent(algo: str):
    from rlblocks.registry import RunOptions, build_agent, get_algo
    from rlblocks.run import resolve_config

    spec = get_algo(algo)
    cfg = resolve_config(spec, "Pendulum-v1", overrides={"hidden_sizes": "16,16", "buffer_size": "100",
                                                         "batch_size": "2"})
    opts = RunOptions(run_dir=None, total_steps=1, eval_every=0, checkpoint_every=0, progress=False,
                      tensorboard=False)
    agent = build_agent(spec, "Pendulum-v1", cfg, 0, torch.device("cpu"), opts)
    with torch.no_grad():  # target critics worth ~50 at s', so bootstrapping is visible in the loss
        agent.critic.q_target.net.layers[-1].bias.fill_(50.0)
    return agent


def _terminated_and_truncated_batch(gamma: float) -> Batch:
    """Transition 0 ends in a TERMINAL state (discount 0), transition 1 in a time-limit
    TRUNCATION (discount gamma) — what the buffer produces for them with n_step = 1."""
    buf = ReplayBuffer(capacity=2, num_envs=2, obs_shape=(3,), act_dim=1, gamma=gamma)
    buf.add(torch.tensor([[0.1, -0.2, 0.3], [-0.5, 0.4, 0.2]]), torch.tensor([[0.5], [-0.3]]),
            torch.tensor([-1.0, -2.0]), torch.tensor([[0.9, 0.1, -1.0], [0.2, -0.8, 0.7]]),
            torch.tensor([True, False]), torch.tensor([False, True]))
    torch.manual_seed(0)
    b = buf.sample(64)
    first = [int((b.obs[:, 0] == v).nonzero()[0, 0]) for v in (0.1, -0.5)]
    batch = Batch(*(x[first] for x in b))
    assert batch.discount.tolist() == [0.0, pytest.approx(gamma)]
    return batch


@pytest.mark.parametrize("algo", ["sac", "td3", "ddpg"])
def test_td_target_bootstraps_truncated_not_terminated(algo, one_thread):
    agent = _tiny_agent(algo)
    try:
        algo_mod, q, q_target = agent.algo, agent.critic.q, agent.critic.q_target
        b = _terminated_and_truncated_batch(agent.config.gamma)
        with torch.no_grad():
            torch.manual_seed(11)  # update() draws its first random numbers for the target action
            if algo == "sac":
                alpha = algo_mod.log_alpha.exp()
                next_a, next_logp = agent.policy.actor.sample(b.next_obs)
                v_next = q_target(b.next_obs, next_a).min(0).values - alpha * next_logp
            else:
                next_a = agent.policy.actor_target(b.next_obs)
                if algo == "td3":
                    noise = (torch.randn_like(next_a) * 0.2).clamp(-0.5, 0.5)
                    next_a = (next_a + noise).clamp(-1, 1)
                v_next = q_target(b.next_obs, next_a).min(0).values
            assert torch.all(v_next > 30)  # the bootstrap term is large ...
            y = torch.stack([b.reward[0],  # ... and must be absent for the terminated transition
                             b.reward[1] + agent.config.gamma * v_next[1]])
            scale = 0.5 if algo == "sac" else 1.0
            q_sa = q(b.obs, b.action)
            expected = scale * (q_sa - y).square().mean(1).sum()
            wrong_both = scale * (q_sa - (b.reward + agent.config.gamma * v_next)).square().mean(1).sum()
            wrong_none = scale * (q_sa - b.reward).square().mean(1).sum()
        torch.manual_seed(11)
        critic_loss = algo_mod.update(b)[0]
        torch.testing.assert_close(critic_loss, expected, rtol=1e-5, atol=1e-4)
        assert abs(float(expected - wrong_both)) > 100 and abs(float(expected - wrong_none)) > 100
        # the update moved the online critic (the loss was really used)
        assert not torch.allclose(q(b.obs, b.action), q_sa)
    finally:
        agent.env.close()


def test_sac_sequential_update_changes_only_the_actor_step():
    """``sequential_update`` gives the same critic step as the joint update but an actor step
    taken against the updated critic (so the actor parameters differ)."""
    from rlblocks.registry import RunOptions, build_agent, get_algo
    from rlblocks.run import resolve_config

    def one_update(sequential: bool):
        spec = get_algo("sac")
        cfg = resolve_config(spec, "Pendulum-v1", overrides={"sequential_update": sequential, "learning_starts": 0,
                                                             "hidden_sizes": [16, 16], "buffer_size": 64,
                                                             "batch_size": 8})
        agent = build_agent(spec, "Pendulum-v1", cfg, 0, torch.device("cpu"),
                            RunOptions(None, 10, 0, 0, progress=False, tensorboard=False))
        batch = Batch(torch.randn(8, 3), torch.rand(8, 1) * 2 - 1, torch.randn(8), torch.randn(8, 3), torch.full((8,), 0.99))
        torch.manual_seed(1)
        agent.algo.update(batch)
        agent.env.close()
        return agent.critic.q.state_dict(), agent.policy.actor.state_dict()

    critic_joint, actor_joint = one_update(False)
    critic_seq, actor_seq = one_update(True)
    for key in critic_joint:
        assert torch.equal(critic_joint[key], critic_seq[key]), key
    assert any(not torch.equal(actor_joint[k], actor_seq[k]) for k in actor_joint)
