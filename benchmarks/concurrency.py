"""Throughput of `rlblocks train` alone and with a second run started at the same time.

Each setting runs ``rlblocks train --algo sac --env HalfCheetah-v5 --steps N --eval-every 0``
(the README's job with evaluation and checkpoints off) once alone, then twice at once, and reads
the steady-state steps/s from the last ``progress.csv`` row of each run (past the random
warm-up). A setting is a set of environment variables given to every process; ``default`` adds
none, as a user who types the command twice would.

    python benchmarks/concurrency.py --steps 2000 --settings default,omp1

Run it alone on the machine: it measures contention, so anything else running distorts it.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = {
    "default": {},  # whatever rlblocks chooses by itself
    "omp1": {"OMP_NUM_THREADS": "1"},
    "omp2-active": {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "ACTIVE", "RLBLOCKS_THREADS": "2"},
    "omp2-passive": {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE", "RLBLOCKS_THREADS": "2"},
}


def start(run_dir: Path, steps: int, env_vars: dict[str, str], algo: str, env_id: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}
    env.update(env_vars)
    cmd = [sys.executable, "-m", "rlblocks", "train", "--algo", algo, "--env", env_id, "--steps", str(steps),
           "--run-dir", str(run_dir), "--eval-every", "0", "--checkpoint-every", "0", "--no-progress",
           "--device", "cpu"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def last_rate(run_dir: Path) -> float:
    with open(run_dir / "progress.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return float(rows[-1]["steps_per_s"])


def measure(setting: str, steps: int, algo: str, env_id: str, root: Path) -> tuple[float, list[float]]:
    env_vars = SETTINGS[setting]
    alone = root / f"{setting}-alone"
    proc = start(alone, steps, env_vars, algo, env_id)
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    pair = [start(root / f"{setting}-pair{i}", steps, env_vars, algo, env_id) for i in range(2)]
    for proc in pair:
        _, err = proc.communicate()
        assert proc.returncode == 0, err
    return last_rate(alone), [last_rate(root / f"{setting}-pair{i}") for i in range(2)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000, help="env steps per run (rows every 1,000)")
    p.add_argument("--settings", default="default,omp1,omp2-active,omp2-passive")
    p.add_argument("--algo", default="sac")
    p.add_argument("--env", default="HalfCheetah-v5")
    args = p.parse_args()
    print(f"cores: {len(os.sched_getaffinity(0))}; {args.algo} {args.env}, {args.steps} steps per run")
    print("| setting | alone steps/s | two at once, steps/s each | each / alone |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for setting in args.settings.split(","):
            t0 = time.time()
            alone, pair = measure(setting, args.steps, args.algo, args.env, Path(tmp))
            print(f"| {setting} | {alone:.1f} | {pair[0]:.1f}, {pair[1]:.1f} | "
                  f"{min(pair) / alone:.2f}, {max(pair) / alone:.2f} | ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
