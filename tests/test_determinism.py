"""Seeded determinism and exact resume on CPU.

* Two runs with the same seed end with identical checkpoints.
* A run checkpointed half-way and resumed equals the uninterrupted run: every tensor of the
  final ``state.pt`` (networks, optimizers, RNG, counters, env snapshots, ...) and every array of
  ``replay.npz``.
* The same mid-episode on HalfCheetah with two envs, which needs the MuJoCo env snapshots.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rlblocks import run
from rlblocks.checkpoint import latest_checkpoint

#: State entries that may differ between equal runs: wall-clock time.
VOLATILE = {"modules.logger.hours"}
PENDULUM = {"hidden_sizes": "32,32", "learning_starts": "200", "batch_size": "64",
            "buffer_size": "1500",  # < 2000 steps: the ring wraps after the resume point
            "log_every": "500"}


def leaves(value, prefix=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from leaves(v, f"{prefix}[{i}]")
    else:
        yield prefix, value


def final_state(run_dir: Path, steps: int):
    ckpt = latest_checkpoint(run_dir)
    assert ckpt.name == f"step_{steps:010d}"
    state = torch.load(ckpt / "state.pt", map_location="cpu", weights_only=True)
    with np.load(ckpt / "replay.npz", allow_pickle=False) as data:
        replay = {k: data[k] for k in data.files}
    return state, replay


def assert_same_run(a: Path, b: Path, steps: int) -> None:
    (sa, ra), (sb, rb) = final_state(a, steps), final_state(b, steps)
    la, lb = dict(leaves(sa)), dict(leaves(sb))
    assert la.keys() == lb.keys()
    tensors = 0
    for key, va in la.items():
        vb = lb[key]
        if key in VOLATILE:
            continue
        if isinstance(va, torch.Tensor):
            tensors += 1
            assert va.dtype == vb.dtype and va.shape == vb.shape, key
            assert torch.equal(va, vb), f"{key} differs (max |diff| {(va.double() - vb.double()).abs().max()})"
        else:
            assert va == vb, f"{key}: {va!r} != {vb!r}"
    assert tensors > 20  # networks, targets, optimizer moments, RNG, env state ...
    assert sa["counters"]["env_steps"] == steps
    assert ra.keys() == rb.keys()
    for key in ra:
        np.testing.assert_array_equal(ra[key], rb[key], err_msg=f"replay.npz {key}")


def progress_rows(run_dir: Path, columns):
    with open(run_dir / "progress.csv", newline="") as fh:
        return [{c: row[c] for c in columns} for row in csv.DictReader(fh)]


def train(algo, env_id, run_dir, steps, overrides, seed=3, checkpoint_every=0):
    return run.train(algo, env_id, steps=steps, seed=seed, run_dir=str(run_dir), overrides=dict(overrides),
                     eval_every=0, checkpoint_every=checkpoint_every, device="cpu", progress=False)


@pytest.mark.parametrize("algo,extra", [("sac", {}), ("td3", {}), ("ddpg", {"merl": "true"})],
                         ids=["sac", "td3", "ddpg-merl-heads"])
def test_same_seed_same_result_and_exact_resume(tmp_path, algo, extra, one_thread):
    config = {**PENDULUM, **extra}
    full = train(algo, "Pendulum-v1", tmp_path / "full", 2000, config)
    again = train(algo, "Pendulum-v1", tmp_path / "again", 2000, config)
    assert_same_run(full, again, 2000)

    # checkpoint at 1000 (end of the first session), then resume to 2000 in a new agent
    part = train(algo, "Pendulum-v1", tmp_path / "part", 1000, config)
    state_1000, _ = final_state(part, 1000)
    assert state_1000["modules"]["algo"]["updates"] == 1000 - 200 + 1
    run.resume_run(part, 2000, device="cpu", progress=False)
    assert sorted(p.name for p in (part / "checkpoints").glob("step_*")) == ["step_0000001000", "step_0000002000"]
    assert_same_run(full, part, 2000)
    cols = ["steps", "updates", "episodes", "train_return", "critic_loss", "actor_loss"]
    cols += ["ve_loss", "fs_loss"] if extra.get("merl") else []
    rows = progress_rows(full, cols)
    assert [r["steps"] for r in rows] == ["500", "1000", "1500", "2000"]
    assert progress_rows(part, cols) == rows
    assert json.loads((part / "config.json").read_text())["options"]["steps"] == 2000

    # a different seed gives a different run (the comparison above is not vacuous)
    other = train(algo, "Pendulum-v1", tmp_path / "other", 300, {**config, "learning_starts": "100"}, seed=4)
    base = train(algo, "Pendulum-v1", tmp_path / "base", 300, {**config, "learning_starts": "100"})
    so, _ = final_state(other, 300)
    sb, _ = final_state(base, 300)
    assert not torch.equal(so["modules"]["critic"]["q"]["net.layers.0.weight"],
                           sb["modules"]["critic"]["q"]["net.layers.0.weight"])


def test_exact_resume_mid_episode_halfcheetah(tmp_path, one_thread):
    """1000-step episodes, two envs: the checkpoint at 300 env steps is 150 steps into each
    episode, so the resumed run must restore the MuJoCo states and the env RNGs."""
    overrides = {"hidden_sizes": "32,32", "learning_starts": "100", "batch_size": "64", "num_envs": "2",
                 "buffer_size": "10000", "log_every": "200"}
    full = train("sac", "HalfCheetah-v5", tmp_path / "full", 600, overrides, checkpoint_every=300)
    part = train("sac", "HalfCheetah-v5", tmp_path / "part", 300, overrides, checkpoint_every=300)
    state_300, _ = final_state(part, 300)
    env_state = state_300["modules"]["env"]
    assert env_state["episode_length"].tolist() == [150, 150]  # mid-episode
    snaps = json.loads(env_state["snapshots"])
    assert len(snaps) == 2 and all("mujoco" in s and s["elapsed"] == 150 for s in snaps)
    run.resume_run(part, 600, device="cpu", progress=False)
    assert_same_run(full, part, 600)
    cols = ["steps", "updates", "critic_loss", "actor_loss"]
    assert progress_rows(part, cols) == progress_rows(full, cols)
