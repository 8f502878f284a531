"""Faults survived in-process: an env that raises mid-episode is rebuilt and its episode dropped;
a NaN loss stops the run with one line naming the loss and the last good checkpoint stays."""

from __future__ import annotations

import math

import torch

from rlblocks.checkpoint import latest_checkpoint, load_checkpoint
from rlblocks.envs import faulty, make_vec_env
from rlblocks.errors import NonFiniteError
from rlblocks.finite import check_finite, first_non_finite
from rlblocks.run import train

PPO_SMALL = ["n_steps=64", "n_minibatches=4", "n_epochs=2", "num_envs=2"]


def test_an_env_that_raises_is_rebuilt_and_its_episode_dropped(tmp_path, one_thread):
    run = train("ppo", "FaultyPendulum-v1", steps=640, seed=0, run_dir=str(tmp_path / "run"), progress=False,
                eval_every=0, checkpoint_every=0, overrides=dict(s.split("=") for s in PPO_SMALL))
    events = (run / "events.log").read_text().splitlines()
    assert len(events) == 1 and "raised (RuntimeError: simulated crash at step 150)" in events[0], events
    assert "dropped its episode (150 steps)" in events[0]
    # env 0 lost its first episode: 640 steps over 2 envs are 320 steps each: env 1 finished one
    # 200-step episode, env 0 none (cut at 150, then 170 steps into the next)
    rows = (run / "progress.csv").read_text().splitlines()
    assert rows[-1].split(",")[6] == "1", rows[-1]


def test_rebuilt_env_is_seeded_from_the_old_one():
    def run():
        faulty.FailAt.raised = 0  # this process's first FaultyPendulum env raises at its 150th step
        vec = make_vec_env("FaultyPendulum-v1", 1, recover=True)
        vec.reset(seed=3)
        out, cut = [], []
        for t in range(160):
            obs, _, _, truncated, info = vec.step(vec.action_space.sample() * 0)
            out.append(obs.copy())
            if truncated[0]:
                cut.append((t, str(info["final_info"]["env_error"][0])))
        vec.close()
        return out, cut

    (a, cut_a), (b, cut_b) = run(), run()
    assert cut_a == cut_b == [(149, "RuntimeError: simulated crash at step 150")]
    assert all((x == y).all() for x, y in zip(a, b))  # the new env's episodes are seeded from the old env


def test_nan_loss_stops_with_one_line_naming_it_and_the_last_checkpoint_stays(tmp_path, cli):
    r = cli("train", "--algo", "sac", "--env", "NaNPendulum-v1", "--steps", "1000", "--run-dir", tmp_path / "run",
            "--checkpoint-every", "200", "--eval-every", "0", "--no-progress",
            "--set", "learning_starts=100", "hidden_sizes=32,32", "batch_size=64", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlblocks: error: critic_loss is nan at update "), lines
    ckpt = latest_checkpoint(tmp_path / "run")
    assert ckpt.name == "step_0000000200"  # NaN rewards start at step 300; the check stopped before 400
    assert first_non_finite(load_checkpoint(ckpt)["modules"]) is None


def test_check_finite_names_the_first_bad_value():
    check_finite(("a", "b"), torch.tensor([1.0, 2.0]), "here")
    try:
        check_finite(("a", "b", "c"), torch.tensor([1.0, math.inf, math.nan]), "at update 7")
    except NonFiniteError as e:
        assert str(e).startswith("b is inf at update 7")
    else:
        raise AssertionError("no error for an Inf loss")
    assert first_non_finite({"x": [torch.ones(2), {"w": torch.tensor([0.0, math.nan])}]}) == "x.1.w"
