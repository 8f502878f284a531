"""Logged metrics after a resume equal the uninterrupted run's, every column of progress.csv.

DDPG/TD3 with ``policy_delay > 1`` log, at the critic steps between two actor steps, the loss of
the last actor step: that value is part of the checkpoint. The checkpoint here falls between two
actor steps, so the first update after the resume logs the saved value.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from rlblocks import run
from rlblocks.checkpoint import latest_checkpoint

#: wall-clock columns, the only ones that may differ
VOLATILE = {"hours", "steps_per_s"}
SMALL = {"hidden_sizes": "32,32", "batch_size": "32", "log_every": "100",
         "learning_starts": "101"}  # 100 updates at the checkpoint (step 200): the next one is a critic step only
RECURRENT = {**SMALL, "arch": "lstm", "rnn_size": "16", "seq_len": "8", "batch_size": "8"}


def progress(run_dir: Path) -> list[dict]:
    with open(run_dir / "progress.csv", newline="") as fh:
        return [{k: v for k, v in row.items() if k not in VOLATILE} for row in csv.DictReader(fh)]


@pytest.mark.parametrize("algo,overrides,delay", [("td3", SMALL, 2), ("ddpg", {**SMALL, "policy_delay": "3"}, 3),
                                                  ("td3", RECURRENT, 2)], ids=["td3", "ddpg-delay3", "td3-lstm"])
def test_progress_rows_after_resume_equal_the_uninterrupted_run(algo, overrides, delay, tmp_path, one_thread):
    def train(name, steps):
        return run.train(algo, "Pendulum-v1", steps=steps, seed=3, run_dir=str(tmp_path / name),
                         overrides=dict(overrides), eval_every=0, checkpoint_every=0, device="cpu", progress=False)

    full = train("full", 400)
    part = train("part", 200)
    state = torch.load(latest_checkpoint(part) / "state.pt", map_location="cpu", weights_only=True)
    algo_state = state["modules"]["algo"]
    assert algo_state["updates"] == 100 and (algo_state["updates"] + 1) % delay != 0  # between actor steps
    run.resume_run(part, 400, device="cpu", progress=False)
    rows = progress(full)
    assert [r["steps"] for r in rows] == ["100", "200", "300", "400"]
    assert {"critic_loss", "actor_loss", "q_mean"} <= rows[0].keys()
    assert progress(part) == rows
    assert algo_state["last_actor_loss"] != 0  # what the resumed session started from


def test_checkpoint_without_the_last_actor_loss_still_loads(tmp_path, one_thread):
    """Checkpoints written before the last actor loss was saved load with it zero (a fresh start's)."""
    from rlblocks.registry import RunOptions, build_agent, get_algo
    from rlblocks.run import resolve_config

    spec = get_algo("td3")
    cfg = resolve_config(spec, "Pendulum-v1", overrides=dict(SMALL))
    opts = RunOptions(None, 400, eval_every=0, checkpoint_every=0, progress=False, tensorboard=False)
    agent = build_agent(spec, "Pendulum-v1", cfg, 0, torch.device("cpu"), opts)
    try:
        agent.train(150)
        state = agent.algo.state_dict()
        assert state["last_actor_loss"] != 0
        del state["last_actor_loss"]
        agent.algo.load_state_dict(state)
        assert agent.algo._last_actor_loss == 0
    finally:
        agent.env.close()
