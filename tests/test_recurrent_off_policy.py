"""Recurrent DDPG/TD3/SAC (``arch=lstm|gru``): sequence windows with burn-in, the acting seam's
states, the update's maths against a step-by-step reference, Polyak direction, exact resume
mid-episode, config errors, and (slow) learning on PendulumNoVel-v1."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rlblocks import run
from rlblocks.algos.recurrent_off_policy import history
from rlblocks.buffers.replay import ReplayBuffer
from rlblocks.buffers.sequence import SequenceSampler
from rlblocks.components.evaluator import evaluate
from rlblocks.errors import ConfigError
from rlblocks.registry import RunOptions, build_agent, get_algo
from rlblocks.run import resolve_config

GAMMA = 0.9
TINY = {"rnn_size": "16", "hidden_sizes": "16,16", "batch_size": "8", "seq_len": "6", "burn_in": "3",
        "learning_starts": "100"}


def _agent(algo: str, env_id: str, overrides: dict, seed: int = 0, total: int = 100_000, preset: str | None = None):
    spec = get_algo(algo)
    cfg = resolve_config(spec, env_id, overrides=dict(overrides), preset=preset)
    opts = RunOptions(None, total, eval_every=0, checkpoint_every=0, progress=False, tensorboard=False)
    return build_agent(spec, env_id, cfg, seed, torch.device("cpu"), opts)


# ----------------------------------------------------------------------------- sequence windows
def _hand_buffer(steps: int = 10, rows: int = 12) -> ReplayBuffer:
    """Two envs, obs = step (env 0) or 100 + step (env 1), action = obs / 1000, reward = obs.
    Env 0: an episode of steps 0-4 that terminates, one of 5-9 truncated by a time limit, then
    one running; env 1: one episode. ``next_obs`` is the next step's obs inside an episode and
    1000 + obs (the true final observation) at an episode's end."""
    buf = ReplayBuffer(rows * 2, 2, (1,), 1, GAMMA)
    for t in range(steps):
        obs = torch.tensor([[t], [100 + t]], dtype=torch.float32)
        term = torch.tensor([t == 4, False])
        trunc = torch.tensor([t == 9, False])
        nxt = obs + 1
        nxt[0] = 1000 + t if (t in (4, 9)) else t + 1
        buf.add(obs, obs / 1000, obs[:, 0], nxt, term, trunc)
    return buf


def _col(x: torch.Tensor, b: int) -> list[float]:
    return x[:, b].reshape(x.shape[0], -1)[:, 0].tolist()


def test_sequence_windows_burn_in_and_masks_across_episode_ends():
    buf = _hand_buffer()
    sampler = SequenceSampler(buf, seq_len=4, burn_in=3)
    s, e = torch.tensor([2, 7, 8, 0, 5]), torch.tensor([0, 0, 1, 0, 0])
    b = sampler.assemble(s, e)
    assert b.obs.shape == (5, 5, 1) and b.action.shape == (4, 5, 1) and b.mask.shape == (4, 5)
    assert b.burn_obs.shape == (3, 5, 1)

    # (0) env 0 from step 2: steps 2, 3, 4; step 4 terminates (no bootstrap); step 5 is another episode
    assert _col(b.mask, 0) == [1, 1, 1, 0]
    assert _col(b.obs, 0) == [2, 3, 4, 1004, 0]  # position 3 is step 4's true final observation
    assert _col(b.reward, 0) == [2, 3, 4, 0]
    assert _col(b.discount, 0) == pytest.approx([GAMMA, GAMMA, 0, 0])
    assert _col(b.prev_reward, 0) == [1, 2, 3, 4, 0] and _col(b.prev_action, 0) == pytest.approx([.001, .002, .003, .004, 0])
    assert int(b.burn_len[0]) == 2  # steps 0, 1: the episode's start, so the burned-in state is exact
    assert _col(b.burn_obs, 0) == [0, 1, 0] and _col(b.burn_prev_reward, 0) == [0, 0, 0]

    # (1) env 0 from step 7: steps 7, 8, 9; step 9 is truncated: it bootstraps from the final obs
    assert _col(b.mask, 1) == [1, 1, 1, 0]
    assert _col(b.obs, 1) == [7, 8, 9, 1009, 0]
    assert _col(b.discount, 1) == pytest.approx([GAMMA, GAMMA, GAMMA, 0])
    assert int(b.burn_len[1]) == 2 and _col(b.burn_obs, 1) == [5, 6, 0]  # not back into step 4's episode
    assert _col(b.burn_prev_reward, 1) == [0, 5, 0]  # step 5 starts an episode: no previous reward
    assert _col(b.prev_reward, 1) == [6, 7, 8, 9, 0]

    # (2) env 1 from step 8: only steps 8, 9 are stored yet; the burn-in is full (5, 6, 7) and its first
    # step has a predecessor in the episode (step 4)
    assert _col(b.mask, 2) == [1, 1, 0, 0]
    assert _col(b.obs, 2) == [108, 109, 110, 0, 0]
    assert int(b.burn_len[2]) == 3 and _col(b.burn_obs, 2) == [105, 106, 107]
    assert _col(b.burn_prev_reward, 2) == [104, 105, 106]

    # (3) env 0 from step 0 (nothing stored before) and (4) from step 5 (an episode start): no burn-in,
    # no previous action or reward at the first position
    for col, first in ((3, 0), (4, 5)):
        assert int(b.burn_len[col]) == 0 and not b.burn_obs[:, col].any()
        assert b.prev_reward[0, col] == 0 and b.prev_action[0, col] == 0 and b.obs[0, col] == first
    assert _col(b.mask, 3) == [1, 1, 1, 1] and _col(b.obs, 3) == [0, 1, 2, 3, 4]

    # valid/rows: the real steps in [T, B] order, bootstrap positions one row later
    assert b.valid.numel() == int(b.mask.sum())
    torch.testing.assert_close(b.rows(b.reward), b.reward[b.mask])
    expected_next = torch.stack([b.obs[t + 1, i] for t, i in b.mask.nonzero().tolist()])
    torch.testing.assert_close(b.next_rows(b.obs), expected_next)


def test_sequence_windows_after_the_ring_wraps():
    """Rows overwritten by the ring are not read: the oldest stored step has no burn-in and no
    previous action; a window stops at the newest step."""
    buf = _hand_buffer(steps=15, rows=12)  # rows hold steps 3..14; step 14 is at row 2, step 3 at row 3
    sampler = SequenceSampler(buf, seq_len=4, burn_in=3)
    b = sampler.assemble(torch.tensor([3, 1, 5]), torch.tensor([1, 1, 1]))
    # row 3 = step 3 of env 1, the oldest stored step
    assert int(b.burn_len[0]) == 0 and b.prev_reward[0, 0] == 0 and _col(b.obs, 0)[:2] == [103, 104]
    # row 1 = step 13: steps 13, 14 then the newest row ends the window; burn-in steps 10-12
    assert _col(b.mask, 1) == [1, 1, 0, 0] and _col(b.obs, 1) == [113, 114, 115, 0, 0]
    assert int(b.burn_len[1]) == 3 and _col(b.burn_obs, 1) == [110, 111, 112]
    assert _col(b.burn_prev_reward, 1) == [109, 110, 111]
    # row 5 = step 5: burn-in steps 3, 4 only (step 2 was overwritten)
    assert int(b.burn_len[2]) == 2 and _col(b.burn_obs, 2) == [103, 104, 0] and _col(b.burn_prev_reward, 2) == [0, 103, 0]


# ----------------------------------------------------------------------------- acting seam
def test_hidden_state_resets_at_episode_starts_and_replayed_histories_match_acting(one_thread):
    """InvertedPendulum ends episodes at different steps in each env. Where an env's episode ends,
    its state (cell, previous action and reward) is zero before the next act; elsewhere it holds
    the step's action and reward. The training-time encoder over a replayed window from an
    episode start gives the states that acting produced, and evaluation keeps its own states."""
    agent = _agent("sac", "InvertedPendulum-v5", {**TINY, "arch": "gru", "num_envs": "3", "learning_starts": "50"})
    try:
        env, policy = agent.env, agent.policy
        k, a_dim = policy.k, policy.act_dim
        assert env.state.shape == (k + 1, 3, 16) and not env.state.any()
        states, resets = [], 0
        for _ in range(80):
            exp, _ = env.step()
            agent.call("process_experience", exp)
            agent.env_steps += 3
            done = (exp["terminated"] | exp["truncated"]).numpy()
            assert not env.state[:, done].any()
            live = ~done
            torch.testing.assert_close(env.state[k, live, :a_dim], exp["action"][live])
            torch.testing.assert_close(env.state[k, live, a_dim], exp["reward"][live])
            assert env.state[:k, live].abs().sum(-1).gt(0).all()
            states.append(env.state[:k, :, :16].clone())
            resets += int(done.sum())
        assert resets >= 6 and agent.env_steps > 50  # episodes ended, and acting left the warm-up
        # env 2's second episode, replayed from its first step without burn-in
        buf = agent.replay.buffer
        ends = torch.nonzero(buf.terminated[:80, 2] | buf.truncated[:80, 2]).flatten().tolist()
        start, stop = ends[0] + 1, ends[1]
        sampler = SequenceSampler(buf, seq_len=stop - start + 1, burn_in=0)
        seq = sampler.assemble(torch.tensor([start]), torch.tensor([2]))
        assert bool(seq.mask.all())
        with torch.no_grad():
            h = history(policy.encoder, agent.algo.normalized(seq))  # [T+1, 1, H]
        acted = torch.stack([states[t][0, 2] for t in range(start, stop)])  # GRU: output = state
        torch.testing.assert_close(h[: stop - start, 0], acted, rtol=1e-5, atol=1e-5)
        held = env.state.clone()
        evaluate(agent, "InvertedPendulum-v5", 2, seed=5)
        assert torch.equal(env.state, held)
    finally:
        env.close()


# ----------------------------------------------------------------------------- update maths
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_td3_critic_loss_equals_a_step_by_step_reference(kind, one_thread):
    """The critic loss of one recurrent TD3 update, from a column-by-column loop: each window's
    burn-in steps from the zero state, then one step at a time; target smoothing noise off."""
    over = {**TINY, "arch": kind, "target_noise": "0", "learning_starts": "1000000"}
    agent = _agent("td3", "PendulumNoVel-v1", over)
    try:
        agent.train(300)  # random actions; the ring holds an episode end (200-step limit)
        policy, critic = agent.policy, agent.critic
        # windows at an episode's start and end (rows 199/200), at the newest row (299) and in between
        rows = torch.tensor([0, 1, 5, 150, 196, 198, 199, 200, 202, 297, 299])
        seq = agent.replay.sampler.assemble(rows, torch.zeros_like(rows))
        assert not bool(seq.mask.all()) and seq.burn_len.tolist() == [0, 1, 3, 3, 3, 3, 3, 0, 2, 3, 3]
        with torch.no_grad():
            loss_ref = 0.0
            for b in range(len(rows)):
                hq, hqt, hpt = (enc.initial_state(1) for enc in (critic.encoder, critic.encoder_target,
                                                                 policy.encoder_target))

                def step(x, pa, pr, states):
                    encs = (critic.encoder, critic.encoder_target, policy.encoder_target)
                    return [enc.step(x[None], pa[None], pr[None], s) for enc, s in zip(encs, states)]

                states = (hq, hqt, hpt)
                for p in range(int(seq.burn_len[b])):
                    states = [s for _, s in step(seq.burn_obs[p, b], seq.burn_prev_action[p, b],
                                                 seq.burn_prev_reward[p, b], states)]
                outs = []
                for p in range(seq.obs.shape[0]):
                    res = step(seq.obs[p, b], seq.prev_action[p, b], seq.prev_reward[p, b], states)
                    outs.append([o for o, _ in res])
                    states = [s for _, s in res]
                for t in range(seq.mask.shape[0]):
                    if not seq.mask[t, b]:
                        continue
                    q = critic.q(outs[t][0], seq.action[t, b][None])[:, 0]  # [E]
                    a_next = policy.actor_target(outs[t + 1][2])
                    y = seq.reward[t, b] + seq.discount[t, b] * critic.q_target(outs[t + 1][1], a_next).min()
                    loss_ref += (q - y).square().sum() / int(seq.mask.sum())
        critic_loss = agent.algo.update(seq)[0]
        torch.testing.assert_close(critic_loss, torch.as_tensor(loss_ref, dtype=torch.float32), rtol=1e-4, atol=1e-5)
    finally:
        agent.env.close()


def test_polyak_moves_targets_towards_online_weights(one_thread):
    """target <- tau * online + (1 - tau) * target for the Q heads and both encoders."""
    agent = _agent("sac", "PendulumNoVel-v1", {**TINY, "arch": "lstm", "tau": "0.1", "learning_starts": "1000000"})
    try:
        agent.train(60)
        critic = agent.critic
        critic.encoder_target.cell.rnn.weight_hh_l0.data.add_(1.0)  # apart from the online weights
        before = critic.encoder_target.cell.rnn.weight_hh_l0.clone()
        q_before = critic.q_target.net.layers[0].weight.clone()
        agent.algo.update(agent.algo.normalized(agent.replay.sample(4)))
        after_online = critic.encoder.cell.rnn.weight_hh_l0
        torch.testing.assert_close(critic.encoder_target.cell.rnn.weight_hh_l0, 0.9 * before + 0.1 * after_online)
        torch.testing.assert_close(critic.q_target.net.layers[0].weight,
                                   0.9 * q_before + 0.1 * critic.q.net.layers[0].weight)
    finally:
        agent.env.close()


# ----------------------------------------------------------------------------- resume
def test_recurrent_sac_resumed_mid_episode_equals_the_uninterrupted_run(tmp_path, one_thread):
    from test_determinism import assert_same_run, final_state, progress_rows

    overrides = {**TINY, "arch": "lstm", "num_envs": "2", "buffer_size": "400", "learning_starts": "200",
                 "train_freq": "2", "log_every": "200"}

    def train(name, steps):
        return run.train("sac", "PendulumNoVel-v1", steps=steps, seed=3, run_dir=str(tmp_path / name),
                         overrides=dict(overrides), eval_every=0, checkpoint_every=0, device="cpu", progress=False)

    full = train("full", 600)
    part = train("part", 300)  # 150 steps into each env's first episode; the ring wraps after 400
    s300, _ = final_state(part, 300)
    env_state = s300["modules"]["env"]
    assert env_state["episode_length"].tolist() == [150, 150]
    assert env_state["actor_state"][0].abs().sum() > 0  # a hidden state mid-episode
    run.resume_run(part, 600, device="cpu", progress=False)
    assert_same_run(full, part, 600)
    cols = ["steps", "updates", "critic_loss", "actor_loss"]
    assert progress_rows(part, cols) == progress_rows(full, cols)
    assert json.loads((part / "config.json").read_text())["config"]["arch"] == "lstm"


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize("overrides,match", [
    ({"arch": "rnn"}, "arch='rnn' is not one of ff, lstm, gru"),
    ({"arch": "gru", "target": "mve"}, "target=mve is feed-forward only"),
    ({"arch": "lstm", "n_step": "3"}, "n_step=3 is feed-forward only"),
    ({"arch": "gru", "merl": "true"}, "merl=true is feed-forward only"),
    ({"arch": "gru", "rnn_inputs": "action"}, "rnn_inputs='action' is not one of obs, obs_action, obs_action_reward"),
    ({"arch": "gru", "seq_len": "0"}, "seq_len=0 is out of range"),
])
def test_bad_recurrent_config_is_one_clear_error(overrides, match):
    with pytest.raises(ConfigError, match=match):
        resolve_config(get_algo("sac"), "PendulumNoVel-v1", overrides=overrides)


def test_named_preset_for_pendulum_novel():
    for algo in ("sac", "td3", "ddpg"):
        cfg = resolve_config(get_algo(algo), "PendulumNoVel-v1", preset="pendulum-novel")
        assert cfg.arch in ("lstm", "gru") and cfg.seq_len >= 1
    ff = resolve_config(get_algo("sac"), "PendulumNoVel-v1", preset="pendulum-novel", overrides={"arch": "ff"})
    assert ff.arch == "ff"


# ----------------------------------------------------------------------------- learning
def novel_curve(algo: str, seed: int, overrides: dict, steps: int = 30_000, every: int = 2_500,
                stop_at: float | None = -250.0) -> list[tuple[int, float]]:
    """``(env steps, greedy return)`` every ``every`` steps of the ``pendulum-novel`` preset on
    PendulumNoVel-v1 (10 episodes, seeds 10,000 + seed ...), until ``stop_at`` is reached."""
    agent = _agent(algo, "PendulumNoVel-v1", overrides, seed=seed, total=steps, preset="pendulum-novel")
    curve = []
    try:
        for s in range(every, steps + 1, every):
            agent.train(s)
            curve.append((s, float(np.mean(evaluate(agent, "PendulumNoVel-v1", 10, seed + 10_000)))))
            if stop_at is not None and curve[-1][1] >= stop_at:
                break
    finally:
        agent.env.close()
    return curve


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_recurrent_sac_solves_pendulum_novel_within_30k_steps(seed, one_thread):
    """The named preset (recurrent SAC, LSTM) reaches a greedy return >= -250 on PendulumNoVel-v1
    (angular velocity hidden) within 30,000 env steps; docs/recurrent.md has the curves and the
    feed-forward number at the same budget."""
    curve = novel_curve("sac", seed, {})
    assert curve[-1][1] >= -250, f"recurrent SAC seed {seed} never reached -250 within 30k steps: {curve}"
