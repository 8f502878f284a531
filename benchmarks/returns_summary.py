"""Final evaluation returns per implementation, from ``returns.py`` CSVs and ``rlblocks sweep`` runs.

Reads rows ``impl,algo,env,seed,steps,score`` (``benchmarks/returns.py --out``) and, with
``--sweep DIR --algo A``, the ``eval.csv`` of each finished run of algorithm ``A`` in that sweep
(as impl ``rlblocks``). Keeps runs that reached ``--steps``, prints a Markdown table (seeds, the
per-seed final scores, mean ± sample std over seeds) and writes the rows it used to ``--out`` when given.

    python benchmarks/returns_summary.py --csv sb3_ppo_1M.csv --sweep SWEEP_DIR --algo ppo \\
        --env HalfCheetah-v5 --steps 1000000 --out docs/results/ppo_returns_1M.csv
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

FIELDS = ["impl", "algo", "env", "seed", "steps", "score"]


def sweep_rows(sweep_dir: Path, algo: str, env: str) -> list[dict]:
    """``returns.py``-style rows from the eval.csv of every run of ``algo`` on ``env`` in a sweep."""
    meta = json.loads((sweep_dir / "sweep.json").read_text())
    rows = []
    for run in meta["runs"]:
        if run["algo"] != algo or run["env_id"] != env:
            continue
        path = sweep_dir / run["dir"] / "eval.csv"
        if not path.exists():
            continue
        with open(path) as fh:
            rows += [{"impl": "rlblocks", "algo": algo, "env": env, "seed": run["seed"],
                      "steps": int(r["frames"]), "score": float(r["score"])} for r in csv.DictReader(fh)]
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--csv", type=Path, nargs="*", default=[], help="returns.py output files")
    p.add_argument("--sweep", type=Path, help="an rlblocks sweep directory")
    p.add_argument("--algo", default="ppo")
    p.add_argument("--env", default="HalfCheetah-v5")
    p.add_argument("--steps", type=int, required=True, help="the budget: runs are compared at this step")
    p.add_argument("--out", type=Path, help="write the rows used (all steps of the kept runs) here")
    args = p.parse_args()

    rows = []
    for path in args.csv:
        with open(path) as fh:
            rows += [{**r, "seed": int(r["seed"]), "steps": int(r["steps"]), "score": float(r["score"])}
                     for r in csv.DictReader(fh)]
    if args.sweep:
        rows += sweep_rows(args.sweep, args.algo, args.env)
    rows = [r for r in rows if r["algo"] == args.algo and r["env"] == args.env]
    finals = defaultdict(dict)  # impl -> seed -> score at the budget
    for r in rows:
        if r["steps"] == args.steps:
            finals[r["impl"]][r["seed"]] = r["score"]
    kept = [r for r in rows if r["seed"] in finals.get(r["impl"], {})]

    print(f"{args.algo} on {args.env}, evaluation return at {args.steps:,} steps\n")
    print("| implementation | seeds | final return per seed | mean ± std |")
    print("|---|---|---|---|")
    for impl, by_seed in sorted(finals.items()):
        scores = np.array([by_seed[s] for s in sorted(by_seed)])
        per_seed = ", ".join(f"{by_seed[s]:,.0f} (s{s})" for s in sorted(by_seed))
        print(f"| {impl} | {len(scores)} | {per_seed} | {scores.mean():,.0f} ± {scores.std(ddof=1) if len(scores) > 1 else 0.0:,.0f} |")
    if args.out:
        with open(args.out, "w", newline="") as fh:
            w = csv.DictWriter(fh, FIELDS)
            w.writeheader()
            w.writerows(sorted(kept, key=lambda r: (r["impl"], r["seed"], r["steps"])))


if __name__ == "__main__":
    main()
