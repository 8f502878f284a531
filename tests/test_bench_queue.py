"""benchmarks/_queue.py: the cross-session job queue skips finished jobs and jobs another worker holds."""

import importlib.util
import shutil
import subprocess
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
    lock = subprocess.run(["git", "check-ignore", "--no-index", f"{run}.job.lock", f"{run}.part/eval.csv"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert lock.stdout.split() == [f"{run}.job.lock", f"{run}.part/eval.csv"]  # locks and partial runs stay out
