"""`rlblocks sweep` and `rlblocks plot` on a tiny grid (SAC on Pendulum, 2 seeds × 400 steps).

The sweep itself runs once per module (about 20 s on 2 cores); the other tests reuse it or a copy.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rlblocks.errors import RLBlocksError
from rlblocks.plot import align, plot_sweep
from rlblocks.sweep import parse_seeds

TINY = ["--algo", "sac", "--env", "Pendulum-v1", "--steps", "400", "--eval-every", "200", "--jobs", "2",
        "--set", "hidden_sizes=32,32", "learning_starts=100", "batch_size=32", "eval_episodes=1",
        "buffer_size=1000", "log_every=100", "--no-progress"]


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "rlblocks", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)


def tiny_sweep(sweep_dir: Path, seeds: str = "0-1", steps: str | None = None) -> subprocess.CompletedProcess:
    args = list(TINY)
    if steps is not None:
        args[args.index("--steps") + 1] = steps
    return cli("sweep", *args, "--seeds", seeds, "--sweep-dir", str(sweep_dir))


def ckpt_steps(run_dir: Path) -> int:
    name = json.loads((run_dir / "checkpoints" / "latest.json").read_text())["name"]
    return json.loads((run_dir / "checkpoints" / name / "meta.json").read_text())["env_steps"]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sweep") / "sw"
    proc = tiny_sweep(root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root


def test_sweep_trains_every_run_in_its_own_directory(sweep_dir):
    for seed in (0, 1):
        run = sweep_dir / "sac" / "Pendulum-v1" / f"seed{seed}"
        assert ckpt_steps(run) == 400
        record = json.loads((run / "config.json").read_text())
        assert (record["algo"], record["env_id"], record["seed"]) == ("sac", "Pendulum-v1", seed)
        assert record["config"]["hidden_sizes"] == [32, 32]
        assert " -m rlblocks train --algo sac --env Pendulum-v1" in (run / "train.log").read_text()
        assert (run / "eval.csv").read_text().count("\n") == 3  # header + evaluations at 200 and 400
    meta = json.loads((sweep_dir / "sweep.json").read_text())
    assert meta["algos"] == ["sac"] and meta["envs"] == ["Pendulum-v1"] and meta["seeds"] == [0, 1]
    assert meta["steps"] == 400 and meta["overrides"]["hidden_sizes"] == "32,32"
    assert [(r["seed"], r["status"], r["env_steps"]) for r in meta["runs"]] == [(0, "done", 400), (1, "done", 400)]


def test_plot_writes_figure_and_summary_tables(sweep_dir, tmp_path):
    out = tmp_path / "figs" / "curves.png"
    proc = cli("plot", str(sweep_dir), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "figs" / "curves_summary.md").read_text()
    assert "| Pendulum-v1 | sac | 2 | 400 |" in md
    assert "| final mean 95% CI | IQM final | IQM 95% CI |" in md
    with open(tmp_path / "figs" / "curves_summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1 and rows[0]["seeds"] == "2" and rows[0]["final_step"] == "400"
    finals = []
    for seed in (0, 1):
        with open(sweep_dir / "sac" / "Pendulum-v1" / f"seed{seed}" / "eval.csv") as fh:
            finals.append(float(list(csv.DictReader(fh))[-1]["score"]))
    assert float(rows[0]["final_mean"]) == pytest.approx(np.mean(finals))
    assert float(rows[0]["final_std"]) == pytest.approx(np.std(finals, ddof=1))
    # Two seeds: the IQM is their mean, and a resampled pair's mean is the lower score, the mean or the
    # higher score with probabilities 1/4, 1/2, 1/4, so both 95% intervals span the two final scores.
    assert float(rows[0]["iqm_final"]) == pytest.approx(np.mean(finals))
    for stat in ("final_mean", "iqm_final"):
        assert float(rows[0][f"{stat}_ci_low"]) == pytest.approx(min(finals))
        assert float(rows[0][f"{stat}_ci_high"]) == pytest.approx(max(finals))
    assert f"[{min(finals):.2f}, {max(finals):.2f}]" in md

    fig, md_path, csv_path = plot_sweep(sweep_dir, tmp_path / "train.png", metric="train")
    assert fig.exists() and md_path.name == "train_summary.md" and csv_path.exists()
    assert "| Pendulum-v1 | sac | 2 |" in md_path.read_text()


def test_rerun_skips_finished_runs(sweep_dir):
    before = {p: p.stat().st_mtime_ns for p in sweep_dir.rglob("*") if p.is_file() and p.name != "sweep.json"}
    proc = tiny_sweep(sweep_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 new, 0 to resume, 0 to restart, 2 already finished" in proc.stdout
    assert "0 finished, 2 skipped" in proc.stdout
    after = {p: p.stat().st_mtime_ns for p in sweep_dir.rglob("*") if p.is_file() and p.name != "sweep.json"}
    assert after == before  # nothing retrained, no log touched


def test_rerun_resumes_unfinished_runs_and_reports_failures(sweep_dir, tmp_path):
    copy = tmp_path / "sw"
    shutil.copytree(sweep_dir, copy)
    bad = copy / "sac" / "Pendulum-v1" / "seed1"
    (bad / "checkpoints" / "step_0000000400" / "state.pt").write_bytes(b"garbage")
    proc = tiny_sweep(copy, steps="500")  # seed0 resumes from 400; seed1's checkpoint is corrupt
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "2 to resume" in proc.stdout
    assert "sac Pendulum-v1 seed0 resumed and finished at 500 steps" in proc.stdout
    assert "FAILED (exit 2)" in proc.stdout and str(bad / "train.log") in proc.stdout
    assert f"failed: sac Pendulum-v1 seed1: see {bad / 'train.log'}" in proc.stdout
    assert ckpt_steps(copy / "sac" / "Pendulum-v1" / "seed0") == 500
    assert "corrupt" in (bad / "train.log").read_text()
    statuses = {r["seed"]: r["status"] for r in json.loads((copy / "sweep.json").read_text())["runs"]}
    assert statuses == {0: "done", 1: "failed"}


def test_bad_seed_spec_is_one_error_line_before_anything_starts(tmp_path):
    proc = cli("sweep", "--algo", "sac", "--env", "Pendulum-v1", "--seeds", "0-x", "--sweep-dir", str(tmp_path / "s"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlblocks: error: --seeds"), proc.stderr
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("kwargs,match", [
    ({"algos": "sac,nope"}, "unknown algorithm 'nope'"),
    ({"envs": "Pendulum-v9"}, "unknown env id"),
    ({"jobs": 0}, "--jobs 0 must be >= 1"),
    ({"seeds": "5-2"}, "descending"),
    ({"overrides": {"batch_size": "-1"}}, "batch_size"),
])
def test_plan_rejects_bad_input(tmp_path, kwargs, match):
    from rlblocks.sweep import plan_sweep

    args = {"algos": "sac", "envs": "Pendulum-v1", "seeds": "0", "sweep_dir": tmp_path / "s", **kwargs}
    with pytest.raises(RLBlocksError, match=match):
        plan_sweep(args.pop("algos"), args.pop("envs"), args.pop("seeds"), **args)
    assert not (tmp_path / "s").exists()


def test_parse_seeds():
    assert parse_seeds("0-7") == list(range(8))
    assert parse_seeds("0,2,5") == [0, 2, 5]
    assert parse_seeds("3") == [3]
    assert parse_seeds("0-2, 2, 9") == [0, 1, 2, 9]
    for bad in ("", "a", "1-", "-3", "1.5"):
        with pytest.raises(RLBlocksError):
            parse_seeds(bad)


def test_align():
    a = (np.array([0.0, 10.0, 20.0]), np.array([0.0, 1.0, 2.0]))
    b = (np.array([5.0, 15.0, 30.0]), np.array([0.0, 1.0, 2.5]))
    grid, values = align([a, b])
    assert grid.tolist() == [5.0, 10.0, 15.0, 20.0]  # the range both seeds reached
    assert values[0].tolist() == [0.5, 1.0, 1.5, 2.0] and values[1].tolist() == [0.0, 0.5, 1.0, 1.5]


def test_success_metric_reads_the_eval_success_column(tmp_path):
    """``--metric success``: eval.csv's success column (goal envs); runs without one are left out."""
    from rlblocks.plot import read_curve

    goal, plain = tmp_path / "goal", tmp_path / "plain"
    for d in (goal, plain):
        d.mkdir()
    (goal / "eval.csv").write_text("hours,epoch,frames,score,success\n0,0,2000,-40,0.2\n0,1,4000,-5,0.9\n")
    (plain / "eval.csv").write_text("hours,epoch,frames,score\n0,0,2000,-40\n")
    steps, success = read_curve(goal, "success")
    assert steps.tolist() == [2000.0, 4000.0] and success.tolist() == [0.2, 0.9]
    assert read_curve(plain, "success") is None
    assert read_curve(goal, "eval")[1].tolist() == [-40.0, -5.0]
