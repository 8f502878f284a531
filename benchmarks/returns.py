"""Evaluation return of rlblocks vs Stable-Baselines3 at equal budget, seed by seed.

Each invocation trains one (implementation, algorithm, seed) and appends rows
``impl,algo,env,seed,steps,score`` (mean of ``--episodes`` deterministic evaluation episodes,
taken every ``--eval-every`` steps) to ``--out``. Hyperparameters are SB3's defaults on both
sides (learning_starts 100, batch 256, 256×256, one gradient step per env step).

    python benchmarks/returns.py --impl rlblocks --algo sac --seed 0 --steps 100000
    python benchmarks/returns.py --impl sb3 --algo sac --seed 0 --steps 100000
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
from pathlib import Path

import numpy as np
import torch


def _append(out: Path, row: dict) -> None:
    new = not out.exists()
    with open(out, "a", newline="") as fh:
        w = csv.DictWriter(fh, ["impl", "algo", "env", "seed", "steps", "score"])
        if new:
            w.writeheader()
        w.writerow(row)


def run_rlblocks(args) -> None:
    from rlblocks import run

    run_dir = Path(tempfile.mkdtemp(prefix="rlb-returns-")) / "run"
    run.train(args.algo, args.env, steps=args.steps, seed=args.seed, run_dir=str(run_dir),
              overrides={"learning_starts": 100, "eval_episodes": args.episodes, **dict(kv.split("=", 1) for kv in args.set)},
              eval_every=args.eval_every,
              checkpoint_every=0, device="cpu", progress=False)
    with open(run_dir / "eval.csv") as fh:
        for r in csv.DictReader(fh):
            _append(args.out, {"impl": "rlblocks" + "".join(f"[{kv}]" for kv in args.set), "algo": args.algo, "env": args.env, "seed": args.seed,
                               "steps": int(r["frames"]), "score": float(r["score"])})


def run_sb3(args) -> None:
    import gymnasium as gym
    from stable_baselines3 import SAC, TD3
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.noise import NormalActionNoise

    env = gym.make(args.env)
    if args.algo == "sac":
        model = SAC("MlpPolicy", env, seed=args.seed, device="cpu", learning_starts=100)
    else:
        a = env.action_space.shape[0]
        model = TD3("MlpPolicy", env, seed=args.seed, device="cpu", learning_starts=100,
                    action_noise=NormalActionNoise(np.zeros(a), 0.1 * np.ones(a)), policy_kwargs={"net_arch": [256, 256]})
    eval_env = gym.make(args.env)
    eval_env.reset(seed=args.seed + 10_000)
    for step in range(args.eval_every, args.steps + 1, args.eval_every):
        model.learn(args.eval_every, reset_num_timesteps=False)
        mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=args.episodes, deterministic=True)
        _append(args.out, {"impl": "sb3", "algo": args.algo, "env": args.env, "seed": args.seed,
                           "steps": step, "score": float(mean)})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--impl", choices=("rlblocks", "sb3"), required=True)
    p.add_argument("--algo", default="sac", choices=("sac", "td3"))
    p.add_argument("--env", default="HalfCheetah-v5")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--eval-every", type=int, default=10_000)
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", "0")))
    p.add_argument("--out", type=Path, default=Path("docs/results/returns.csv"))
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="rlblocks config overrides")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    (run_rlblocks if args.impl == "rlblocks" else run_sb3)(args)


if __name__ == "__main__":
    main()
