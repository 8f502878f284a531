"""The ``evaluator`` module and :func:`evaluate`: greedy episodes on a separate env."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rlblocks.components.csv_log import append_csv_row, truncate_csv
from rlblocks.envs import make_env
from rlblocks.module import Module

EVAL_COLUMNS = ("hours", "epoch", "frames", "score")  # STEVE's greedy.csv columns


def evaluate(agent, env_id: str, episodes: int, seed: int, deterministic: bool = True,
             render_mode: str | None = None, video_path: str | None = None) -> list[float]:
    """Run ``episodes`` full episodes with ``agent.policy`` and return their undiscounted returns.

    Episode ``k`` is reset with ``seed + k``, so evaluations are comparable across a run. The
    policy acts without exploration noise (``deterministic`` picks the mode of a stochastic
    policy). The observation normaliser is only read, never updated, so it stays frozen.
    ``video_path`` (``*.mp4``) records every episode with gymnasium's ``RecordVideo``.
    """
    if video_path is not None:
        render_mode = "rgb_array"
    env = make_env(env_id, 0, render_mode)
    if video_path is not None:
        from gymnasium.wrappers import RecordVideo

        path = Path(video_path)
        env = RecordVideo(env, str(path.parent), name_prefix=path.stem, episode_trigger=lambda _: True,
                          disable_logger=True)
    policy = agent.policy
    returns = []
    try:
        for k in range(episodes):
            obs, _ = env.reset(seed=seed + k)
            total, done = 0.0, False
            while not done:
                obs_t = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)
                action = policy.act(obs_t, explore=False, deterministic=deterministic)[0]
                obs, reward, terminated, truncated, _ = env.step(agent.env.to_env_action(action))
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
    finally:
        env.close()
    return returns


class Evaluator(Module):
    """Every ``every`` env steps, and once more when the run reaches its total steps, evaluates
    greedily and appends a row to ``eval.csv`` (``every = 0`` turns evaluation off).

    Columns: ``hours`` (wall-clock hours of training), ``epoch`` (gradient updates so far),
    ``frames`` (env steps), ``score`` (mean return over ``episodes``).
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
        returns = evaluate(self.agent, self.env_id, self.episodes, self.seed, deterministic=True)
        row = {"hours": self.agent.logger.hours() if "logger" in self.agent.modules else 0.0,
               "epoch": getattr(self.agent.modules.get("algo"), "updates", 0),
               "frames": self.agent.env_steps, "score": float(np.mean(returns))}
        self.history.append(row)
        self.last_frames = self.agent.env_steps
        if "logger" in self.agent.modules:
            self.agent.logger.record_eval(row["score"], float(np.std(returns)))
        if self.path is not None:
            append_csv_row(self.path, EVAL_COLUMNS, row)
        return row["score"]

    def state_dict(self):
        return {"next_eval": self.next_eval, "last_frames": self.last_frames}

    def load_state_dict(self, state):
        self.next_eval = int(state["next_eval"])
        self.last_frames = int(state.get("last_frames", -1))
