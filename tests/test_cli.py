"""The command line, through ``python -m rlblocks`` in a subprocess.

Bad input: exactly one stderr line ``rlblocks: error: ...``, exit status 2, no traceback, and
nothing created, removed or rewritten. Happy path: a tiny train → eval → resume → list.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

TINY = ["--set", "learning_starts=200", "hidden_sizes=32,32", "log_every=100", "eval_episodes=1"]


def train_args(run_dir, steps=600, *extra):
    return ["train", "--algo", "sac", "--env", "Pendulum-v1", "--steps", str(steps), "--seed", "1",
            "--run-dir", str(run_dir), "--checkpoint-every", "300", "--eval-every", "300", "--no-progress",
            "--device", "cpu", *TINY, *extra]


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames), list(reader)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, cli):
    """A 600-step SAC run on Pendulum (checkpoints at 300 and 600), trained once per module."""
    root = tmp_path_factory.mktemp("cli")
    run_dir = root / "run"
    r = cli(*train_args(run_dir), cwd=root)
    assert r.returncode == 0, r.stderr
    return run_dir, r


def copy_run(trained_run, dest: Path) -> Path:
    shutil.copytree(trained_run[0], dest)
    return dest


# ---------------------------------------------------------------------------- happy path
def test_train_creates_run_directory(trained_run):
    run_dir, r = trained_run
    assert "Traceback" not in r.stderr
    assert "finished at 600 env steps" in r.stdout

    record = json.loads((run_dir / "config.json").read_text())
    assert (record["algo"], record["env_id"], record["seed"]) == ("sac", "Pendulum-v1", 1)
    assert record["config"]["hidden_sizes"] == [32, 32] and record["config"]["learning_starts"] == 200
    options = record["options"]
    assert (options["steps"], options["eval_every"], options["checkpoint_every"]) == (600, 300, 300)

    header, rows = read_csv(run_dir / "progress.csv")
    assert header[:3] == ["hours", "steps", "updates"] and "critic_loss" in header and "alpha" in header
    assert [int(r["steps"]) for r in rows] == [100, 200, 300, 400, 500, 600]
    assert int(rows[-1]["updates"]) == 600 - 200 + 1

    header, rows = read_csv(run_dir / "eval.csv")
    assert header == ["hours", "epoch", "frames", "score"]
    assert [int(r["frames"]) for r in rows] == [300, 600]
    assert [int(r["epoch"]) for r in rows] == [101, 401]
    # Both evaluations run the same seeded episode greedily: only the policy differs, and 300 updates
    # must have changed it (test_eval_... checks the last score against `rlblocks eval`).
    scores = [float(r["score"]) for r in rows]
    assert all(math.isfinite(s) for s in scores) and scores[0] != scores[1]

    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    ckpts = run_dir / "checkpoints"
    assert json.loads((ckpts / "latest.json").read_text()) == {"name": "step_0000000600"}
    for step in ("step_0000000300", "step_0000000600"):
        assert {p.name for p in (ckpts / step).iterdir()} == {"state.pt", "replay.npz", "meta.json"}


def test_eval_prints_return_and_changes_nothing(trained_run, cli, tree_state, tmp_path):
    run_dir = copy_run(trained_run, tmp_path / "run")
    before = tree_state(run_dir)
    r = cli("eval", run_dir, "--episodes", "2", "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[-1].startswith("return ") and lines[-1].endswith("over 2 episodes")
    _, mean, _, std = lines[-1].split()[:4]
    assert math.isfinite(float(mean)) and float(std) > 0  # two episodes of their own seeds
    # The evaluator's episode (seed 1 + 10,000, greedy) with the final checkpoint: eval.csv's last score.
    r = cli("eval", run_dir, "--episodes", "1", "--deterministic", "--seed", "10001", "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    _, evals = read_csv(run_dir / "eval.csv")
    assert evals[-1]["frames"] == "600"
    assert r.stdout.strip().splitlines()[-1] == f"return {float(evals[-1]['score']):.2f} ± 0.00 over 1 episodes"
    assert tree_state(run_dir) == before


def test_resume_continues_to_more_steps(trained_run, cli, tmp_path):
    run_dir = copy_run(trained_run, tmp_path / "run")
    r = cli("resume", run_dir, "--steps", "900", "--no-progress", "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "finished at 900 env steps" in r.stdout
    assert json.loads((run_dir / "checkpoints" / "latest.json").read_text()) == {"name": "step_0000000900"}
    _, rows = read_csv(run_dir / "progress.csv")
    assert [int(r["steps"]) for r in rows] == [100 * k for k in range(1, 10)]  # no gap, no duplicate
    assert int(rows[-1]["updates"]) == 900 - 200 + 1
    _, evals = read_csv(run_dir / "eval.csv")
    assert [int(r["frames"]) for r in evals] == [300, 600, 900]
    assert json.loads((run_dir / "config.json").read_text())["options"]["steps"] == 900
    assert len(list((run_dir / "tb").glob("events.out.tfevents.*"))) == 2  # one per session



def test_resume_finished_run_is_a_no_op(trained_run, tree_state, capsys, tmp_path):
    from rlblocks.cli import main

    run_dir = copy_run(trained_run, tmp_path / "run")
    before = tree_state(run_dir)
    assert main(["resume", str(run_dir), "--steps", "600", "--no-progress", "--device", "cpu"]) == 0
    assert "already at 600 env steps" in capsys.readouterr().out
    assert tree_state(run_dir) == before


def test_list(cli, tmp_path):
    r = cli("list", cwd=tmp_path)
    assert r.returncode == 0 and r.stderr == ""
    names = {line.split()[0] for line in r.stdout.splitlines() if line and not line.startswith(" ")}
    assert {"sac", "td3", "ddpg"} <= names
    assert "actor_lr" in r.stdout and "batch_size" in r.stdout and "preset Pendulum-*" in r.stdout
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- errors
def assert_user_error(r, *fragments: str) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    lines = r.stderr.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {lines}"
    assert lines[0].startswith("rlblocks: error: ")
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def test_invalid_mujoco_gl_is_one_line(cli, tmp_path):
    pytest.importorskip("mujoco", reason="the MuJoCo extra is not installed")
    r = cli("train", "--algo", "ppo", "--env", "HalfCheetah-v5", "--steps", "64", "--run-dir", tmp_path / "run",
            cwd=tmp_path, env_vars={"MUJOCO_GL": "not-a-backend"})
    assert_user_error(r, "HalfCheetah-v5", "MUJOCO_GL", "egl")
    assert not (tmp_path / "run" / "checkpoints").exists()


def bad_train_args(extra: list[str]) -> list[str]:
    args = ["train", "--algo", "sac", "--env", "Pendulum-v1", "--steps", "100", "--run-dir", "new_run",
            "--no-progress", "--device", "cpu"]
    for flag in ("--env", "--algo", "--steps"):  # replace a default flag's value
        if flag in extra:
            i = args.index(flag)
            del args[i:i + 2]
    return args + extra


@pytest.mark.parametrize("extra, fragments", [
    (["--env", "Pendulum-v0"], ["unknown env id 'Pendulum-v0'", "did you mean Pendulum-v1"]),
    (["--env", "CartPole-v1"], ["sac needs a continuous (Box) action space", "CartPole-v1"]),
    (["--set", "actor_lr=-1"], ["actor_lr=-1.0 is out of range", "> 0.0 and <= 1.0"]),
    (["--set", "batch_size=512", "buffer_size=100"], ["batch_size=512 is larger than buffer_size=100"]),
    (["--set", "nosuchkey=1"], ["unknown config key 'nosuchkey'"]),
])
def test_train_bad_input(extra, fragments, cli, tree_state, tmp_path):
    r = cli(*bad_train_args(extra), cwd=tmp_path)
    assert_user_error(r, *fragments)
    assert tree_state(tmp_path) == {}  # no run dir, no default runs/ tree


@pytest.mark.parametrize("extra, fragments", [
    (["--set", "acotr_lr=1"], ["did you mean actor_lr?"]),
    (["--set", "gamma=2"], ["gamma=2.0 is out of range: must be >= 0.0 and <= 1.0"]),
    (["--set", "hidden_sizes=a,b"], ["hidden_sizes='a,b' cannot be read as list"]),
    (["--set", "novalue"], ["--set 'novalue' must look like key=value"]),
    (["--algo", "sacc"], ["unknown algorithm 'sacc'", "did you mean sac?"]),
    (["--steps", "0"], ["--steps 0 must be positive"]),
    (["--eval-every", "-1"], ["--eval-every -1 must be >= 0"]),
    (["--device", "tpu"], ["--device 'tpu' is not one of auto, cpu, cuda"]),
    (["--config", "missing.json"], ["missing.json does not exist"]),
])
def test_train_more_bad_input_in_process(extra, fragments, capsys, monkeypatch, tmp_path):
    """More bad input through :func:`rlblocks.cli.main` in this process (same code path as the
    subprocess tests above, without paying a torch import per case)."""
    from rlblocks.cli import main

    monkeypatch.chdir(tmp_path)
    code = main(bad_train_args(extra))
    out, err = capsys.readouterr()
    assert_user_error(SimpleNamespace(returncode=code, stdout=out, stderr=err), *fragments)
    assert list(tmp_path.iterdir()) == []


def test_train_into_existing_run_refuses_and_keeps_files(trained_run, cli, tree_state, tmp_path):
    run_dir = copy_run(trained_run, tmp_path / "run")
    before = tree_state(tmp_path)
    r = cli(*train_args(run_dir, 300), cwd=tmp_path)
    assert_user_error(r, "already holds a run", "--resume", "--overwrite")
    assert tree_state(tmp_path) == before


def _no_checkpoint(run_dir: Path) -> None:
    shutil.rmtree(run_dir / "checkpoints")


def _truncate_state(run_dir: Path) -> None:
    state = run_dir / "checkpoints" / "step_0000000600" / "state.pt"
    state.write_bytes(state.read_bytes()[:1000])


def _garble_latest(run_dir: Path) -> None:
    (run_dir / "checkpoints" / "latest.json").write_text('{"name": "step_00')


def _dangling_latest(run_dir: Path) -> None:
    (run_dir / "checkpoints" / "latest.json").write_text('{"name": "step_0000099999"}')


def _corrupt_replay(run_dir: Path) -> None:
    replay = run_dir / "checkpoints" / "step_0000000600" / "replay.npz"
    data = bytearray(replay.read_bytes())
    data[len(data) // 2] ^= 0xFF
    replay.write_bytes(bytes(data))


def _not_a_run(run_dir: Path) -> None:
    (run_dir / "config.json").unlink()


def _args(command: str, run_dir: Path) -> list[str]:
    more = ["--steps", "900", "--no-progress"] if command == "resume" else ["--episodes", "1"]
    return [command, str(run_dir), "--device", "cpu", *more]


@pytest.mark.parametrize("command, damage, fragments", [
    # (`resume` of a run without checkpoint trains it from step 0: tests/test_run_integrity.py)
    ("eval", _no_checkpoint, ["has no checkpoint", "rlblocks resume"]),
    *[(command, damage, fragments) for command in ("resume", "eval") for damage, fragments in [
        (_truncate_state, ["state.pt", "corrupt"]),
        (_garble_latest, ["latest.json is corrupt"]),
    ]],
])
def test_resume_and_eval_bad_checkpoint(command, damage, fragments, trained_run, cli, tree_state, tmp_path):
    run_dir = copy_run(trained_run, tmp_path / "run")
    damage(run_dir)
    before = tree_state(tmp_path)
    r = cli(*_args(command, run_dir), cwd=tmp_path)
    assert_user_error(r, *fragments)
    assert tree_state(tmp_path) == before


@pytest.mark.parametrize("damage, fragments", [
    (_dangling_latest, ["step_0000099999", "is missing"]),
    (_corrupt_replay, ["replay.npz is corrupt"]),  # resume needs the replay; its checksum catches it
    (_not_a_run, ["is not a run directory"]),
])
@pytest.mark.parametrize("command", ["resume", "eval"])
def test_resume_and_eval_more_bad_checkpoints_in_process(command, damage, fragments, trained_run, tree_state,
                                                         capsys, tmp_path):
    from rlblocks.cli import main

    run_dir = copy_run(trained_run, tmp_path / "run")
    damage(run_dir)
    before = tree_state(tmp_path)
    code = main(_args(command, run_dir))
    out, err = capsys.readouterr()
    assert_user_error(SimpleNamespace(returncode=code, stdout=out, stderr=err), *fragments)
    assert tree_state(tmp_path) == before
