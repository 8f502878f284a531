"""Evaluation: vectorised episodes equal one-at-a-time ones, every finished run is evaluated,
videos have a length limit, PPO logs one row per update round (no NaN losses)."""

from __future__ import annotations

import csv
import math
from typing import ClassVar

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlblocks import run
from rlblocks.components.evaluator import eval_vec_env, evaluate, record
from rlblocks.registry import RunOptions, build_agent, get_algo


def acting_agent(algo: str, env_id: str, **overrides):
    spec = get_algo(algo)
    cfg = run.resolve_config(spec, env_id, None, {"hidden_sizes": "32,32", **overrides})
    return build_agent(spec, env_id, cfg, 0, torch.device("cpu"),
                       RunOptions(None, 1000, 0, 0, False, tensorboard=False, training=False))


def sequential_returns(agent, env_id: str, episodes: int, seed: int, deterministic: bool = True) -> list[float]:
    """The reference: one env, one episode after another, batch-1 actions (the evaluation before
    it was vectorised)."""
    from rlblocks.envs import make_env

    env, out, actor = make_env(env_id), [], agent.policy
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + k)
        total, done, state = 0.0, False, actor.initial_state(1)
        while not done:
            action, state, _ = actor.act(torch.as_tensor(obs, dtype=torch.float32)[None], state, False, deterministic)
            action = action[0]
            obs, reward, terminated, truncated, _ = env.step(agent.env.to_env_action(action))
            total, done = total + float(reward), terminated or truncated
        out.append(total)
    env.close()
    return out


@pytest.mark.parametrize("algo, env_id", [("sac", "Pendulum-v1"), ("td3", "MountainCarContinuous-v0"),
                                          ("ppo", "CartPole-v1"), ("ppo", "Pendulum-v1")])
@pytest.mark.parametrize("num_envs", [None, 3])  # all episodes at once; 3 envs taking turns over 7 episodes
def test_vector_evaluation_equals_sequential_evaluation(algo, env_id, num_envs, one_thread):
    agent = acting_agent(algo, env_id)
    expected = sequential_returns(agent, env_id, 7, seed=123)
    got = evaluate(agent, env_id, 7, seed=123, deterministic=True, num_envs=num_envs)
    assert len(got) == 7
    # batched and batch-1 matrix products may round differently in the last bits
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    assert len(set(np.round(expected, 3))) > 1 or env_id == "MountainCarContinuous-v0"  # seeds matter


def test_vector_evaluation_handles_episodes_of_different_lengths(one_thread):
    agent = acting_agent("ppo", "CartPole-v1")
    expected = sequential_returns(agent, "CartPole-v1", 9, seed=5)
    assert len(set(expected)) > 2  # different lengths: envs finish at different steps
    assert evaluate(agent, "CartPole-v1", 9, seed=5, num_envs=4) == expected


def test_a_reused_evaluation_env_gives_the_episodes_of_a_new_one(one_thread):
    """The evaluator keeps its envs between evaluations: every episode is reset with its seed, so
    a second evaluation in the same envs (left mid-state by the first) equals one in new envs."""
    agent = acting_agent("ppo", "CartPole-v1")
    vec = eval_vec_env("CartPole-v1", 9, num_envs=4)
    try:
        first = evaluate(agent, "CartPole-v1", 9, seed=5, num_envs=4, vec=vec)
        other = evaluate(agent, "CartPole-v1", 9, seed=70, num_envs=4, vec=vec)  # other episodes in between
        again = evaluate(agent, "CartPole-v1", 9, seed=5, num_envs=4, vec=vec)
        assert vec.num_envs == 4  # left open for the next evaluation
        with pytest.raises(ValueError, match="has 4 envs"):
            evaluate(agent, "CartPole-v1", 9, seed=5, vec=vec)  # 9 side by side
    finally:
        vec.close()
    assert first == again == evaluate(agent, "CartPole-v1", 9, seed=5, num_envs=4)
    assert other != first


def test_short_run_still_gets_an_evaluation(tmp_path, one_thread):
    """A run shorter than --eval-every gets one evaluation at its end (rlblocks plot needs it)."""
    run_dir = run.train("sac", "Pendulum-v1", steps=300, seed=0, run_dir=str(tmp_path / "run"),
                        overrides={"hidden_sizes": "16,16", "learning_starts": "100", "eval_episodes": "2"},
                        eval_every=10_000, checkpoint_every=0, device="cpu", progress=False)
    with open(run_dir / "eval.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["frames"]) for r in rows] == [300]
    # resuming to more steps drops that off-schedule row, as an uninterrupted run would not have it
    run.resume_run(run_dir, 500, device="cpu", progress=False)
    with open(run_dir / "eval.csv", newline="") as fh:
        assert [int(r["frames"]) for r in csv.DictReader(fh)] == [500]


def test_ppo_logs_one_row_per_update_round_without_nan(tmp_path, one_thread):
    run_dir = run.train("ppo", "CartPole-v1", steps=1000, seed=0, run_dir=str(tmp_path / "run"),
                        eval_every=0, checkpoint_every=0, device="cpu", progress=False)
    with open(run_dir / "progress.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    rollout = 8 * 32  # the CartPole preset: 8 envs x 32 steps
    assert [int(r["steps"]) for r in rows] == [rollout * k for k in range(1, 1000 // rollout + 1)]
    for row in rows:
        for key in ("policy_loss", "value_loss", "entropy", "approx_kl", "lr"):
            assert not math.isnan(float(row[key])), (key, row)


# ---------------------------------------------------------------------------- video
class FrameEnv(gym.Env):
    """A 40-step env whose frames are drawn in NumPy (no OpenGL, no pygame)."""

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "render_fps": 20}
    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, render_mode=None):
        self.render_mode, self.t = render_mode, 0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.full(2, self.t / 40, np.float32), float(action[0]), False, False, {}

    def render(self):
        frame = np.zeros((32, 32, 3), np.uint8)
        frame[:, : self.t % 32] = 255
        return frame


def test_video_is_limited_in_frames_and_episodes_with_a_progress_bar(tmp_path, capsys, one_thread):
    pytest.importorskip("moviepy", reason="--video needs moviepy (the mujoco extra)")
    if "FrameTest-v0" not in gym.registry:
        gym.register("FrameTest-v0", entry_point=FrameEnv, max_episode_steps=40)
    agent = acting_agent("sac", "FrameTest-v0")
    returns = record(agent, "FrameTest-v0", 2, seed=0, deterministic=True, video_path=str(tmp_path / "clip.mp4"),
                     video_length=10, progress=True)
    assert len(returns) == 2
    videos = sorted(p.name for p in tmp_path.glob("clip-episode-*.mp4"))
    assert videos == ["clip-episode-0.mp4", "clip-episode-1.mp4"]
    from moviepy import VideoFileClip

    with VideoFileClip(str(tmp_path / "clip-episode-0.mp4")) as clip:
        assert round(clip.duration * clip.fps) == 10  # 10 of the episode's 40 frames
    err = capsys.readouterr().err
    assert "recording" in err and "20/20" in err and "frame" in err  # the bar counts the recorded frames
