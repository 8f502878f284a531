"""PPO env steps per second, rlblocks vs Stable-Baselines3, whole runs in turn in one invocation.

Same env, rollout length (2048 steps per env), minibatch count (32), epochs (10), 64×64 tanh
actor and critic, observation and return normalisation on both sides (SB3: VecNormalize),
sync vector envs with ``--num-envs`` copies. Reports wall-clock steps/s and steps per CPU-second of
the process (``time.process_time``), which would expose time taken away by other load or the
hypervisor (on the 2-core CI machine the two ratios agreed within 0.02; see docs/benchmarks.md).

    python benchmarks/ppo_throughput.py --num-envs 8,1 --steps 32768 --threads 1 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _timing import time_rlblocks


def run_rlblocks(env_id: str, steps: int, num_envs: int, seed: int) -> tuple[float, float]:
    from rlblocks.registry import get_algo

    cfg = get_algo("ppo").config_cls().updated({"num_envs": num_envs}, "benchmark")
    cfg.validate()
    return time_rlblocks("ppo", env_id, cfg, steps, seed)


def run_sb3(env_id: str, steps: int, num_envs: int, seed: int) -> tuple[float, float]:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    env = VecNormalize(make_vec_env(env_id, n_envs=num_envs, seed=seed))
    model = PPO("MlpPolicy", env, n_steps=2048, batch_size=2048 * num_envs // 32, n_epochs=10, seed=seed,
                device="cpu")
    start, cpu = time.perf_counter(), time.process_time()
    model.learn(total_timesteps=steps)
    return model.num_timesteps / (time.perf_counter() - start), model.num_timesteps / (time.process_time() - cpu)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="HalfCheetah-v5")
    p.add_argument("--num-envs", default="1,8")
    p.add_argument("--steps", type=int, default=65536, help="env steps per run (a multiple of 2048 × envs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--repeats", type=int, default=1,
                   help="alternate rlblocks and SB3 runs this many times; the ratio reported is the median of "
                        "the per-pair ratios (a shared machine drifts between runs)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; env {args.env}; {args.steps} steps each")
    for n in (int(x) for x in args.num_envs.split(",")):
        ratios, cpu_ratios = [], []
        for r in range(args.repeats):
            ours, ours_cpu = run_rlblocks(args.env, args.steps, n, args.seed)
            theirs, theirs_cpu = run_sb3(args.env, args.steps, n, args.seed)
            ratios.append(ours / theirs)
            cpu_ratios.append(ours_cpu / theirs_cpu)
            print(f"ppo {n} envs, run {r + 1}: rlblocks {ours:8.1f} steps/s | SB3 {theirs:8.1f} steps/s | "
                  f"ratio {ours / theirs:.2f}x | per CPU-second: {ours_cpu:8.1f} vs {theirs_cpu:8.1f}, "
                  f"ratio {ours_cpu / theirs_cpu:.2f}x", flush=True)
        if args.repeats > 1:
            print(f"ppo {n} envs: median ratio {statistics.median(ratios):.2f}x over {args.repeats} pairs "
                  f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x); per CPU-second "
                  f"{statistics.median(cpu_ratios):.2f}x (min {min(cpu_ratios):.2f}x, max {max(cpu_ratios):.2f}x)",
                  flush=True)


if __name__ == "__main__":
    main()
