"""``--backend ray``: rollout workers (PPO), faults survived (a worker killed by pid, a driver
killed by SIGKILL then resumed), Ray sweeps, the asynchronous off-policy layout.

One local Ray (2 CPUs) serves the whole module; runs started here join it, and CLI subprocesses
join it with ``--ray-address``. Ray is a dev dependency: without it this module fails to import
(it is never skipped silently).
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import ray  # a missing Ray fails this module here, loudly (never a silent skip)
import torch

from rlblocks.checkpoint import latest_checkpoint, load_checkpoint
from rlblocks.distributed.session import worker_env
from rlblocks.errors import ConfigError, RLBlocksError
from rlblocks.run import evaluate_run, train

PPO_SMALL = {"n_steps": "64", "n_minibatches": "4", "n_epochs": "2", "num_envs": "2"}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray for this module; yields its address for ``--ray-address``."""

    context = ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20,
                       runtime_env={"env_vars": worker_env()}, logging_level=logging.WARNING)
    try:
        yield context.address_info["gcs_address"]
    finally:
        ray.shutdown()


def _cli_env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=worker_env()["PYTHONPATH"])


def _rows(path: Path) -> list[list[str]]:
    return [line.split(",") for line in path.read_text().splitlines()[1:] if line.strip()]


def test_backend_flags_are_checked_before_anything_is_made(tmp_path):
    with pytest.raises(ConfigError, match="--workers needs --backend ray"):
        train("ppo", "Pendulum-v1", steps=100, run_dir=str(tmp_path / "a"), workers=2)
    with pytest.raises(ConfigError, match="--workers 3 must divide num_envs=2"):
        train("ppo", "Pendulum-v1", steps=100, run_dir=str(tmp_path / "b"), backend="ray", workers=3,
              overrides=PPO_SMALL)
    with pytest.raises(ConfigError, match="n_step=3 need each env.s steps in order"):
        train("sac", "Pendulum-v1", steps=100, run_dir=str(tmp_path / "c"), backend="ray", overrides={"n_step": "3"})
    with pytest.raises(ConfigError, match=r"arch=lstm \(sequence windows\) need each env.s steps in order"):
        train("sac", "Pendulum-v1", steps=100, run_dir=str(tmp_path / "c"), backend="ray", overrides={"arch": "lstm"})
    with pytest.raises(RLBlocksError, match="--ray-address 127.0.0.1:1: nothing answers there"):
        train("ppo", "Pendulum-v1", steps=100, run_dir=str(tmp_path / "d"), backend="ray", ray_address="127.0.0.1:1")
    assert not any(tmp_path.joinpath(d).exists() for d in "abcd")


def test_more_workers_than_the_cluster_has_cpus_is_one_error_and_leaves_nothing(ray_address, tmp_path):
    with pytest.raises(RLBlocksError, match="--workers 4 need 4 CPUs .one each. but the Ray cluster has 2"):
        train("ppo", "Pendulum-v1", steps=256, run_dir=str(tmp_path / "run"), backend="ray", workers=4,
              overrides={**PPO_SMALL, "num_envs": "4"})
    assert not (tmp_path / "run").exists()


def test_ppo_rollout_workers_survive_a_worker_killed_by_pid(ray_address, tmp_path, one_thread):
    """Two rollout workers (one env each) feed every step to the learner; worker 0's process is
    killed from outside mid-run: Ray restarts it, its rollout is collected again, the run completes."""
    run, steps = tmp_path / "run", 3200  # 25 rollouts of 64 steps × 2 envs
    killed: list[int] = []

    def kill_one_worker():
        deadline = time.time() + 300
        while time.time() < deadline:
            events, progress = run / "events.log", run / "progress.csv"
            if events.exists() and progress.exists() and len(progress.read_text().splitlines()) >= 3:
                pid = int(re.search(r"pids (\d+)", events.read_text()).group(1))
                os.kill(pid, signal.SIGKILL)  # from outside, by pid, mid-run
                killed.append(pid)
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one_worker, daemon=True)
    killer.start()
    train("ppo", "Pendulum-v1", steps=steps, seed=0, run_dir=str(run), overrides=PPO_SMALL, eval_every=1600,
          checkpoint_every=0, progress=False, backend="ray", workers=2)
    killer.join()
    assert killed, "the worker was never killed (the run ended first)"
    events = (run / "events.log").read_text()
    assert "2 rollout workers started on Ray" in events
    assert re.search(rf"rollout worker 0 \(pid {killed[0]}\) died \(\w+\); Ray restarts it; sending it the "
                     r"current weights and collecting its 64 steps again", events), events
    assert re.search(r"rollout worker 0 runs again as pid \d+", events), events
    record = json.loads((run / "config.json").read_text())
    assert record["options"]["backend"] == "ray" and record["options"]["workers"] == 2
    state = load_checkpoint(latest_checkpoint(run))["modules"]
    assert state["algo"]["rollouts"] == 25  # no rollout lost
    # the normaliser merged every observation of both workers: count = all env steps (+ its 1e-4 prior)
    assert float(state["normalizer"]["count"]) == pytest.approx(steps + 1e-4)
    assert len(state["env"]["workers"]) == 2
    assert [int(r[2]) for r in _rows(run / "eval.csv")] == [1600, 3200]
    # episodes (Pendulum: 200 steps) came from both workers' envs; the killed worker lost its partial one
    assert int(_rows(run / "progress.csv")[-1][6]) >= 14
    assert len(evaluate_run(run, episodes=2, progress=False)) == 2  # `rlblocks eval` of a Ray run, in-process


def test_sigkill_of_a_ray_driver_then_resume_continues(ray_address, tmp_path):
    run = tmp_path / "run"
    args = ["--algo", "ppo", "--env", "Pendulum-v1", "--steps", "2560", "--run-dir", str(run), "--no-progress",
            "--checkpoint-every", "640", "--eval-every", "0", "--backend", "ray", "--workers", "2",
            "--ray-address", ray_address, "--set", *(f"{k}={v}" for k, v in PPO_SMALL.items())]
    proc = subprocess.Popen([sys.executable, "-m", "rlblocks", "train", *args], cwd=tmp_path, env=_cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 600  # a loaded 2-core machine took over 120 s to the first checkpoint
    while not (run / "checkpoints" / "latest.json").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[0]
    assert (run / "checkpoints" / "latest.json").exists(), "no checkpoint within 600 s"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    at_kill = int(json.loads((latest_checkpoint(run) / "meta.json").read_text())["env_steps"])
    assert 0 < at_kill < 2560
    r = subprocess.run([sys.executable, "-m", "rlblocks", "resume", str(run), "--no-progress", "--ray-address",
                        ray_address], check=False, cwd=tmp_path, env=_cli_env(), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "finished at 2560 env steps" in r.stdout
    state = load_checkpoint(latest_checkpoint(run))["modules"]
    assert state["algo"]["rollouts"] == 20
    steps = [int(row[1]) for row in _rows(run / "progress.csv")]
    assert steps == sorted(set(steps)) and steps[-1] == 2560  # no row twice, none missing at the end


@pytest.mark.slow  # 4 runs + a rerun, each a process that imports torch: ~25 s on an idle 2-core machine
def test_a_sweep_of_four_runs_on_ray_completes_resumes_and_plots(ray_address, tmp_path, capsys, monkeypatch):
    from rlblocks.cli import main

    monkeypatch.chdir(tmp_path)  # relative run directories, as a user would give them
    args = ["sweep", "--algo", "sac", "--env", "Pendulum-v1", "--seeds", "0-3", "--steps", "300", "--eval-every",
            "150", "--sweep-dir", "sw", "--backend", "ray", "--no-progress", "--set", "hidden_sizes=16",
            "learning_starts=100", "batch_size=16", "eval_episodes=1", "buffer_size=1000", "log_every=100"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "4 finished" in out, out
    for seed in range(4):
        run = tmp_path / "sw" / "sac" / "Pendulum-v1" / f"seed{seed}"
        assert json.loads((latest_checkpoint(run) / "meta.json").read_text())["env_steps"] == 300
        assert "=== " in (run / "train.log").read_text()
    status = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert [r["status"] for r in status["runs"]] == ["done"] * 4
    assert main(args) == 0  # a rerun finds every run finished
    assert "0 finished, 4 skipped" in capsys.readouterr().out
    assert main(["plot", "sw"]) == 0
    assert (tmp_path / "sw" / "eval.png").exists()
    assert "sac" in (tmp_path / "sw" / "eval_summary.md").read_text()


def test_sac_async_layout_writes_eval_rows_from_its_evaluator_actor(ray_address, tmp_path, one_thread):
    run = train("sac", "Pendulum-v1", steps=600, seed=0, run_dir=str(tmp_path / "run"), eval_every=300,
                checkpoint_every=0, progress=False, backend="ray", workers=2,
                overrides={"learning_starts": "200", "hidden_sizes": "16", "batch_size": "16", "eval_episodes": "1"})
    rows = _rows(run / "eval.csv")
    assert [int(r[2]) for r in rows] == [300, 600]  # frames, from the evaluator actor
    assert int(rows[-1][1]) == 401  # epoch: one update per frame from frame 200 on, as in-process
    state = load_checkpoint(latest_checkpoint(run))["modules"]
    assert state["algo"]["updates"] == 401
    assert "2 interactors started on Ray" in (run / "events.log").read_text()


# ----------------------------------------------------------------------------- learning (slow)
@pytest.mark.slow
def test_ppo_with_two_ray_workers_solves_cartpole_within_100k_steps(ray_address, tmp_path, one_thread):
    """The in-process bar (tests/test_ppo.py): a greedy score >= 475 within 100k steps."""
    run = train("ppo", "CartPole-v1", steps=100_000, seed=0, run_dir=str(tmp_path / "run"), eval_every=5000,
                checkpoint_every=0, progress=False, backend="ray", workers=2)
    scores = [(int(r[2]), float(r[3])) for r in _rows(run / "eval.csv")]
    assert any(score >= 475 for _, score in scores), scores


@pytest.mark.slow
def test_sac_async_layout_learns_pendulum_within_20k_steps(ray_address, tmp_path, one_thread):
    run = train("sac", "Pendulum-v1", steps=20_000, seed=0, run_dir=str(tmp_path / "run"), eval_every=2000,
                checkpoint_every=0, progress=False, backend="ray", workers=2)
    scores = [(int(r[2]), float(r[3])) for r in _rows(run / "eval.csv")]
    assert scores[-1][0] == 20_000 and any(score >= -250 for _, score in scores), scores


@pytest.mark.slow  # three Ray runs: ~40 s on an idle 2-core machine
def test_a_ray_run_stopped_mid_rollout_and_resumed_equals_an_uninterrupted_one(ray_address, tmp_path, one_thread):
    """The workers' envs and generators and the unused part of the batch are in the checkpoint, so a
    Ray PPO run resumes bit-exactly (fixed learning rate: the annealing horizon is the run's total)."""
    from rlblocks.run import resume_run

    overrides = {**PPO_SMALL, "anneal_lr": "false"}
    kwargs = {"overrides": overrides, "eval_every": 0, "checkpoint_every": 0, "progress": False, "backend": "ray",
              "workers": 2}
    train("ppo", "Pendulum-v1", steps=1280, run_dir=str(tmp_path / "a"), **kwargs)
    train("ppo", "Pendulum-v1", steps=704, run_dir=str(tmp_path / "b"), **kwargs)  # 5.5 rollouts
    resume_run(tmp_path / "b", steps=1280, progress=False)
    a, b = (load_checkpoint(latest_checkpoint(tmp_path / d))["modules"] for d in ("a", "b"))

    def same(x, y, where):
        if isinstance(x, dict):
            for k in x:
                same(x[k], y[k], f"{where}.{k}")
        elif isinstance(x, (list, tuple)):
            for i, (u, v) in enumerate(zip(x, y)):
                same(u, v, f"{where}[{i}]")
        elif isinstance(x, torch.Tensor):
            assert torch.equal(x, y), where

    for module in ("policy", "normalizer", "return_normalizer", "env"):
        same(a[module], b[module], module)


def test_worker_batches_are_joined_along_each_leafs_env_axis():
    from rlblocks.distributed.workers import cat_tree, index_tree, stack_tree

    def worker(n):  # 3 steps of n envs; a recurrent actor's state [K=2, n, H=5] in extras
        return stack_tree([{"obs": torch.zeros(n, 4), "extras": {"state": torch.zeros(2, n, 5)}} for _ in range(3)])

    joined = cat_tree([worker(1), worker(3)], 1)
    assert joined["obs"].shape == (3, 4, 4) and joined["extras"]["state"].shape == (3, 2, 4, 5)
    assert index_tree(joined, 2)["extras"]["state"].shape == (2, 4, 5)


def test_every_checkpoint_of_the_async_layout_follows_the_eval_rows_it_counts(ray_address, tmp_path, one_thread,
                                                                               monkeypatch):
    """An evaluation still running in the evaluator actor when a checkpoint is written was lost for good
    by a SIGKILL soon after (the resume redoes only what comes after the checkpoint): each checkpoint
    now waits for the rows of every evaluation it counts."""
    from rlblocks.components import checkpointer

    real_save, seen = checkpointer.save_checkpoint, {}

    def save_and_look(root, agent, *a, **kw):
        path = real_save(root, agent, *a, **kw)
        eval_csv = Path(root).parent / "eval.csv"
        seen[agent.env_steps] = [int(r[2]) for r in _rows(eval_csv)] if eval_csv.exists() else []
        return path

    monkeypatch.setattr(checkpointer, "save_checkpoint", save_and_look)
    train("sac", "Pendulum-v1", steps=900, seed=0, run_dir=str(tmp_path / "run"), eval_every=300,
          checkpoint_every=300, progress=False, backend="ray", workers=2,
          overrides={"learning_starts": "200", "hidden_sizes": "16", "batch_size": "16", "eval_episodes": "1"})
    assert seen == {300: [300], 600: [300, 600], 900: [300, 600, 900]}
