"""Goal envs name their success flag in one of two ways: Fetch (and rlblocks' BitFlip) report
``info["is_success"]``, gymnasium-robotics' maze tasks (PointMaze, AntMaze) ``info["success"]``.
Training (progress.csv), evaluation (eval.csv) and ``rlblocks eval`` read either.

Skipped where gymnasium-robotics is not installed (CI installs ``.[dev,mujoco]`` only)."""

from __future__ import annotations

import csv
import math
import re

import numpy as np
import pytest

pytest.importorskip("gymnasium_robotics", reason="gymnasium-robotics is not installed (pip install -e \".[robotics]\")")

from test_evaluation import acting_agent

from rlblocks.components.evaluator import evaluate
from rlblocks.envs.goal import success_flags

MAZE = "PointMaze_UMaze-v3"  # 300-step episodes, info["success"] only


def test_success_flags_reads_either_key():
    assert success_flags({"success": np.array([True, False]), "_success": np.array([True, True])}).tolist() == [1.0, 0.0]
    assert success_flags({"is_success": np.array([0.0, 1.0])}).tolist() == [0.0, 1.0]
    assert success_flags({"x_position": np.zeros(2)}) is None


def test_maze_evaluation_reports_success(one_thread):
    agent = acting_agent("sac", MAZE)
    successes: list[float] = []
    returns = evaluate(agent, MAZE, 2, seed=0, successes=successes)
    assert len(returns) == 2
    assert len(successes) == 2 and all(s in (0.0, 1.0) for s in successes), successes  # NaN without the maze key


def read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_maze_run_logs_success(cli, tmp_path):
    """One 300-step episode: progress.csv, eval.csv and ``rlblocks eval`` give a success rate, not NaN."""
    r = cli("train", "--algo", "sac", "--env", MAZE, "--steps", "300", "--run-dir", "run", "--eval-every", "300",
            "--no-progress", "--set", "num_envs=1", "learning_starts=100", "batch_size=32", "hidden_sizes=32",
            "eval_episodes=2", "log_every=300", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    progress, evals = read(tmp_path / "run" / "progress.csv"), read(tmp_path / "run" / "eval.csv")
    assert progress[-1]["episodes"] == "1" and math.isfinite(float(progress[-1]["success"])), progress
    assert math.isfinite(float(evals[-1]["success"])), evals
    r = cli("eval", "run", "--episodes", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert re.search(r"over 2 episodes, success [01]\.\d\d \(2 episodes\)", r.stdout), r.stdout
