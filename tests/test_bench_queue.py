"""benchmarks/_queue.py: the cross-session job queue skips finished jobs and jobs another worker holds, and a\njob's files land only when it succeeds; the queues of steve_efficiency.py and fetchpush.py."""

import csv
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

ROOT = Path(__file__).parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_queue_runs_only_unfinished_unheld_jobs(tmp_path):
    queue = _load("_queue")
    result = lambda job: tmp_path / job / "result.txt"
    ran = []

    def run(job):
        ran.append(job)
        result(job).write_text(job)

    result("b").parent.mkdir()
    result("b").write_text("b")  # finished in an earlier session
    held = FileLock(str(result("c")) + ".job.lock")
    (tmp_path / "c").mkdir()
    held.acquire()  # another worker runs c
    try:
        assert queue.run_queue(["a", "b", "c", "d"], result, run) == 2
    finally:
        held.release()
    assert ran == ["a", "d"]
    assert queue.run_queue(["a", "b", "c", "d"], result, run) == 1  # c, now free
    assert ran == ["a", "d", "c"]


def test_steve_efficiency_queue_order():
    bench = _load("steve_efficiency")
    jobs = bench.queue_jobs("sac", None)
    assert jobs[:4] == [("sac_steve", "Hopper-v5", 0, 100_000), ("sac_steve", "Hopper-v5", 1, 100_000),
                        ("sac", "Hopper-v5", 0, 300_000), ("sac", "Hopper-v5", 1, 300_000)]
    assert len(jobs) == 8
    assert {j[0] for j in bench.queue_jobs("td3", ["td3"])} == {"td3"}
    assert bench.job_dir(Path("r"), jobs[2]) == Path("r/sac/Hopper-v5/seed0")


def test_steve_efficiency_results_are_not_ignored_by_git():
    """The queue's finished runs survive a fresh checkout only if committed: ``.gitignore``'s
    ``runs/`` (run directories) once matched ``docs/results/.../runs/``, so no finished run could be committed."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    bench = _load("steve_efficiency")
    run = bench.job_dir(bench.RUNS, bench.queue_jobs("sac", None)[0])
    paths = [str(run / name) for name in bench.KEPT]
    check = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=ROOT, capture_output=True, text=True, check=False)
    assert check.returncode == 1, f"ignored by .gitignore: {check.stdout}"  # 1: none of the paths is ignored
    scratch = [f"{run}.job.lock", f"{run}.part/eval.csv", f"{run}.work/run/eval.csv"]
    lock = subprocess.run(["git", "check-ignore", "--no-index", *scratch], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    assert lock.stdout.split() == scratch  # locks, partial and unfinished runs stay out


def test_run_into_lands_the_kept_files_with_a_job_record(tmp_path):
    queue = _load("_queue")
    final = tmp_path / "arm" / "seed0"
    (tmp_path / "arm" / "seed0.part").mkdir(parents=True)  # left by a stopped attempt
    cmd = [sys.executable, "-c", "import pathlib, sys; pathlib.Path(sys.argv[1], 'out.txt').write_text('x')", "{tmp}"]
    wall = queue.run_into(final, cmd, {"out.txt": "result.txt"}, "test job")
    assert sorted(p.name for p in final.iterdir()) == ["job.json", "result.txt"]
    assert (final / "result.txt").read_text() == "x"
    record = json.loads((final / "job.json").read_text())
    assert record["cmd"][-1] == "{tmp}" and record["wall_s"] == round(wall, 1) and wall > 0
    assert not (tmp_path / "arm" / "seed0.part").exists()


def test_run_into_a_failed_command_lands_nothing(tmp_path):
    queue = _load("_queue")
    final = tmp_path / "seed0"
    with pytest.raises(SystemExit, match=r"(?s)test job failed \(exit 3\).*boom"):
        queue.run_into(final, [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], {}, "test job")
    assert list(tmp_path.iterdir()) == []


def test_run_into_a_workdir_outlives_a_stopped_attempt_and_the_next_one_continues(tmp_path):
    queue = _load("_queue")
    final, work = tmp_path / "arm" / "seed0", tmp_path / "arm" / "seed0.work"
    # Each attempt appends one step to steps.txt; the job is done at 2 steps, an attempt that
    # leaves it unfinished fails (as a killed run would leave its checkpoint behind).
    script = ("import pathlib, sys; p = pathlib.Path(sys.argv[1], 'steps.txt'); "
              "p.write_text(p.read_text() + 'x' if p.exists() else 'x'); sys.exit(0 if len(p.read_text()) >= 2 else 1)")
    cmd = [sys.executable, "-c", script, "{tmp}"]
    with pytest.raises(SystemExit):
        queue.run_into(final, cmd, {"steps.txt": "steps.txt"}, "job", workdir=work)
    assert not final.exists() and (work / "steps.txt").read_text() == "x"  # kept for the next attempt
    queue.run_into(final, cmd, {"steps.txt": "steps.txt"}, "job", workdir=work)
    assert (final / "steps.txt").read_text() == "xx"  # continued, not started over
    assert json.loads((final / "job.json").read_text())["attempts"] == 2
    assert not work.exists()  # removed once the files landed


def test_fetchpush_queue_and_commands():
    from rlblocks.registry import get_algo
    from rlblocks.run import resolve_config

    bench = _load("fetchpush")
    jobs = bench.queue_jobs()
    assert jobs[:2] == [("sb3_sac_her", 0), ("sac_her", 0)]  # the side-by-side pair first: two workers run it at once
    assert jobs[2:] == [("sac_her_noclip", 0), ("sac_her_noclip", 1), ("sac_her_raw", 0), ("sac_her_raw", 1),
                        ("sac_her_floor_noclip", 0), ("sac_her_floor_noclip", 1), ("sac_her_floor", 0),
                        ("sac_her_floor", 1), ("sac_her_clip", 0), ("ddpg_baselines", 0),
                        ("ddpg_explore_noclip", 0), ("ddpg_explore_noclip", 1), ("ddpg_explore_floor", 0),
                        ("ddpg_explore_floor", 1), ("ddpg_fa22", 0), ("ddpg_fa22", 1)]
    assert bench.job_dir(Path("r"), jobs[11]) == Path("r/ddpg_baselines/seed0")
    cmd, kept = bench.job_command(("sb3_sac_her", 0))
    assert cmd[cmd.index("--impls") + 1] == "sb3" and kept == {"rows.csv": "rows.csv"}
    cmd, kept = bench.job_command(("ddpg_baselines", 0))
    assert cmd[cmd.index("--steps") + 1] == "300000" and set(kept.values()) == set(bench.RLBLOCKS_KEPT)
    # rlblocks runs continue across sessions from their .work directory; SB3's start over
    assert "--resume" in cmd and bench.work_dir(Path("r"), ("ddpg_baselines", 0)) == Path("r/ddpg_baselines/seed0.work")
    assert bench.work_dir(Path("r"), ("sb3_sac_her", 0)) is None
    # the arm's values are valid keys of its algorithm, with the preset under them
    sets = [a for i, a in enumerate(cmd) if "=" in a and "--set" in cmd[:i]]
    cfg = resolve_config(get_algo("ddpg"), "FetchPush-v4", None, dict(a.split("=", 1) for a in sets), "fetch-cpu-explore")
    assert (cfg.target_update_every, cfg.tau, cfg.hidden_sizes, cfg.random_eps, cfg.eval_episodes, cfg.obs_norm_eps) == \
        (40, 0.05, [256, 256, 256], 0.3, 30, 1e-8)
    cmd, _ = bench.job_command(("ddpg_explore_noclip", 1))
    assert cmd[cmd.index("--preset") + 1] == "fetch-cpu-explore" and "her_clip_target=false" in cmd
    cmd, _ = bench.job_command(("sac_her_raw", 0))
    sets = [a for i, a in enumerate(cmd) if "=" in a and "--set" in cmd[:i]]
    cfg = resolve_config(get_algo("sac"), "FetchPush-v4", None, dict(a.split("=", 1) for a in sets), "fetch-cpu")
    assert (cfg.normalize_obs, cfg.her_clip_target, cfg.tau, cfg.alpha_lr, cfg.her) == (False, False, 0.005, 1e-3, "future_4")
    cmd, _ = bench.job_command(("sac_her_floor", 0))
    sets = [a for i, a in enumerate(cmd) if "=" in a and "--set" in cmd[:i]]
    cfg = resolve_config(get_algo("sac"), "FetchPush-v4", None, dict(a.split("=", 1) for a in sets), "fetch-cpu")
    assert (cfg.normalize_obs, cfg.obs_norm_eps, cfg.her_clip_target) == (True, 1e-4, True)
    for arm, want in {"sac_her_noclip": (True, False, 1e-8), "sac_her_clip": (False, True, 1e-8),
                      "sac_her_floor_noclip": (True, False, 1e-4)}.items():
        cmd, _ = bench.job_command((arm, 0))
        sets = [a for i, a in enumerate(cmd) if "=" in a and "--set" in cmd[:i]]
        cfg = resolve_config(get_algo("sac"), "FetchPush-v4", None, dict(a.split("=", 1) for a in sets), "fetch-cpu")
        assert (cfg.normalize_obs, cfg.her_clip_target, cfg.obs_norm_eps) == want, arm


def test_fetchpush_summary_and_plot_read_both_kinds_of_landed_runs(tmp_path):
    """A her_sb3 run (rows.csv) and a resumed rlblocks run (eval.csv, progress.csv hours): success at the
    table's steps, wall time and steps/s, and one curve per arm in the figure's table."""
    bench = _load("fetchpush")
    sb3 = tmp_path / "sb3_sac_her" / "seed0"
    sb3.mkdir(parents=True)
    (sb3 / "rows.csv").write_text("impl,env,seed,steps,success,return,wall_s\n"
                                  "sb3,FetchPush-v4,0,100000,0.1,-45,\nsb3,FetchPush-v4,0,200000,0.5,-30,2000\n")
    (sb3 / "job.json").write_text('{"wall_s": 4000.0, "attempts": 1}')
    raw = tmp_path / "sac_her_raw" / "seed1"
    raw.mkdir(parents=True)
    (raw / "eval.csv").write_text("hours,epoch,frames,score,success\n0.1,99999,100000,-40,0.2\n0.5,199999,200000,-20,0.9\n")
    (raw / "progress.csv").write_text("hours,steps\n0.25,100000\n0.5,200000\n")
    (raw / "job.json").write_text('{"wall_s": 100.0, "attempts": 2}')  # resumed: the hours count, not wall_s
    table = bench.summary(tmp_path, at=(100_000, 200_000))
    assert "| sb3_sac_her | 0 | 0.10 | 0.50 | 1.11 | 50.0 |" in table
    assert "| sac_her_raw | 1 | 0.20 | 0.90 | 0.50 | 111.1 |" in table
    fig, md, csv_path = bench.plot(tmp_path, tmp_path / "success.png")
    assert fig.stat().st_size > 0 and "sac_her_raw" in md.read_text()
    rows = {r["algo"]: r for r in csv.DictReader(csv_path.read_text().splitlines())}
    assert set(rows) == {"sb3_sac_her", "sac_her_raw"} and float(rows["sac_her_raw"]["final_mean"]) == 0.9
