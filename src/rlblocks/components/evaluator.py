"""The ``evaluator`` module and :func:`evaluate`: greedy episodes on a separate env."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from rlblocks.components.csv_log import append_csv_row, truncate_csv
from rlblocks.envs import make_env, make_vec_env
from rlblocks.envs.goal import SUCCESS_KEYS, obs_to_tensor, success_flags
from rlblocks.module import Closeable, Module

EVAL_COLUMNS = ("hours", "epoch", "frames", "score")  # STEVE's greedy.csv columns
GOAL_EVAL_COLUMNS = (*EVAL_COLUMNS, "success")  # goal envs: mean success flag at episode ends


def eval_vec_env(env_id: str, episodes: int, num_envs: int | None = None, goal: bool = False):
    """The vector env :func:`evaluate` runs ``episodes`` episodes in: ``min(episodes, num_envs)``
    envs (default one per episode), no autoreset, the success flags
    (:data:`~rlblocks.envs.goal.SUCCESS_KEYS`) kept in ``info`` for goal envs."""
    from gymnasium.vector import AutoresetMode

    n = max(1, min(episodes, num_envs or episodes))
    return make_vec_env(env_id, n, "sync", info_keys=SUCCESS_KEYS if goal else (),
                        autoreset_mode=AutoresetMode.DISABLED)


def evaluate(agent, env_id: str, episodes: int, seed: int, deterministic: bool = True,
             num_envs: int | None = None, successes: list[float] | None = None, vec=None) -> list[float]:
    """Run ``episodes`` full episodes with ``agent.policy`` and return their undiscounted returns.

    Episode ``k`` is reset with ``seed + k``, so evaluations are comparable across a run. The
    episodes run side by side in a gymnasium vector env of ``num_envs`` envs (default: one per
    episode; an env that finishes starts the next episode), with one batched policy call per step.
    With a deterministic policy the returns equal one-episode-at-a-time evaluation (to float
    rounding of batched matrix products: ``tests/test_evaluation.py``). The policy acts without
    exploration noise (``deterministic`` picks the mode of a stochastic policy); the observation
    normaliser is only read, so it stays frozen. Goal envs' dict observations are passed per key;
    ``successes`` (a list) receives each episode's success flag at its last step (``info["is_success"]``
    or, for the maze tasks, ``info["success"]``: :func:`~rlblocks.envs.goal.success_flags`; NaN
    where the env reports neither). The evaluation keeps its own actor states
    (:class:`~rlblocks.module.Actor`), reset wherever an env starts its next episode.

    ``vec``: a vector env from :func:`eval_vec_env` (same ``episodes``, ``num_envs`` and goal
    setting) to run in and leave open, so repeated evaluations skip building the envs (every
    episode is reset with its seed, so a reused env gives the same episodes as a new one, as
    gymnasium's ``reset(seed=...)`` contract says); without it one is built and closed here.

    Raises:
        ValueError: ``vec`` has another number of envs than this evaluation runs side by side.

    Returns:
        ``episodes`` returns, in episode order.
    """
    n = max(1, min(episodes, num_envs or episodes))
    own = vec is None
    if own:
        vec = eval_vec_env(env_id, episodes, num_envs, goal=successes is not None)
    elif vec.num_envs != n:
        raise ValueError(f"evaluate: the vector env has {vec.num_envs} envs, this evaluation runs {n} side by side")
    actor, to_env = agent.policy, agent.env.to_env_action
    state = actor.initial_state(n)
    returns = np.zeros(episodes)
    success = np.full(episodes, np.nan)
    episode = np.arange(n)  # the episode each env runs
    total = np.zeros(n)
    running = np.ones(n, dtype=bool)
    try:
        obs, _ = vec.reset(seed=[seed + k for k in range(n)])
        next_episode = n
        while running.any():
            action, state, _ = actor.act(obs_to_tensor(obs), state, False, deterministic)
            obs, reward, terminated, truncated, info = vec.step(to_env(action))
            state = actor.observe(state, torch.from_numpy(np.asarray(reward, dtype=np.float32)))
            total += np.where(running, reward, 0.0)  # a finished env idles until the last one ends
            ended = terminated | truncated
            if not ended.any():
                continue
            done = running & ended
            returns[episode[done]] = total[done]
            flags = success_flags(info)
            if flags is not None:
                success[episode[done]] = flags[done]
            total[done] = 0.0
            seeds: list[int | None] = [None] * n
            for i in np.flatnonzero(done):
                if next_episode < episodes:
                    episode[i], seeds[i] = next_episode, seed + next_episode
                    next_episode += 1
                else:  # no episode left: the env idles, reset unseeded so the vector env can step it
                    running[i] = False
            if running.any():
                obs, _ = vec.reset(seed=seeds, options={"reset_mask": ended})
                state = actor.reset_state(state, torch.from_numpy(ended))
    finally:
        if own:
            vec.close()
    if successes is not None:
        successes.extend(success.tolist())
    return returns.tolist()


def record(agent, env_id: str, episodes: int, seed: int, deterministic: bool, video_path: str | None = None,
           video_length: int = 0, progress: bool = True) -> list[float]:
    """Run ``episodes`` episodes one at a time in a rendering env and return their returns.

    With ``video_path`` (``*.mp4``) each episode is recorded by gymnasium's ``RecordVideo`` into
    ``<stem>-episode-<k>.mp4``, at most ``video_length`` frames each (0: the whole episode), with a
    progress bar of frames (software rendering takes ≈ 0.2 s per frame). Without it the env opens a
    window (``render_mode="human"``). Episode ``k`` is reset with ``seed + k`` as in :func:`evaluate`.
    """
    from tqdm import tqdm

    env = make_env(env_id, 0, "rgb_array" if video_path is not None else "human")
    limit = env.spec.max_episode_steps if env.spec is not None else None
    caps = [v for v in (video_length, limit) if v]
    per_episode = min(caps) if caps else None  # frames shown per episode (for the bar's total)
    if video_path is not None:
        from gymnasium.wrappers import RecordVideo

        path = Path(video_path)
        with warnings.catch_warnings():  # "overwriting existing videos" whenever the folder exists (e.g. ".")
            warnings.filterwarnings("ignore", message=".*Overwriting existing videos.*")
            env = RecordVideo(env, str(path.parent), name_prefix=path.stem, episode_trigger=lambda _: True,
                              video_length=video_length, disable_logger=True)
    bar = tqdm(total=per_episode * episodes if per_episode else None, unit="frame", desc="recording",
               disable=not progress or video_path is None, dynamic_ncols=True)
    actor, returns = agent.policy, []
    try:
        for k in range(episodes):
            obs, _ = env.reset(seed=seed + k)
            total, done, frames, state = 0.0, False, 0, actor.initial_state(1)
            while not done:
                batch = {k: v[None] for k, v in obs.items()} if isinstance(obs, dict) else np.asarray(obs)[None]
                action, state, _ = actor.act(obs_to_tensor(batch), state, False, deterministic)
                obs, reward, terminated, truncated, _ = env.step(agent.env.to_env_action(action[0]))
                state = actor.observe(state, torch.tensor([float(reward)], dtype=torch.float32))
                total += float(reward)
                done = terminated or truncated
                frames += 1
                if not per_episode or frames <= per_episode:
                    bar.update(1)
            returns.append(total)
    finally:
        bar.close()
        env.close()
    return returns


class Evaluator(Module, Closeable):
    """Every ``every`` env steps, and once more when the run reaches its total steps, evaluates
    greedily and appends a row to ``eval.csv`` (``every = 0`` turns evaluation off). The
    evaluation envs are built at the first evaluation and kept until the run closes (as SB3's
    ``EvalCallback`` keeps its env): a Fetch task's 30 envs take about 1 s to build.

    Columns: ``hours`` (wall-clock hours of training), ``epoch`` (gradient updates so far),
    ``frames`` (env steps), ``score`` (mean return over ``episodes``), and for goal envs
    ``success`` (mean success flag at the episodes' ends, see :func:`evaluate`).
    """

    name = "evaluator"
    requires = ("policy", "env")

    def __init__(self, run_dir: Path | None, env_id: str, every: int, episodes: int, seed: int):
        super().__init__()
        self.path = Path(run_dir) / "eval.csv" if run_dir is not None else None
        self.env_id, self.every, self.episodes, self.seed = env_id, every, episodes, seed
        self.next_eval = every
        self.last_frames = -1  # env steps of the latest evaluation
        self.history: list[dict] = []
        self._vec = None  # built at the first evaluation

    def after_step(self) -> None:
        if self.every > 0 and self.agent.env_steps >= self.next_eval:
            self.next_eval += self.every
            self.run()

    def on_train_start(self) -> None:
        # Rows after the checkpoint this session starts from come again; so does an end-of-run
        # evaluation between two scheduled ones (an uninterrupted run would not have it).
        last_scheduled = self.next_eval - self.every if self.every > 0 else self.agent.env_steps
        if self.path is not None:
            truncate_csv(self.path, "frames", min(last_scheduled, self.agent.env_steps))

    def on_train_end(self) -> None:
        if self.every > 0 and self.last_frames != self.agent.env_steps:  # every finished run has an evaluation
            self.run()

    def run(self) -> float:
        goal = self.agent.env.goal
        successes: list[float] | None = [] if goal else None
        if self._vec is None:
            self._vec = eval_vec_env(self.env_id, self.episodes, goal=goal)
        returns = evaluate(self.agent, self.env_id, self.episodes, self.seed, deterministic=True,
                           successes=successes, vec=self._vec)
        row = {"hours": self.agent.logger.hours() if "logger" in self.agent.modules else 0.0,
               "epoch": self.agent.updates,
               "frames": self.agent.env_steps, "score": float(np.mean(returns))}
        if goal:
            row["success"] = float(np.mean(successes))
        self.history.append(row)
        self.last_frames = self.agent.env_steps
        if "logger" in self.agent.modules:
            self.agent.logger.record_eval(row["score"], float(np.std(returns)), row.get("success"))
        if self.path is not None:
            append_csv_row(self.path, GOAL_EVAL_COLUMNS if goal else EVAL_COLUMNS, row)
        return row["score"]

    def close(self) -> None:
        if self._vec is not None:
            self._vec.close()
            self._vec = None

    def state_dict(self):
        return {"next_eval": self.next_eval, "last_frames": self.last_frames}

    def load_state_dict(self, state):
        self.next_eval = int(state["next_eval"])
        self.last_frames = int(state.get("last_frames", -1))
