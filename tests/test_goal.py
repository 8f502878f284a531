"""Goal environments end to end: the BitFlip env, dict observations through the env runner,
replay and per-key normaliser, DQN + HER learning on 10-bit flipping, success metrics in
progress.csv / eval.csv / ``rlblocks eval``, and exact resume of a goal-env run mid-episode."""

from __future__ import annotations

import csv
import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from test_determinism import assert_same_run, final_state, progress_rows

from rlblocks import run
from rlblocks.components.goal_normalizer import GoalNormalizer
from rlblocks.envs import make_env
from rlblocks.errors import RLBlocksError


def test_bit_flip_env_rewards_success_termination_and_snapshot():
    env = make_env("BitFlip10-v0")
    obs, _ = env.reset(seed=3)
    assert set(obs) == {"observation", "achieved_goal", "desired_goal"} and obs["observation"].dtype == np.float32
    base = env.unwrapped
    a = np.array([[0, 1, 1], [1, 1, 1]], dtype=np.float32)
    g = np.array([[0, 1, 1], [0, 1, 1]], dtype=np.float32)
    np.testing.assert_array_equal(base.compute_reward(a, g, None), [0.0, -1.0])
    np.testing.assert_array_equal(base.compute_reward(a[None], g[None], None), [[0.0, -1.0]])
    wrong = np.flatnonzero(obs["observation"] != obs["desired_goal"])
    for i, bit in enumerate(wrong):
        obs, r, term, trunc, info = env.step(bit)
        last = i == len(wrong) - 1
        assert (r, term, trunc, info["is_success"]) == ((0.0, True, False, 1.0) if last else (-1.0, False, False, 0.0))
    # snapshots restore the state, the sampled goal, the step count and the RNG
    env.reset(seed=5)
    env.step(0)
    snap = json.loads(json.dumps(env.get_snapshot()))
    after = [env.step(k)[0] for k in (1, 2)] + [env.reset()[0]]
    other = make_env("BitFlip10-v0")
    other.reset(seed=99)
    other.set_snapshot([snap])
    again = [other.step(k)[0] for k in (1, 2)] + [other.reset()[0]]
    for x, y in zip(after, again):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    never = gym.make("BitFlip-v0", n_bits=4, terminate_on_success=False)
    never.reset(seed=0)
    assert [never.step(0)[3] for _ in range(4)] == [False, False, False, True]  # truncated after n steps


def test_goal_normalizer_per_key_clips():
    norm = GoalNormalizer(2, 1, normalize=True, clip=5.0)
    nxt = {"observation": torch.tensor([[0.0, 1e6], [2.0, -1e6]]), "achieved_goal": torch.tensor([[1.0], [3.0]]),
           "desired_goal": torch.tensor([[5.0], [7.0]])}
    norm.process_experience({"next_obs": nxt})
    # raw inputs clipped to ±200 before the statistics: observation[1] has mean 0, std 200
    torch.testing.assert_close(norm.obs_rms.mean.float(), torch.tensor([1.0, 0.0]), atol=1e-3, rtol=0)
    torch.testing.assert_close(norm.obs_rms.var.float(), torch.tensor([1.0, 40_000.0]), rtol=1e-3, atol=0)
    torch.testing.assert_close(norm.goal_rms.mean.float(), torch.tensor([4.0]), atol=1e-3, rtol=0)  # ag and dg
    out = norm({"observation": torch.tensor([[11.0, 0.0]]), "achieved_goal": torch.tensor([[0.0]]),
                "desired_goal": torch.tensor([[4.0]])})
    torch.testing.assert_close(out, torch.tensor([[5.0, 0.0, 0.0]]), atol=1e-3, rtol=0)  # (11-1)/1 clipped to 5
    plain = GoalNormalizer(2, 1, normalize=False)
    assert plain({"observation": torch.ones(1, 2), "desired_goal": torch.zeros(1, 1)}).tolist() == [[1.0, 1.0, 0.0]]


def test_goal_normalizer_eps_floors_the_std_of_a_constant_feature():
    """A feature constant so far (FetchPush's finger width before a touch): with the default eps its
    first change of 1e-3 is blown up to the clip; obs_norm_eps=1e-4 keeps the std at >= 0.01."""
    n = 100_000  # enough rows that the statistics' prior (var 1 at count 1e-4) is gone: var ~ 1e-9
    nxt = {"observation": torch.full((n, 1), 0.02), "achieved_goal": torch.zeros(n, 1), "desired_goal": torch.zeros(n, 1)}
    touched = {"observation": torch.tensor([[0.021]]), "achieved_goal": torch.zeros(1, 1), "desired_goal": torch.zeros(1, 1)}
    outs = []
    for eps in (1e-8, 1e-4):
        norm = GoalNormalizer(1, 1, normalize=True, clip=5.0, eps=eps)
        norm.process_experience({"next_obs": nxt})
        outs.append(norm(touched)[0, 0].item())
    # 0.001 / sqrt(0 + 1e-8) = 10 -> clipped to 5; 0.001 / sqrt(0 + 1e-4) = 0.1
    assert outs == pytest.approx([5.0, 0.1], rel=1e-3)


def read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_dqn_her_solves_10_bit_flipping(tmp_path, one_thread):
    """Budget: 4,000 env steps (3,001 updates, about 10 s here). Without HER the same budget fails."""
    overrides = {"eval_episodes": "50", "log_every": "1000"}
    out = run.train("dqn", "BitFlip10-v0", steps=4000, seed=0, run_dir=str(tmp_path / "her"), overrides=overrides,
                    eval_every=2000, checkpoint_every=0, device="cpu", progress=False)
    rows = read(out / "eval.csv")
    assert list(rows[0]) == ["hours", "epoch", "frames", "score", "success"]
    assert float(rows[-1]["success"]) > 0.9, rows
    progress = read(out / "progress.csv")
    assert "success" in progress[0] and list(progress[0]).index("success") == list(progress[0]).index("episodes") + 1
    assert float(progress[-1]["success"]) > 0.5
    plain = run.train("dqn", "BitFlip10-v0", steps=4000, seed=0, run_dir=str(tmp_path / "plain"),
                      overrides={**overrides, "her": "none"}, eval_every=4000, checkpoint_every=0, device="cpu",
                      progress=False)
    assert float(read(plain / "eval.csv")[-1]["success"]) < 0.5


def test_goal_env_exact_resume_mid_episode(tmp_path, one_thread):
    """Two BitFlip envs, n-step 3 + HER: checkpointed at 333 vector steps (mid-episode) and resumed,
    the run equals the uninterrupted one (networks, optimizer, replay with episode bookkeeping, env states)."""
    overrides = {"num_envs": "2", "learning_starts": "200", "buffer_size": "500", "batch_size": "32",
                 "hidden_sizes": "32", "n_step": "3", "log_every": "200", "her": "futureactual_2_2"}
    full = run.train("dqn", "BitFlip10-v0", steps=1000, seed=1, run_dir=str(tmp_path / "full"), overrides=overrides,
                     eval_every=0, checkpoint_every=0, device="cpu", progress=False)
    part = run.train("dqn", "BitFlip10-v0", steps=666, seed=1, run_dir=str(tmp_path / "part"), overrides=overrides,
                     eval_every=0, checkpoint_every=0, device="cpu", progress=False)
    state, replay = final_state(part, 666)
    assert state["modules"]["env"]["episode_length"].tolist() != [0, 0]  # mid-episode
    assert "episode_end" in replay and "obs.desired_goal" in replay and replay["action"].dtype == np.int64
    run.resume_run(part, 1000, device="cpu", progress=False)
    assert_same_run(full, part, 1000)
    cols = ["steps", "updates", "success", "critic_loss", "q_mean"]
    assert progress_rows(part, cols) == progress_rows(full, cols)


def test_eval_prints_success(cli, tmp_path):
    r = cli("train", "--algo", "dqn", "--env", "BitFlip5-v0", "--steps", "300", "--run-dir", "run",
            "--eval-every", "0", "--no-progress", "--set", "learning_starts=100", "buffer_size=1000", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = cli("eval", "run", "--episodes", "4", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "over 4 episodes, success " in r.stdout


def test_goal_dicts_refused_where_unsupported():
    from rlblocks.registry import get_algo

    with pytest.raises(RLBlocksError, match="goal envs need a replay-based algorithm"):
        run.check_env_fits(get_algo("ppo"), "BitFlip10-v0", run.resolve_config(get_algo("ppo"), "BitFlip10-v0"))
    with pytest.raises(RLBlocksError, match="needs a Discrete action space"):
        run.check_env_fits(get_algo("dqn"), "Pendulum-v1", run.resolve_config(get_algo("dqn"), "Pendulum-v1"))
