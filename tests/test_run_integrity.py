"""Run-directory integrity under kills, concurrency and bad input.

Each test names the defect it guards against; each failed on the code before the fix:

* a kill at any point of a checkpoint save leaves a loadable checkpoint (fault injection between
  the file operations of the save), and a step is never saved twice;
* ``resume`` drops no row unless training really continues;
* one process per run directory (a lock that names the live process; a killed holder leaves none);
* Ctrl-C with ``--async-envs`` and SIGTERM save and exit 130 / 143;
* ``train --resume`` with other settings is refused; a run without checkpoint starts from step 0;
* bad input stops with one line and leaves no directory; hand-edited or crafted files are refused;
* orphaned temporaries are removed when a run is opened.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rlblocks.checkpoint import (
    _sha256,
    latest_checkpoint,
    load_checkpoint,
    restore_agent,
    save_checkpoint,
    state_leaves,
)

TINY = ["--set", "learning_starts=100", "hidden_sizes=16,16", "batch_size=32", "log_every=50", "eval_episodes=1"]
STEP = re.compile(r"^step_\d{10}$")


def train_args(run_dir, steps, *extra, checkpoint_every=100, eval_every=0, seed=1):
    return ["train", "--algo", "sac", "--env", "Pendulum-v1", "--steps", str(steps), "--seed", str(seed),
            "--run-dir", str(run_dir), "--checkpoint-every", str(checkpoint_every), "--eval-every", str(eval_every),
            "--no-progress", "--device", "cpu", *TINY, *extra]


def one_line_error(r, *fragments: str) -> str:
    """``r`` (returncode, stdout, stderr) ended with exactly one ``rlblocks: error:`` line and status 2."""
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr + r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlblocks: error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def main_in_process(args, capsys) -> SimpleNamespace:
    from rlblocks.cli import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=out, stderr=err)


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def popen(args, cwd: Path, **kw) -> subprocess.Popen:
    """``python -m rlblocks ARGS`` in the background, in its own process group (as a shell job)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "rlblocks", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, **kw)


def wait_for(predicate, timeout: float = 120, what: str = "condition", proc: subprocess.Popen | None = None):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended ({proc.returncode}) before {what}: {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def has_rows(path: Path, n: int = 1):
    return lambda: path.exists() and len(path.read_text().splitlines()) > n


def reseal(ckpt: Path) -> None:
    """Update ``meta.json``'s checksums after a file of ``ckpt`` was edited (a crafted checkpoint)."""
    meta = json.loads((ckpt / "meta.json").read_text())
    meta["files"] = {name: _sha256(ckpt / name) for name in meta["files"] if (ckpt / name).exists()}
    (ckpt / "meta.json").write_text(json.dumps(meta))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, cli):
    """A 230-step run: checkpoints at 100, 200 and (end) 230; progress rows at 50..200 and the
    end-of-run row at 230 (written after the last checkpoint)."""
    root = tmp_path_factory.mktemp("integrity")
    r = cli(*train_args(root / "run", 230), cwd=root)
    assert r.returncode == 0, r.stderr
    return root / "run"


def copy_run(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


# ============================================================================ 1. kills during a save
#: Calls before which the fault injection kills the saving process: every file-system operation of
#: the save, at any depth (builtins and Python functions, by qualified name).
FS_CALLS = frozenset({
    "open", "io.open", "Path.open", "replace", "rename", "Path.rename", "Path.replace", "mkdir", "Path.mkdir",
    "unlink", "Path.unlink", "rmtree", "rmdir", "remove", "fsync", "savez", "save", "BufferedWriter.write",
    "BufferedWriter.close", "TextIOWrapper.write", "TextIOWrapper.close", "_sha256", "write_record",
})


def _save_in_child(root: Path, agent, kill_at: int | None) -> tuple[bool, int]:
    """Fork; the child saves ``agent`` under ``root`` and SIGKILLs itself before file operation
    ``kill_at``. Returns ``(killed, operations seen)``."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read)
        seen = [0]

        def profile(frame, event, arg):
            if event == "c_call":
                name = getattr(arg, "__qualname__", "")
            elif event == "call":
                name = frame.f_code.co_qualname
            else:
                return
            if name in FS_CALLS:
                if seen[0] == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                seen[0] += 1

        try:
            sys.setprofile(profile)
            save_checkpoint(root, agent)
        finally:
            sys.setprofile(None)
            os.write(write, str(seen[0]).encode())
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read) as fh:
        text = fh.read()
    return os.WIFSIGNALED(status), int(text or -1)


def _small_agent(run_dir=None):
    from rlblocks.registry import RunOptions, build_agent, get_algo
    from rlblocks.run import resolve_config

    spec = get_algo("sac")
    cfg = resolve_config(spec, "Pendulum-v1", None, {"hidden_sizes": "16,16", "learning_starts": "50",
                                                     "batch_size": "16", "buffer_size": "1000"})
    return build_agent(spec, "Pendulum-v1", cfg, 0, torch.device("cpu"),
                       RunOptions(run_dir, 1000, 0, 0, False, tensorboard=False))


@pytest.mark.parametrize("case", ["new step", "leftover of a killed save at the same step",
                                  "the latest step again (end of a run)"])
def test_kill_at_every_file_operation_of_a_save_leaves_a_loadable_checkpoint(case, tmp_path, one_thread):
    agent = _small_agent()
    template = tmp_path / "template" / "checkpoints"
    agent.train(100)
    save_checkpoint(template, agent)  # step 100: the good checkpoint
    agent.train(200)
    if case.startswith("leftover"):  # step_200 renamed in, then killed before latest.json named it
        save_checkpoint(template, agent)
        (template / "latest.json").write_text(json.dumps({"name": "step_0000000100"}))
    if case.startswith("the latest"):  # the old code removed step_200, then renamed the new one in
        save_checkpoint(template, agent)
    fresh = _small_agent()
    killed_at, seen, k = [], None, 0
    while seen is None or k <= seen:
        root = tmp_path / f"k{k}" / "checkpoints"
        shutil.copytree(template, root)
        killed, count = _save_in_child(root, agent, k)
        if not killed:
            seen = count  # the save completed: it has `count` file operations
            # the injection reached the save's file operations (a repeated save only reads latest.json)
            assert count > 20 or (case.startswith("the latest") and count > 0)
        else:
            killed_at.append(k)
        ckpt = latest_checkpoint(root.parent)  # always a complete checkpoint, old or new
        assert ckpt.name in ("step_0000000100", "step_0000000200")
        restore_agent(fresh, ckpt, with_buffers=True, state=load_checkpoint(ckpt))
        assert fresh.env_steps == int(ckpt.name[5:])
        if not killed:
            assert ckpt.name == "step_0000000200"
        shutil.rmtree(root.parent)
        k += 1
    assert len(killed_at) == seen  # killed before each file operation in turn


def test_saving_the_latest_step_again_writes_nothing(tmp_path, tree_state, one_thread):
    agent = _small_agent()
    agent.train(100)
    root = tmp_path / "checkpoints"
    save_checkpoint(root, agent)
    before = tree_state(tmp_path)
    mtime = (root / "step_0000000100" / "state.pt").stat().st_mtime_ns
    assert save_checkpoint(root, agent) == root / "step_0000000100"  # the old code removed it, then rewrote it
    assert tree_state(tmp_path) == before and (root / "step_0000000100" / "state.pt").stat().st_mtime_ns == mtime


def test_a_run_saves_its_last_step_once(tmp_path, monkeypatch, capsys):
    """--steps a multiple of --checkpoint-every (as the defaults 100,000 / 50,000): one save per step."""
    saved = []
    real = torch.save

    def counting_save(obj, f, *a, **kw):
        saved.append(Path(f).parent.name)
        return real(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", counting_save)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    r = main_in_process(train_args(tmp_path / "run", 200, checkpoint_every=100), capsys)
    assert r.returncode == 0, r.stderr
    assert [re.sub(r"-\d+$", "", s) for s in saved] == [".tmp-step_0000000100", ".tmp-step_0000000200"]


# ============================================================================ 2. resume deletes nothing
def test_resume_of_a_finished_run_keeps_the_end_of_run_row(finished_run, cli, tree_state, tmp_path):
    run_dir = copy_run(finished_run, tmp_path / "run")
    assert [r["steps"] for r in rows(run_dir / "progress.csv")] == ["50", "100", "150", "200", "230"]
    before = tree_state(run_dir)
    r = cli("resume", run_dir, "--no-progress", "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "already at 230 env steps" in r.stdout
    assert tree_state(run_dir) == before  # the old code dropped the row at 230


def test_resume_that_fails_after_loading_keeps_every_row(finished_run, cli, tree_state, tmp_path):
    run_dir = copy_run(finished_run, tmp_path / "run")
    ckpt = latest_checkpoint(run_dir)
    state = torch.load(ckpt / "state.pt", weights_only=True)
    snaps = json.loads(state["modules"]["env"]["snapshots"])
    snaps[0]["attrs"]["state"] = {"array": [1.0, 2.0, 3.0], "dtype": "float64"}  # wrong shape
    state["modules"]["env"]["snapshots"] = json.dumps(snaps)
    torch.save(state, ckpt / "state.pt")
    reseal(ckpt)
    before = tree_state(run_dir)
    r = cli("resume", run_dir, "--steps", "400", "--no-progress", "--device", "cpu", cwd=tmp_path)
    one_line_error(r, "env snapshots", "'state'")
    assert tree_state(run_dir) == before


# ============================================================================ 3. one process per run
def test_second_process_on_a_live_run_is_refused_and_names_it(finished_run, cli, tree_state, tmp_path):
    run_dir = copy_run(finished_run, tmp_path / "run")
    live = popen(["resume", run_dir, "--steps", "1000000", "--no-progress", "--device", "cpu"], tmp_path)
    try:
        wait_for(has_rows(run_dir / "progress.csv", 6), what="the live run's first row", proc=live)
        for args in (["resume", run_dir, "--steps", "2000000", "--no-progress", "--device", "cpu"],
                     train_args(run_dir, 300, "--overwrite"),
                     train_args(run_dir, 2_000_000, "--resume")):
            r = cli(*args, cwd=tmp_path)
            one_line_error(r, "is in use by process", str(live.pid), "resume", f"kill -INT {live.pid}")
        assert (run_dir / "config.json").exists() and latest_checkpoint(run_dir)
    finally:
        live.send_signal(signal.SIGINT)
        _, err = live.communicate(timeout=120)
    assert live.returncode == 130, err
    steps = [int(r["steps"]) for r in rows(run_dir / "progress.csv")]
    assert steps == sorted(set(steps)) and steps[:4] == [50, 100, 150, 200]  # one writer: no duplicate


def test_a_killed_holder_leaves_no_stuck_lock(finished_run, cli, tmp_path):
    run_dir = copy_run(finished_run, tmp_path / "run")
    live = popen(["resume", run_dir, "--steps", "1000000", "--no-progress", "--device", "cpu"], tmp_path)
    wait_for(has_rows(run_dir / "progress.csv", 6), what="the live run's first row", proc=live)
    live.kill()
    live.wait()
    done = json.loads((latest_checkpoint(run_dir) / "meta.json").read_text())["env_steps"]
    r = cli("resume", run_dir, "--steps", done + 100, "--no-progress", "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"finished at {done + 100} env steps" in r.stdout


def test_lock_in_process():
    """Two opens of one run in one process conflict too (a library user running two trainings)."""
    import tempfile

    from rlblocks.rundir import RunBusyError, RunLock

    with tempfile.TemporaryDirectory() as d, RunLock(d), pytest.raises(RunBusyError, match=f"process {os.getpid()}"):
        RunLock(d).acquire()


# ============================================================================ 4. signals
def test_ctrl_c_in_a_terminal_with_async_envs_saves_and_exits_130(tmp_path, cli):
    run_dir = tmp_path / "run"
    proc = popen(train_args(run_dir, 1_000_000, "--async-envs", "--num-envs", "2", checkpoint_every=0), tmp_path)
    wait_for(has_rows(run_dir / "progress.csv", 2), what="the first rows", proc=proc)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal does: the driver and the env workers get it
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "stopped at" in out and "checkpoint" in out
    steps = json.loads((latest_checkpoint(run_dir) / "meta.json").read_text())["env_steps"]
    assert steps >= 100
    r = cli("resume", run_dir, "--steps", str(steps + 100), "--no-progress", "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0 and f"finished at {steps + 100} env steps" in r.stdout, r.stderr


def test_sigterm_saves_and_exits_143(tmp_path):
    run_dir = tmp_path / "run"
    proc = popen(train_args(run_dir, 1_000_000, checkpoint_every=0), tmp_path)
    wait_for(has_rows(run_dir / "progress.csv", 2), what="the first rows", proc=proc)
    proc.terminate()  # SIGTERM to the process only, as `kill PID` and schedulers do
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "SIGTERM: saving a checkpoint" in err
    ckpt = latest_checkpoint(run_dir)
    assert json.loads((ckpt / "meta.json").read_text())["env_steps"] >= 100


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["foreground", "background-job"])
def test_ctrl_c_on_a_sweep_stops_its_runs_as_stopped_not_failed(tmp_path, sigint_ignored):
    """Also when started as a shell's background job, which inherits SIGINT ignored (`kill -INT`)."""
    sweep = tmp_path / "sw"
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None
    proc = popen(["sweep", "--algo", "sac", "--env", "Pendulum-v1", "--seeds", "0", "--steps", "1000000",
                  "--sweep-dir", sweep, "--eval-every", "0", "--checkpoint-every", "0", "--no-progress",
                  "--device", "cpu", *TINY], tmp_path, preexec_fn=ignore)
    run_dir = sweep / "sac" / "Pendulum-v1" / "seed0"
    wait_for(has_rows(run_dir / "progress.csv", 2), what="the run's first rows", proc=proc)
    proc.send_signal(signal.SIGINT)  # the sweep asks its runs to checkpoint and stop
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopped at" in out and "FAILED" not in out, out
    assert json.loads((sweep / "sweep.json").read_text())["runs"][0]["status"] == "stopped"
    assert latest_checkpoint(run_dir)


# ============================================================================ 5. conflicting --resume
@pytest.mark.parametrize("change, fragments", [
    ({"--seed": "2"}, ["seed (1 in the run, 2 asked)"]),
    ({"--algo": "td3"}, ["algo (sac in the run, td3 asked)"]),
    ({"--env": "MountainCarContinuous-v0"}, ["env_id (Pendulum-v1 in the run, MountainCarContinuous-v0 asked)"]),
    ({"--set": "actor_lr=0.002"}, ["actor_lr (0.001 in the run, 0.002 asked)"]),  # 0.001: the Pendulum preset
    ({"--seed": "3", "--set": "hidden_sizes=8,8"}, ["seed (1 in the run, 3 asked)", "hidden_sizes (16,16 in the run, 8,8 asked)"]),
])
def test_train_resume_with_other_settings_is_refused(change, fragments, finished_run, capsys, tree_state, tmp_path,
                                                      monkeypatch):
    run_dir = copy_run(finished_run, tmp_path / "run")
    args = train_args(run_dir, 400, "--resume")
    for flag, value in change.items():
        if flag == "--set":
            args += ["--set", value]
        else:
            args[args.index(flag) + 1] = value
    before = tree_state(tmp_path)
    monkeypatch.chdir(tmp_path)
    one_line_error(main_in_process(args, capsys), "holds a run with other settings", *fragments)
    assert tree_state(tmp_path) == before


# ============================================================================ 6. half-made runs
def _register_dict_env():
    import gymnasium as gym

    if "DictObsTest-v0" in gym.registry:
        return

    class DictObs(gym.Env):
        observation_space = gym.spaces.Dict({"observation": gym.spaces.Box(-1, 1, (3,)),
                                             "desired_goal": gym.spaces.Box(-1, 1, (2,))})
        action_space = gym.spaces.Box(-1, 1, (2,))

        def reset(self, seed=None, options=None):
            super().reset(seed=seed)
            return self.observation_space.sample(), {}

        def step(self, action):
            return self.observation_space.sample(), 0.0, False, False, {}

    gym.register("DictObsTest-v0", entry_point=lambda **kw: DictObs(), max_episode_steps=10)


@pytest.mark.parametrize("extra, fragments", [
    (["--env", "DictObsTest-v0"], ["DictObsTest-v0 has Dict(", "flat Box"]),
    (["--seed", "-1"], ["--seed -1 must be an integer from 0"]),
    (["--set", "buffer_size=1000000000000"], ["buffer_size=1000000000000 needs about", "GiB", "--set buffer_size="]),
    (["--set", "hidden_sizes=300000,300000"], ["hidden_sizes=300000,300000 needs about", "GiB"]),
    # goal-env settings on an env without goals were saved in config.json and did nothing
    (["--set", "her=final"], ["her=final acts only on goal envs", "Pendulum-v1 is not one"]),
    (["--set", "her_terminal=true"], ["her_terminal=True acts only on goal envs"]),
    (["--set", "her_clip_target=true"], ["her_clip_target=True acts only on goal envs"]),
])
def test_bad_input_stops_before_the_run_directory_exists(extra, fragments, capsys, monkeypatch, tmp_path):
    _register_dict_env()
    monkeypatch.chdir(tmp_path)
    args = train_args("new_run", 200)
    for flag, value in zip(extra[::2], extra[1::2]):
        if flag == "--set" or flag not in args:
            args += [flag, value]  # a later --set wins
        else:
            args[args.index(flag) + 1] = value
    one_line_error(main_in_process(args, capsys), *fragments)
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_during_start_up_leaves_nothing(capsys, monkeypatch, tmp_path):
    import rlblocks.run.session

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(rlblocks.run.session, "build_agent", interrupted)
    monkeypatch.chdir(tmp_path)
    r = main_in_process(train_args(Path("a") / "b" / "new_run", 200), capsys)
    assert r.returncode == 130 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == ["rlblocks: interrupted (SIGINT); nothing was saved since the last checkpoint"]
    assert list(tmp_path.iterdir()) == []  # not even the parents it made


@pytest.mark.parametrize("command", ["train --resume", "resume"])
def test_run_killed_before_its_first_checkpoint_starts_again_from_step_0(command, tmp_path, cli):
    run_dir = tmp_path / "run"
    proc = popen(train_args(run_dir, 1_000_000, checkpoint_every=0), tmp_path)
    wait_for(has_rows(run_dir / "progress.csv", 3), what="rows", proc=proc)
    proc.kill()
    proc.wait()
    assert not (run_dir / "checkpoints").exists() and (run_dir / "config.json").exists()
    args = (train_args(run_dir, 200, "--resume") if command == "train --resume"
            else ["resume", run_dir, "--steps", "200", "--no-progress", "--device", "cpu"])
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "no checkpoint yet: training it from step 0" in r.stdout and "finished at 200 env steps" in r.stdout
    assert [r["steps"] for r in rows(run_dir / "progress.csv")] == ["50", "100", "150", "200"]
    assert len(list((run_dir / "tb").iterdir())) == 1  # the killed session's events are gone


# ============================================================================ 7. one line, not a traceback
@pytest.mark.parametrize("content, fragments", [
    ({"inherits": 5}, ['"inherits" is 5', "list of file paths"]),
    ({"inherits": [1]}, ['"inherits" is [1]']),
    ({"updates": [1, 2]}, ['"updates" is [1, 2]', "must be an object"]),
])
def test_config_file_of_the_wrong_shape(content, fragments, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfg.json").write_text(json.dumps(content))
    one_line_error(main_in_process(train_args("new_run", 200, "--config", "cfg.json"), capsys), *fragments)
    assert [p.name for p in tmp_path.iterdir()] == ["cfg.json"]


def _edit_record(run_dir: Path, edit) -> None:
    record = json.loads((run_dir / "config.json").read_text())
    edit(record)
    (run_dir / "config.json").write_text(json.dumps(record))


@pytest.mark.parametrize("edit, fragments", [
    (lambda r: r.update(seed="abc"), ["field seed", "'abc'", "non-negative integer"]),
    (lambda r: r.pop("algo"), ["field algo", "is missing"]),
    (lambda r: r.update(config=[1]), ["field config", "JSON object"]),
    (lambda r: r["options"].update(steps="x"), ["field options.steps", "'x'"]),
    (lambda r: r["config"].update(batch_size="many"), ["batch_size='many' cannot be read as int"]),
], ids=["seed", "algo", "config", "options.steps", "config-value"])
@pytest.mark.parametrize("command", ["resume", "eval"])
def test_hand_edited_config_json(command, edit, fragments, finished_run, capsys, tree_state, tmp_path):
    run_dir = copy_run(finished_run, tmp_path / "run")
    _edit_record(run_dir, edit)
    before = tree_state(tmp_path)
    args = [command, run_dir, "--device", "cpu", *(["--no-progress"] if command == "resume" else ["--episodes", "1"])]
    one_line_error(main_in_process(args, capsys), *fragments)
    assert tree_state(tmp_path) == before


def test_disk_full_during_a_checkpoint_keeps_the_previous_one(capsys, monkeypatch, tmp_path):
    real = torch.save
    calls = []

    def full_disk(obj, f, *a, **kw):
        calls.append(f)
        if len(calls) == 2:  # the second checkpoint (step 200)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", full_disk)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    run_dir = tmp_path / "run"
    r = main_in_process(train_args(run_dir, 300, checkpoint_every=100), capsys)
    one_line_error(r, "No space left on device", "step_0000000100 is intact")
    assert latest_checkpoint(run_dir).name == "step_0000000100"
    load_checkpoint(latest_checkpoint(run_dir))
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["latest.json", "step_0000000100"]


def test_replay_with_pos_out_of_range(finished_run, capsys, tree_state, tmp_path):
    run_dir = copy_run(finished_run, tmp_path / "run")
    ckpt = latest_checkpoint(run_dir)
    with np.load(ckpt / "replay.npz") as data:
        arrays = {k: data[k] for k in data.files}
    arrays["pos"] = np.int64(10**6)
    with open(ckpt / "replay.npz", "wb") as fh:
        np.savez(fh, **arrays)
    reseal(ckpt)
    before = tree_state(tmp_path)
    one_line_error(main_in_process(["resume", run_dir, "--steps", "400", "--no-progress", "--device", "cpu"], capsys),
                   "replay buffer", "pos=1000000 outside")
    assert tree_state(tmp_path) == before


@pytest.mark.parametrize("attr, value", [
    ("state", {"array": "abc", "dtype": "float64"}),
    ("np_random", {"value": 1}),  # not an attribute the env saves
    ("last_u", {"value": "abc"}),
])
@pytest.mark.parametrize("command", ["resume", "eval"])
def test_env_snapshot_with_a_wrong_attribute(command, attr, value, finished_run, capsys, tree_state, tmp_path):
    run_dir = copy_run(finished_run, tmp_path / "run")
    ckpt = latest_checkpoint(run_dir)
    state = torch.load(ckpt / "state.pt", weights_only=True)
    snaps = json.loads(state["modules"]["env"]["snapshots"])
    snaps[0]["attrs"][attr] = value
    state["modules"]["env"]["snapshots"] = json.dumps(snaps)
    torch.save(state, ckpt / "state.pt")
    reseal(ckpt)
    before = tree_state(tmp_path)
    args = [command, run_dir, "--device", "cpu", *(["--steps", "400", "--no-progress"] if command == "resume"
                                                     else ["--episodes", "1"])]
    one_line_error(main_in_process(args, capsys), "env snapshots do not fit Pendulum-v1", repr(attr))
    assert tree_state(tmp_path) == before


def test_eval_builds_no_replay_buffer(finished_run, capsys, tmp_path):
    from rlblocks.run import load_run_agent

    run_dir = copy_run(finished_run, tmp_path / "run")
    agent, _ = load_run_agent(run_dir, for_training=False, device="cpu")
    assert "replay" not in agent.modules and "algo" not in agent.modules
    # a buffer far larger than the machine does not stop an evaluation
    _edit_record(run_dir, lambda r: r["config"].update(buffer_size=10**13))
    r = main_in_process(["eval", run_dir, "--episodes", "1", "--device", "cpu"], capsys)
    assert r.returncode == 0, r.stderr
    one_line_error(main_in_process(["resume", run_dir, "--steps", "300", "--no-progress", "--device", "cpu"], capsys),
                   "buffer_size=10000000000000 needs about")


# ============================================================================ crafted pickle
class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # unpickling would create the marker file


@pytest.mark.parametrize("command", ["resume", "eval"])
def test_crafted_pickle_is_refused_and_never_runs(command, finished_run, cli, tree_state, tmp_path):
    run_dir = copy_run(finished_run, tmp_path / "run")
    marker = tmp_path / "PWNED"
    ckpt = latest_checkpoint(run_dir)
    with open(ckpt / "state.pt", "wb") as fh:
        pickle.dump({"modules": _Payload(marker)}, fh)
    reseal(ckpt)  # the checksum matches: only the loader stands in the way
    before = tree_state(tmp_path)
    args = [command, run_dir, "--device", "cpu", *(["--no-progress"] if command == "resume" else ["--episodes", "1"])]
    one_line_error(cli(*args, cwd=tmp_path), "state.pt cannot be read")
    assert not marker.exists()
    assert tree_state(tmp_path) == before


# ============================================================================ 8. orphans, 10. latest.json
def test_orphaned_temporaries_are_removed_when_a_run_is_opened(finished_run, cli, tmp_path):
    run_dir = copy_run(finished_run, tmp_path / "run")
    ckpts = run_dir / "checkpoints"
    orphans = [ckpts / ".tmp-step_0000000300-4242", ckpts / ".old-step_0000000200-4242"]
    for d in orphans:
        d.mkdir()
        (d / "state.pt").write_bytes(b"x" * 1000)
    files = [ckpts / ".latest.json.tmp4242", run_dir / ".config.json.tmp4242", run_dir / "progress.csv.tmp4242"]
    for f in files:
        f.write_text("partial")
    r = cli("resume", run_dir, "--no-progress", "--device", "cpu", cwd=tmp_path)  # a no-op resume cleans too
    assert r.returncode == 0 and "already at 230" in r.stdout, r.stderr
    assert not any(p.exists() for p in orphans + files)
    assert sorted(p.name for p in ckpts.iterdir()) == ["latest.json", "step_0000000100", "step_0000000200",
                                                        "step_0000000230"]


@pytest.mark.parametrize("name", ["../../outside", "/etc", "step_0000000230/../../..", 7])
@pytest.mark.parametrize("command", ["resume", "eval"])
def test_latest_json_must_name_a_checkpoint_inside_the_run(name, command, finished_run, capsys, tree_state, tmp_path):
    run_dir = copy_run(finished_run, tmp_path / "run")
    outside = tmp_path / "outside"
    shutil.copytree(latest_checkpoint(run_dir), outside)  # a valid checkpoint, but not this run's
    (run_dir / "checkpoints" / "latest.json").write_text(json.dumps({"name": name}))
    before = tree_state(tmp_path)
    args = [command, run_dir, "--device", "cpu", *(["--no-progress"] if command == "resume" else ["--episodes", "1"])]
    one_line_error(main_in_process(args, capsys), "not a step_* directory")
    assert tree_state(tmp_path) == before


# ============================================================================ 9. messages
def test_video_into_an_unwritable_place_names_the_path(finished_run, capsys, tmp_path):
    (tmp_path / "afile").write_text("")
    line = one_line_error(main_in_process(["eval", finished_run, "--episodes", "1", "--device", "cpu",
                                           "--video", tmp_path / "afile" / "out.mp4"], capsys),
                          "afile is a file")
    assert "EGL" not in line and "MuJoCo" not in line


def test_an_optional_package_prints_nothing_before_an_error(cli, tmp_path):
    """gymnasium-robotics prints notices on import; they must not precede an unrelated error."""
    fake = tmp_path / "site" / "gymnasium_robotics"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("import sys, warnings\nprint('a notice about AdroitHand v1 rewards')\n"
                                      "print('notice on stderr', file=sys.stderr)\nwarnings.warn('a warning')\n")
    r = cli("train", "--algo", "sac", "--env", "NoSuchEnv-v0", cwd=tmp_path,
            env_vars={"PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")])})
    one_line_error(r, "unknown env id 'NoSuchEnv-v0'")
    assert r.stdout == ""


# ============================================================================ soak
def _final_state(run_dir: Path):
    ckpt = latest_checkpoint(run_dir)
    state = torch.load(ckpt / "state.pt", weights_only=True)
    with np.load(ckpt / "replay.npz") as data:
        replay = {k: data[k] for k in data.files}
    return state, replay


def _csv_without_time(path: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("hours", "steps_per_s")} for row in rows(path)]


def _soak(tmp_path: Path, kills: int, steps: int = 1500, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    args = lambda d: train_args(d, steps, "--resume", checkpoint_every=50, eval_every=250)
    whole = tmp_path / "whole"
    r = subprocess.run([sys.executable, "-m", "rlblocks", *map(str, args(whole))], cwd=tmp_path, capture_output=True,
                       text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=600, check=False)
    assert r.returncode == 0, r.stderr
    killed = tmp_path / "killed"
    n_killed = 0
    lock = killed / ".lock"
    for i in range(kills):
        proc = popen(args(killed), tmp_path)
        if i % 4 == 3:  # now and then during start-up (imports, env and agent construction, restore)
            time.sleep(float(rng.uniform(0.5, 3.0)))
        else:  # mostly while training: once this process holds the run, 0-2 s later
            wait_for(lambda p=proc: lock.exists() and f'"pid": {p.pid}' in lock.read_text(), what="the lock", proc=proc)
            time.sleep(float(rng.uniform(0.0, 2.0)))
        if proc.poll() is None:
            proc.kill()
            n_killed += 1
        proc.communicate()
    r = subprocess.run([sys.executable, "-m", "rlblocks", *map(str, args(killed))], cwd=tmp_path, capture_output=True,
                       text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=600, check=False)
    assert r.returncode == 0, r.stderr
    assert n_killed == kills  # every kill hit a live process (the run was not finished yet)
    (sa, ra), (sb, rb) = _final_state(whole), _final_state(killed)
    la, lb = dict(state_leaves(sa)), dict(state_leaves(sb))
    assert la.keys() == lb.keys()
    for key, va in la.items():
        if key == ".modules.logger.hours":
            continue
        vb = lb[key]
        if isinstance(va, torch.Tensor):
            assert torch.equal(va, vb), key
        else:
            assert va == vb, key
    for key in ra:
        np.testing.assert_array_equal(ra[key], rb[key], err_msg=key)
    for name, column in (("progress.csv", "steps"), ("eval.csv", "frames")):
        a, b = _csv_without_time(whole / name), _csv_without_time(killed / name)
        assert a == b, name
        assert len({row[column] for row in b}) == len(b)  # no duplicate rows
    leftovers = [p for p in killed.rglob("*") if re.search(r"\.tmp|\.old-", p.name)]
    assert leftovers == []


def test_kills_at_random_moments_then_resume_equal_an_uninterrupted_run_quick(tmp_path):
    _soak(tmp_path, kills=3, steps=1500, seed=1)


@pytest.mark.slow
def test_soak_ten_kills_at_random_moments(tmp_path):
    _soak(tmp_path, kills=10, steps=6000, seed=0)


# ============================================================================ kills at the end of a run
_KILL_AT_FINAL_EVAL = """
import os, signal, sys
from rlblocks.components.evaluator import Evaluator
Evaluator.on_train_end = lambda self: os.kill(os.getpid(), signal.SIGKILL)  # after the final checkpoint
from rlblocks.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_kill_before_the_final_evaluation_is_finished_by_resume(tmp_path, cli):
    """A SIGKILL between the final checkpoint and the final evaluation: ``resume`` writes the evaluation
    (the old code said "already at 230 env steps" and the row never came); a sweep does not count
    the run as finished until then."""
    from rlblocks.rundir import finished_steps
    from rlblocks.sweep import SweepRun, _classify

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    r = cli(*train_args(whole, 230, eval_every=100), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert finished_steps(whole) == 230
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", _KILL_AT_FINAL_EVAL, *map(str, train_args(killed, 230, eval_every=100))],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert latest_checkpoint(killed).name == "step_0000000230"
    assert [row["frames"] for row in rows(killed / "eval.csv")] == ["100", "200"]
    assert finished_steps(killed) is None
    run = SweepRun("sac", "Pendulum-v1", 1, killed)
    _classify(run, 230)
    assert run.action == "resume"  # not "done": its final evaluation is missing
    r = cli("resume", killed, "--no-progress", "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "already at" not in r.stdout
    assert finished_steps(killed) == 230
    for name in ("eval.csv", "progress.csv"):
        assert _csv_without_time(killed / name) == _csv_without_time(whole / name), name
    r = cli("resume", killed, "--no-progress", "--device", "cpu", cwd=tmp_path)  # now it is finished
    assert r.returncode == 0 and "already at 230 env steps" in r.stdout, r.stdout + r.stderr


def _file_size_limit(limit: int):
    """A ``preexec_fn`` that caps the size of any file the child writes (``RLIMIT_FSIZE``): writes past it
    fail with ``EFBIG`` as they would with ``ENOSPC`` on a full disk (Python ignores ``SIGXFSZ``)."""
    import resource

    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_refused_checkpoint_write_is_one_line_and_leaves_no_temporaries(tmp_path):
    """torch.save reports a failed write as ``RuntimeError`` (not ``OSError``): the old code printed a
    38-line traceback and left ``.tmp-step_*`` behind. A resume on the still-limited disk says the same."""
    run_dir = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for args in (train_args(run_dir, 300, checkpoint_every=100), ["resume", run_dir, "--no-progress"]):
        r = subprocess.run([sys.executable, "-m", "rlblocks", *map(str, args)], cwd=tmp_path, env=env, text=True,
                           capture_output=True, timeout=300, check=False, preexec_fn=_file_size_limit(20_000))
        one_line_error(r, "writing checkpoint", "step_0000000100 failed", "no earlier checkpoint exists",
                       "free disk space")
        assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == []
    assert json.loads((run_dir / "config.json").read_text())["algo"] == "sac"  # the run itself is kept


def test_the_run_lock_on_a_full_disk_still_locks(tmp_path, monkeypatch):
    """Writing the holder's name into the lock file fails on a full disk: the old code raised
    ``OSError`` (errno 28) as a traceback; the lock is held all the same, without the name."""
    import builtins

    from rlblocks.rundir import RunBusyError, RunLock

    real_open = builtins.open

    def full_disk_open(file, mode="r", *a, **kw):
        if str(file).endswith(".lock") and mode == "r+":
            raise OSError(errno.ENOSPC, "No space left on device", str(file))
        return real_open(file, mode, *a, **kw)

    monkeypatch.setattr(builtins, "open", full_disk_open)
    with RunLock(tmp_path) as lock:
        assert lock.held
        with pytest.raises(RunBusyError, match="in use by another process"):
            RunLock(tmp_path).acquire()


def test_a_full_disk_elsewhere_in_the_run_is_one_line(tmp_path, monkeypatch, capsys):
    """Any write the disk refuses (a CSV row, config.json) ends with one line naming the file and
    ``rlblocks resume``, not a traceback."""
    import rlblocks.components.logger as logger_module

    def full_disk(path, *a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(logger_module, "append_csv_row", full_disk)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    r = main_in_process(train_args(tmp_path / "run", 300), capsys)
    one_line_error(r, "No space left on device", "progress.csv", "rlblocks resume")


def test_resume_and_overwrite_together_are_refused(finished_run, cli, tree_state, tmp_path):
    """``train --resume --overwrite``: the old code ignored --overwrite and resumed."""
    run_dir = copy_run(finished_run, tmp_path / "run")
    before = tree_state(run_dir)
    r = cli(*train_args(run_dir, 300), "--resume", "--overwrite", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == ("rlblocks train: error: argument --overwrite: not allowed with "
                                                 "argument --resume")
    assert tree_state(run_dir) == before


def test_a_run_with_goal_keys_made_before_the_check_still_resumes(finished_run, cli, tmp_path):
    """The goal-key check refuses new runs only: a run directory that holds such a setting stays usable."""
    run_dir = copy_run(finished_run, tmp_path / "run")
    _edit_record(run_dir, lambda record: record["config"].update(her="final"))
    r = cli("resume", run_dir, "--steps", "260", "--no-progress", "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "finished at 260 env steps" in r.stdout
