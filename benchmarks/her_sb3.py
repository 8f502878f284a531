"""SAC + HER on a Fetch task, rlblocks vs Stable-Baselines3 (``HerReplayBuffer``), whole runs side by side.

Same work on both sides: SAC, 256×256 MLPs, batch 256, learning rates 1e-3, gamma 0.98, Polyak
0.005, buffer 1M, 1,000 random warm-up steps, one gradient step per env step, HER ``future`` with
4 relabelled goals per real one (relabel ratio 0.8 on both: rlblocks ``her=future_4``, SB3
``n_sampled_goal=4``), and a greedy evaluation of ``--episodes`` episodes every ``--eval-every``
steps. Each run's wall time covers its training and evaluations (not imports); ``--threads`` torch
threads each (default 1; 2 is both libraries' default on this 2-core machine), one run after another in
this process order: rlblocks seed s, SB3 seed s.

Inputs and targets are the same on both sides since session 16: rlblocks' SAC takes raw observations
and unclipped targets on goal envs (the ``fetch-cpu`` preset), as SB3's HER example. Before, it
normalised every observation key (mrl's running normaliser, clip ±5) and, before session 15, also clipped
its targets to ``[-1/(1-gamma), 0]``: rows of docs/benchmarks.md from those sessions say so. rlblocks
evaluates its episodes side by side in a vector env, SB3's ``evaluate_policy`` one after another (same
episodes, counted in both).

Gymnasium-robotics 1.4.2's Fetch tasks need mujoco 3.3-3.11 (the ``robotics`` extra):

    python benchmarks/her_sb3.py --env FetchReach-v4 --steps 10000 --seeds 0,1 --out docs/results/her_sb3.csv

Rows ``impl,env,seed,steps,success,return,wall_s`` are appended to ``--out``; the script prints
each run's env steps/s (steps / wall time) and the ratio per seed.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

FIELDS = ["impl", "env", "seed", "steps", "success", "return", "wall_s"]


def _append(out: Path, row: dict) -> None:
    new = not out.exists()
    with open(out, "a", newline="") as fh:
        w = csv.DictWriter(fh, FIELDS)
        if new:
            w.writeheader()
        w.writerow(row)


def run_rlblocks(env_id: str, seed: int, args) -> float:
    from rlblocks import run

    run_dir = Path(tempfile.mkdtemp(prefix="rlb-her-")) / "run"
    t0 = time.perf_counter()
    run.train("sac", env_id, steps=args.steps, seed=seed, run_dir=str(run_dir), preset="fetch-cpu",
              overrides={"eval_episodes": args.episodes, "tau": 0.005, "alpha_lr": 1e-3,
                         "buffer_size": 1_000_000},
              eval_every=args.eval_every, checkpoint_every=0, device="cpu", progress=False, threads=args.threads)
    wall = time.perf_counter() - t0
    with open(run_dir / "eval.csv") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        _append(args.out, {"impl": "rlblocks", "env": env_id, "seed": seed, "steps": int(r["frames"]),
                           "success": float(r["success"]), "return": float(r["score"]),
                           "wall_s": round(wall, 1) if int(r["frames"]) == args.steps else ""})
    return wall


def run_sb3(env_id: str, seed: int, args) -> float:
    import gymnasium as gym
    import gymnasium_robotics  # noqa: F401  (registers the Fetch ids)
    from stable_baselines3 import SAC, HerReplayBuffer

    env = gym.make(env_id)
    eval_env = gym.make(env_id)
    eval_env.reset(seed=seed + 10_000)
    t0 = time.perf_counter()
    model = SAC("MultiInputPolicy", env, replay_buffer_class=HerReplayBuffer,
                replay_buffer_kwargs={"n_sampled_goal": 4, "goal_selection_strategy": "future"},
                learning_starts=1000, batch_size=256, gamma=0.98, learning_rate=1e-3, tau=0.005,
                buffer_size=1_000_000, policy_kwargs={"net_arch": [256, 256]}, seed=seed, device="cpu")
    for step in range(args.eval_every, args.steps + 1, args.eval_every):
        model.learn(args.eval_every, reset_num_timesteps=False)
        successes, returns = [], []
        for _ in range(args.episodes):
            obs, _ = eval_env.reset()
            done, ret, info = False, 0.0, {}
            while not done:
                action, _ = model.predict(obs, deterministic=True)
                obs, r, term, trunc, info = eval_env.step(action)
                ret += float(r)
                done = term or trunc
            successes.append(float(info.get("is_success", 0.0)))
            returns.append(ret)
        wall = time.perf_counter() - t0
        _append(args.out, {"impl": "sb3", "env": env_id, "seed": seed, "steps": step,
                           "success": float(np.mean(successes)), "return": float(np.mean(returns)),
                           "wall_s": round(wall, 1) if step == args.steps else ""})
    return time.perf_counter() - t0


def warm_up(env_id: str) -> None:
    """Imports and first loads that the first timed run would otherwise pay alone."""
    import gymnasium as gym
    import gymnasium_robotics  # noqa: F401
    import stable_baselines3  # noqa: F401
    import torch.utils.tensorboard

    torch.optim.Adam([torch.zeros(1, requires_grad=True)], fused=True)  # imports torch._dynamo
    gym.make(env_id).close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="FetchReach-v4")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--eval-every", type=int, default=2_000)
    p.add_argument("--episodes", type=int, default=30)
    p.add_argument("--impls", default="rlblocks,sb3")
    p.add_argument("--out", type=Path, default=Path("docs/results/her_sb3.csv"))
    p.add_argument("--threads", type=int, default=1, help="torch threads of both sides")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    warm_up(args.env)
    for seed in (int(s) for s in args.seeds.split(",")):
        walls = {}
        for impl in args.impls.split(","):
            walls[impl] = (run_rlblocks if impl == "rlblocks" else run_sb3)(args.env, seed, args)
            print(f"{impl} {args.env} seed {seed}: {args.steps / walls[impl]:.1f} env steps/s "
                  f"({walls[impl]:.0f} s)", flush=True)
        if len(walls) == 2:
            print(f"seed {seed}: rlblocks / sb3 = {walls['sb3'] / walls['rlblocks']:.2f}x", flush=True)


if __name__ == "__main__":
    main()
