"""The ``logger`` module: progress.csv, TensorBoard scalars and a console progress bar."""

from __future__ import annotations

import math
import shutil
import time
from collections import deque
from pathlib import Path

import numpy as np

from rlblocks.components.csv_log import append_csv_row, truncate_csv
from rlblocks.module import Closeable, MetricsSource, Module

BASE_COLUMNS = ("hours", "steps", "updates", "steps_per_s", "train_return", "train_length", "episodes")


class Logger(Module, Closeable):
    """Writes one ``progress.csv`` row (and TensorBoard scalars) every ``every`` env steps, or
    with ``every = 0`` one after each update round (an ``optimize`` that advanced ``algo.updates``).

    Metrics come from every module that declares :class:`~rlblocks.module.MetricsSource` (the
    algorithm's losses, entropy, temperature, ...), read once per row so the update loop never
    synchronises. ``train_return`` is the mean return of the last 10 finished episodes; goal envs
    add ``success`` (the mean of their success flags, see :class:`~rlblocks.components.env_runner.EnvRunner`)
    after the base columns.

    Args:
        run_dir: directory for ``progress.csv`` and ``tb/``; ``None`` logs nothing to disk.
        every: env steps between rows; 0: a row after each update round.
        total_steps: for the progress bar.
        progress: show a tqdm progress bar (env steps, steps/s, recent return).
    """

    name = "logger"
    requires = ("env",)

    def __init__(self, run_dir: Path | None, every: int, total_steps: int, progress: bool = True,
                 tensorboard: bool = True):
        super().__init__()
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.every, self.total_steps = every, total_steps
        self.show_progress, self.use_tb = progress, tensorboard and run_dir is not None
        self.recent = deque(maxlen=10)
        self.recent_lengths = deque(maxlen=10)
        self.recent_success = deque(maxlen=10)
        self._goal = False  # a goal env: a success column (set in setup)
        self.episodes = 0
        self.hours_before = 0.0  # wall hours of earlier sessions of this run
        self.next_log = every
        self._start = time.time()
        self._last_time, self._last_steps = self._start, 0
        self._writer = self._bar = None
        self._columns: list[str] | None = None
        self._last_eval = None
        self._started = False
        self.last_row_steps = 0  # env steps of the last progress.csv row (kept in checkpoints)
        self._row_updates = 0  # algo updates at the last row (every = 0)

    def setup(self) -> None:
        self._sources = self.agent.modules_of(MetricsSource)
        self._columns = list(BASE_COLUMNS) + [n for m in self._sources for n in m.metric_names]
        self._goal = self.agent.env.goal
        if self._goal:  # goal envs: mean success flag of the last 10 finished episodes
            self._columns.insert(len(BASE_COLUMNS), "success")

    def hours(self) -> float:
        return self.hours_before + (time.time() - self._start) / 3600.0

    def on_train_start(self) -> None:
        """Drop the rows written after the checkpoint this session starts from (they will be written
        again), then open the writers and the progress bar. Called only once training really
        continues, so a resume that stops before (a finished run, an error) loses no row."""
        self._last_time, self._last_steps = time.time(), self.agent.env_steps
        self._row_updates = self.agent.updates  # a checkpoint follows the row of its last update
        self._started = True
        if self.run_dir is not None:
            truncate_csv(self.run_dir / "progress.csv", "steps", self.last_row_steps)
            if self.agent.env_steps == 0 and (self.run_dir / "tb").is_dir():  # a restart from step 0
                shutil.rmtree(self.run_dir / "tb")
        if self.use_tb:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.agent.env_steps or None)
        if self.show_progress:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total_steps, initial=self.agent.env_steps, unit="step",
                             unit_scale=True, dynamic_ncols=True, smoothing=0.05)

    def on_episode_end(self, episode) -> None:
        self.recent.append(episode["return"])
        self.recent_lengths.append(episode["length"])
        if "success" in episode:
            self.recent_success.append(episode["success"])
        self.episodes += 1

    def after_step(self) -> None:
        if self._bar is not None:
            self._bar.update(self.agent.env.num_envs)
        if self.every == 0:  # one row per update round (PPO: per rollout), so every row has losses
            if self.agent.updates != self._row_updates:
                self.write_row()
        elif self.agent.env_steps >= self.next_log:
            self.next_log += self.every
            self.write_row()

    def record_eval(self, mean: float, std: float, success: float | None = None) -> None:
        self._last_eval = mean
        if self._writer is not None:
            self._writer.add_scalar("eval/score", mean, self.agent.env_steps)
            self._writer.add_scalar("eval/score_std", std, self.agent.env_steps)
            if success is not None:
                self._writer.add_scalar("eval/success", success, self.agent.env_steps)

    def write_row(self) -> None:
        now, steps = time.time(), self.agent.env_steps
        row = {
            "hours": round(self.hours(), 6), "steps": steps,
            "updates": self.agent.updates,
            "steps_per_s": round((steps - self._last_steps) / max(now - self._last_time, 1e-9), 2),
            "train_return": float(np.mean(self.recent)) if self.recent else float("nan"),
            "train_length": float(np.mean(self.recent_lengths)) if self.recent_lengths else float("nan"),
            "episodes": self.episodes,
        }
        if self._goal:
            row["success"] = float(np.mean(self.recent_success)) if self.recent_success else float("nan")
        self._last_time, self._last_steps = now, steps
        self.last_row_steps, self._row_updates = steps, row["updates"]
        for source in self._sources:
            row.update(source.pop_metrics())
        if self.run_dir is not None:
            append_csv_row(self.run_dir / "progress.csv", self._columns, row)
        if self._writer is not None:
            for key, value in row.items():
                if key not in ("steps", "hours") and not math.isnan(value):
                    self._writer.add_scalar(f"train/{key}", value, steps)
        if self._bar is not None:
            post = {"return": f"{row['train_return']:.1f}"}
            if self._last_eval is not None:
                post["eval"] = f"{self._last_eval:.1f}"
            self._bar.set_postfix(post, refresh=False)

    def on_train_end(self) -> None:
        """The run reached its total steps between two rows: write a last one. It comes after the final
        checkpoint, so a resumed run that continues drops it (an uninterrupted run has no such row).
        With one row per update round, steps after the last update get no row (it would hold no loss)."""
        if self._started and self.every > 0 and self.agent.env_steps > self.last_row_steps:
            self.write_row()

    def close(self) -> None:
        """Close the writers and the progress bar."""
        self._started = False
        if self._bar is not None:
            self._bar.close()
        if self._writer is not None:
            self._writer.close()
        self._bar = self._writer = None

    def state_dict(self):
        return {"hours": self.hours(), "recent": list(self.recent), "recent_lengths": list(self.recent_lengths),
                "recent_success": list(self.recent_success),
                "episodes": self.episodes, "next_log": self.next_log,
                "last_row_steps": self.last_row_steps}

    def load_state_dict(self, state):
        self.hours_before = float(state["hours"])
        self._start = time.time()
        self.recent.extend(state["recent"])
        self.recent_lengths.extend(state["recent_lengths"])
        self.recent_success.extend(state.get("recent_success", []))
        self.episodes, self.next_log = int(state["episodes"]), int(state["next_log"])
        # rows written after this checkpoint are dropped when training continues (on_train_start)
        self.last_row_steps = int(state.get("last_row_steps", self.agent.env_steps))
