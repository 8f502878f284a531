"""Return parity with Stable-Baselines3 (issue 16): a queue of whole runs that survives being stopped.

Jobs: SAC on HalfCheetah-v5, seeds 0-4, and TD3 on Hopper-v5, seeds 0-2, each for rlblocks and SB3 at
100,000 steps with SB3's default hyperparameters and ``learning_starts`` 10,000 on both sides
(``benchmarks/returns.py`` runs one job). Jobs run one after another, rlblocks and SB3 of a seed
next to each other, one torch thread each. A job writes ``<out>/<impl>_<algo>_<env>_s<seed>.csv``
only when it completes (a ``.part`` file is renamed in); re-running the command skips finished jobs
and starts an interrupted one again, so the queue can span sessions. Several workers may run the
same queue: each job is held under a ``filelock`` lock while it runs (the OS drops it if the worker
is killed), and a worker skips jobs another one holds:

    nice -n 19 python benchmarks/parity.py            # run (or continue) the queue
    nice -n 19 python benchmarks/parity.py & nice -n 19 python benchmarks/parity.py
                                                      # two workers pulling from one queue
    python benchmarks/parity.py --summary             # table of what has finished
    python benchmarks/parity.py --plot docs/results/parity/curves.png
                                                      # learning curves (rlblocks.plot), one panel per env

``--summary`` prints, per (algo, env) and implementation, the final return (mean over the last
evaluation of each seed) with the standard error, and the IQM with a 95% bootstrap interval
(``rlblocks.aggregate``).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _queue as queue

JOBS = [("sac", "HalfCheetah-v5", s) for s in range(5)] + [("td3", "Hopper-v5", s) for s in range(3)]
IMPLS = ("rlblocks", "sb3")


def job_file(out: Path, impl: str, algo: str, env_id: str, seed: int) -> Path:
    return out / f"{impl}_{algo}_{env_id}_s{seed}.csv"


def run_queue(out: Path, steps: int, learning_starts: int, shard: tuple[int, int] = (1, 1)) -> None:
    k, n = shard
    jobs = [(impl, algo, env_id, seed) for algo, env_id, seed in JOBS for impl in IMPLS][k - 1::n]
    queue.run_queue(jobs, lambda job: job_file(out, *job), lambda job: run_job(out, steps, learning_starts, *job))


def run_job(out: Path, steps: int, learning_starts: int, impl: str, algo: str, env_id: str, seed: int) -> None:
    final = job_file(out, impl, algo, env_id, seed)
    part = final.with_suffix(".csv.part")
    part.unlink(missing_ok=True)
    print(f"{impl} {algo} {env_id} seed {seed} ...", flush=True)
    cmd = [sys.executable, str(HERE / "returns.py"), "--impl", impl, "--algo", algo, "--env", env_id,
           "--seed", str(seed), "--steps", str(steps), "--learning-starts", str(learning_starts),
           "--threads", "1", "--out", str(part)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, env=env)
    part.replace(final)


def _job_rows(out: Path):
    """Yield the rows of each finished job file in ``out`` (files without an ``impl`` column, such as
    the summary tables ``--plot`` writes beside them, are skipped)."""
    for path in sorted(out.glob("*.csv")):
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        if rows and "impl" in rows[0]:
            yield rows


def summary(out: Path, steps: int) -> None:
    import numpy as np

    from rlblocks.aggregate import interval_estimate

    finals: dict[tuple[str, str, str], list[float]] = {}
    for rows in _job_rows(out):
        for r in (r for r in rows if int(r["steps"]) == steps):
            finals.setdefault((r["algo"], r["env"], r["impl"]), []).append(float(r["score"]))
    print("| algo | env | impl | seeds | mean ± s.e. | IQM [95% CI] | per seed |")
    print("|---|---|---|---|---|---|---|")
    for (algo, env_id, impl), scores in sorted(finals.items()):
        x = np.asarray(scores)
        se = x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else float("nan")
        e = interval_estimate(x, "iqm")
        print(f"| {algo} | {env_id} | {impl} | {len(x)} | {x.mean():.0f} ± {se:.0f} | {e.value:.0f} [{e.low:.0f}, {e.high:.0f}] "
              f"| {', '.join(f'{v:.0f}' for v in x)} |")


def plot(out: Path, fig: Path) -> None:
    """Learning curves of the finished jobs with :func:`rlblocks.plot.plot_curves` (mean ± s.e. over seeds)."""
    import numpy as np

    from rlblocks.plot import plot_curves

    grouped: dict[str, dict[str, list]] = {}
    for rows in _job_rows(out):
        r0 = rows[0]
        curve = (np.array([float(r["steps"]) for r in rows]), np.array([float(r["score"]) for r in rows]))
        grouped.setdefault(r0["env"], {}).setdefault(f"{r0['impl']} {r0['algo']}", []).append(curve)
    for p in plot_curves(grouped, fig, "eval", title="rlblocks vs Stable-Baselines3", where=str(out)):
        print(p)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("docs/results/parity"))
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--learning-starts", type=int, default=10_000)
    p.add_argument("--summary", action="store_true", help="print the table of finished jobs and exit")
    p.add_argument("--plot", type=Path, metavar="FIG", help="draw the learning curves to FIG and exit")
    p.add_argument("--shard", default="1/1", help="K/N: run every N-th job starting at the K-th (N queues side by side)")
    args = p.parse_args()
    k, n = (int(v) for v in args.shard.split("/"))
    if not 1 <= k <= n:
        p.error("--shard K/N needs 1 <= K <= N")
    if args.plot:
        plot(args.out, args.plot)
    elif args.summary:
        summary(args.out, args.steps)
    else:
        run_queue(args.out, args.steps, args.learning_starts, (k, n))


if __name__ == "__main__":
    main()
