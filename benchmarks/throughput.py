"""Env steps per second of rlblocks vs Stable-Baselines3, whole runs side by side.

Same env, same hyperparameters (SB3's defaults: 256×256 MLPs, batch 256, buffer 1M,
learning_starts 100, one gradient step per env step, TD3 with Gaussian exploration 0.1),
same machine, one process, run in turn. Prints steps/s of each and the ratio.

    python benchmarks/throughput.py --algos sac,td3 --env HalfCheetah-v5 --steps 5000

Needs ``pip install -e ".[mujoco,bench]"``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def run_rlblocks(algo: str, env_id: str, steps: int, seed: int, num_envs: int) -> float:
    from rlblocks.registry import RunOptions, build_agent, get_algo

    spec = get_algo(algo)
    cfg = spec.config_cls().updated({"num_envs": num_envs, "learning_starts": 100}, "benchmark")
    cfg.validate()
    opts = RunOptions(None, steps, eval_every=0, checkpoint_every=0, progress=False, tensorboard=False)
    agent = build_agent(spec, env_id, cfg, seed, torch.device("cpu"), opts)
    start = time.perf_counter()
    agent.train(steps)
    elapsed = time.perf_counter() - start
    agent.env.close()
    return steps / elapsed


def run_sb3(algo: str, env_id: str, steps: int, seed: int, num_envs: int) -> float:
    import gymnasium as gym
    from stable_baselines3 import SAC, TD3
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.noise import NormalActionNoise

    env = make_vec_env(env_id, n_envs=num_envs, seed=seed)
    act_dim = gym.make(env_id).action_space.shape[0]
    if algo == "sac":
        model = SAC("MlpPolicy", env, seed=seed, device="cpu", learning_starts=100)
    else:
        noise = NormalActionNoise(np.zeros(act_dim), 0.1 * np.ones(act_dim))
        model = TD3("MlpPolicy", env, seed=seed, device="cpu", learning_starts=100, action_noise=noise,
                    policy_kwargs={"net_arch": [256, 256]})
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    return steps / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algos", default="sac,td3")
    p.add_argument("--env", default="HalfCheetah-v5")
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--num-envs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", choices=("rlblocks", "sb3"), default=None)
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; env {args.env}; {args.steps} steps each")
    for algo in args.algos.split(","):
        ours = run_rlblocks(algo, args.env, args.steps, args.seed, args.num_envs) if args.only != "sb3" else float("nan")
        theirs = run_sb3(algo, args.env, args.steps, args.seed, args.num_envs) if args.only != "rlblocks" else float("nan")
        print(f"{algo}: rlblocks {ours:7.1f} steps/s | SB3 {theirs:7.1f} steps/s | ratio {ours / theirs:.2f}x", flush=True)


if __name__ == "__main__":
    main()
