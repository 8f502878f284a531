"""Golden runs: the refactoring guard. Short runs of every algorithm family from a fixed seed at one
thread; a SHA-256 of every tensor and array of the final checkpoint and of the CSV rows (less their
wall-clock columns). A change that moves code must keep each run bit-identical, or say why not.

    python benchmarks/golden.py --record            # write benchmarks/golden.json (before moving code)
    python benchmarks/golden.py                     # check against it; prints each difference
    python benchmarks/golden.py --only sac,dqn_her  # a subset

Runs go through the command line (``python -m rlblocks train``) as a user's would, two at a time
(one torch thread each). Results depend on the CPU's kernels and torch's version, so the file
records both and a check on another machine or torch says so instead of reporting differences.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden.json"
SMALL = ["hidden_sizes=32,32", "batch_size=32", "learning_starts=100", "buffer_size=5000", "log_every=100",
         "eval_episodes=2"]
PPO = ["hidden_sizes=32,32", "num_envs=2", "n_steps=64", "n_minibatches=4", "n_epochs=2", "eval_episodes=2"]

#: name → (algo, env, --set values, steps)
RUNS = {
    "ddpg": ("ddpg", "Pendulum-v1", SMALL, 600),
    "td3": ("td3", "Pendulum-v1", SMALL, 600),
    "sac": ("sac", "Pendulum-v1", SMALL, 600),
    "dqn": ("dqn", "CartPole-v1", SMALL, 600),
    "ppo": ("ppo", "Pendulum-v1", PPO, 768),
    "ppo_merl": ("ppo-merl", "Pendulum-v1", PPO, 768),
    "ppo_lstm": ("ppo", "PendulumNoVel-v1", [*PPO, "arch=lstm", "seq_len=16"], 768),
    "sac_gru": ("sac", "PendulumNoVel-v1", [*SMALL, "arch=gru", "rnn_size=16", "seq_len=8", "batch_size=8"], 600),
    "sac_steve": ("sac", "Pendulum-v1", [*SMALL, "target=steve"], 600),
    "sac_her": ("sac", "FetchReach-v4", [*SMALL, "her=future_4"], 600),
    "dqn_her": ("dqn", "BitFlip-v0", [*SMALL, "her=future_4"], 600),
}


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def checksums(run_dir: Path) -> dict[str, str]:
    """``{what: digest}`` of a finished run: every tensor of ``state.pt`` (but wall-clock hours), every
    array of its ``.npz`` files, and the rows of ``progress.csv`` and ``eval.csv`` without times."""
    from rlblocks.checkpoint import latest_checkpoint, state_leaves

    ckpt = latest_checkpoint(run_dir)
    out = {}
    for key, value in state_leaves(torch.load(ckpt / "state.pt", weights_only=True)):
        if key == ".modules.logger.hours":
            continue
        if isinstance(value, torch.Tensor):
            out[f"state{key}"] = _digest(value.detach().cpu().contiguous().numpy().tobytes())
        else:
            out[f"state{key}"] = _digest(repr(value).encode())
    for npz in sorted(ckpt.glob("*.npz")):
        with np.load(npz) as data:
            for k in data.files:
                out[f"{npz.stem}/{k}"] = _digest(np.ascontiguousarray(data[k]).tobytes())
    for name in ("progress.csv", "eval.csv"):
        with open(run_dir / name, newline="") as fh:
            rows = [{k: v for k, v in row.items() if k not in ("hours", "steps_per_s")} for row in csv.DictReader(fh)]
        buf = io.StringIO()
        json.dump(rows, buf)
        out[name] = _digest(buf.getvalue().encode())
    return out


def run(name: str, root: Path) -> dict[str, str]:
    algo, env, settings, steps = RUNS[name]
    run_dir = root / name
    cmd = [sys.executable, "-m", "rlblocks", "train", "--algo", algo, "--env", env, "--steps", str(steps),
           "--seed", "7", "--run-dir", str(run_dir), "--checkpoint-every", "300", "--eval-every", "300",
           "--threads", "1", "--no-progress", "--device", "cpu", "--set", *settings]
    env_vars = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    r = subprocess.run(cmd, env=env_vars, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{name}: {' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    return checksums(run_dir)


def machine() -> dict[str, str]:
    return {"torch": torch.__version__, "cpu": torch.backends.cpu.get_cpu_capability()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--record", action="store_true", help=f"write {GOLDEN.name} instead of checking against it")
    p.add_argument("--only", default=None, help="comma-separated run names (default: all)")
    args = p.parse_args()
    names = args.only.split(",") if args.only else list(RUNS)
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(2) as pool:
        results = dict(zip(names, pool.map(lambda n: run(n, Path(tmp)), names)))
    if args.record:
        old = json.loads(GOLDEN.read_text())["runs"] if GOLDEN.exists() else {}
        GOLDEN.write_text(json.dumps({"machine": machine(), "runs": {**old, **results}}, indent=1, sort_keys=True))
        print(f"recorded {len(results)} runs in {GOLDEN}")
        return 0
    golden = json.loads(GOLDEN.read_text())
    if golden["machine"] != machine():
        print(f"note: {GOLDEN.name} was recorded with {golden['machine']}, this is {machine()}: differences may "
              "come from the kernels, not the code")
    bad = 0
    for name, got in results.items():
        want = golden["runs"].get(name)
        if want is None:
            print(f"{name:10s} not recorded (run --record --only {name})")
            continue
        diff = sorted(k for k in want.keys() | got.keys() if want.get(k) != got.get(k))
        bad += bool(diff)
        print(f"{name:10s} {'identical' if not diff else f'{len(diff)} differ: ' + ', '.join(diff[:6])}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
