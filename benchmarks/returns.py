"""Evaluation return of rlblocks vs Stable-Baselines3 at equal budget, seed by seed.

Each invocation trains one (implementation, algorithm, seed) and appends rows
``impl,algo,env,seed,steps,score`` (mean of ``--episodes`` deterministic evaluation episodes,
taken every ``--eval-every`` steps) to ``--out``. Hyperparameters are SB3's defaults on both
sides for SAC/TD3 (learning_starts 100, batch 256, 256×256, one gradient step per env step). For PPO
both sides use baselines ppo2's MuJoCo set (rlblocks' defaults; REFERENCES.md): SB3 gets a learning
rate annealed linearly from 3e-4, a value clip of 0.2, batch 64, VecNormalize, and is evaluated on a
VecNormalize copy with the training statistics frozen.

    python benchmarks/returns.py --impl rlblocks --algo sac --seed 0 --steps 100000
    python benchmarks/returns.py --impl sb3 --algo sac --seed 0 --steps 100000
    python benchmarks/returns.py --impl sb3 --algo ppo --seed 0 --steps 1000000 --eval-every 50000
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
              overrides={**({} if args.algo == "ppo" else {"learning_starts": args.learning_starts}), "eval_episodes": args.episodes, **dict(kv.split("=", 1) for kv in args.set)},
              eval_every=args.eval_every,
              checkpoint_every=0, device="cpu", progress=False)
    with open(run_dir / "eval.csv") as fh:
        for r in csv.DictReader(fh):
            _append(args.out, {"impl": "rlblocks" + "".join(f"[{kv}]" for kv in args.set), "algo": args.algo, "env": args.env, "seed": args.seed,
                               "steps": int(r["frames"]), "score": float(r["score"])})


def run_sb3_ppo(args) -> None:
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecNormalize

    env = VecNormalize(make_vec_env(args.env, n_envs=1, seed=args.seed), gamma=0.99)
    model = PPO("MlpPolicy", env, n_steps=2048, batch_size=64, n_epochs=10, gamma=0.99, gae_lambda=0.95,
                learning_rate=lambda frac: 3e-4 * frac, clip_range=0.2, clip_range_vf=0.2, ent_coef=0.0,
                vf_coef=0.5, max_grad_norm=0.5, seed=args.seed, device="cpu")
    eval_env = VecNormalize(make_vec_env(args.env, n_envs=1, seed=args.seed + 10_000), training=False,
                            norm_reward=False)

    class Evaluate(BaseCallback):
        # One learn() call, so the learning-rate schedule sees the whole run.
        def _on_step(self) -> bool:
            if self.num_timesteps % args.eval_every == 0:
                eval_env.obs_rms = env.obs_rms.copy()
                mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=args.episodes, deterministic=True)
                _append(args.out, {"impl": "sb3", "algo": args.algo, "env": args.env, "seed": args.seed,
                                   "steps": self.num_timesteps, "score": float(mean)})
            return True

    model.learn(args.steps, callback=Evaluate())


def run_sb3(args) -> None:
    if args.algo == "ppo":
        return run_sb3_ppo(args)
    import gymnasium as gym
    from stable_baselines3 import SAC, TD3
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.noise import NormalActionNoise

    env = gym.make(args.env)
    if args.algo == "sac":
        model = SAC("MlpPolicy", env, seed=args.seed, device="cpu", learning_starts=args.learning_starts)
    else:
        a = env.action_space.shape[0]
        model = TD3("MlpPolicy", env, seed=args.seed, device="cpu", learning_starts=args.learning_starts,
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
    p.add_argument("--algo", default="sac", choices=("sac", "td3", "ppo"))
    p.add_argument("--env", default="HalfCheetah-v5")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--eval-every", type=int, default=10_000)
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--learning-starts", type=int, default=100, help="SAC/TD3: random steps before updates (both sides)")
    p.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", "0")))
    p.add_argument("--out", type=Path, default=Path("docs/results/returns.csv"))
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="rlblocks config overrides")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    (run_rlblocks if args.impl == "rlblocks" else run_sb3)(args)


if __name__ == "__main__":
    main()
