"""What share of a default run's wall time goes to evaluation.

For each algorithm: the training throughput of a default run (evaluation off) and the wall time of
one default evaluation (``eval_episodes`` greedy episodes, vectorised as ``rlblocks`` runs them, and
one episode at a time as before), then the share of a default ``--steps`` run spent evaluating at
the algorithm's default cadence (:attr:`rlblocks.registry.AlgoSpec.eval_every`) plus the
evaluation at the end::

    share = n_evals * t_eval / (steps / train_steps_per_s + n_evals * t_eval)

Run alone on the machine (timings)::

    python benchmarks/eval_cost.py --env HalfCheetah-v5 --algos ppo,sac --ppo-envs 8
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from rlblocks import run
from rlblocks.components.evaluator import evaluate
from rlblocks.module import as_actor
from rlblocks.registry import RunOptions, build_agent, get_algo


def sequential(agent, env_id: str, episodes: int, seed: int) -> None:
    """The evaluation before vectorisation: one env, one episode after another, batch-1 actions."""
    from rlblocks.envs import make_env

    env, actor = make_env(env_id), as_actor(agent.policy)
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + k)
        done, state = False, actor.initial_state(1)
        while not done:
            a, state, _ = actor.act(torch.as_tensor(obs, dtype=torch.float32)[None], state, False, True)
            obs, _, terminated, truncated, _ = env.step(agent.env.to_env_action(a[0]))
            done = terminated or truncated
    env.close()


def measure(algo: str, env_id: str, num_envs: int | None, train_steps: int, run_steps: int) -> dict:
    spec = get_algo(algo)
    overrides = {"num_envs": str(num_envs)} if num_envs else {}
    cfg = run.resolve_config(spec, env_id, None, overrides)
    agent = build_agent(spec, env_id, cfg, 0, torch.device("cpu"),
                        RunOptions(None, run_steps, 0, 0, False, tensorboard=False))
    warm = getattr(cfg, "learning_starts", 0) + 1000  # off-policy: past the random warm-up, updating
    agent.train(warm)
    t0, s0 = time.perf_counter(), agent.env_steps
    agent.train(s0 + train_steps)
    train_sps = (agent.env_steps - s0) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    evaluate(agent, env_id, cfg.eval_episodes, 10_000, deterministic=True)
    t_eval = time.perf_counter() - t0
    t0 = time.perf_counter()
    sequential(agent, env_id, cfg.eval_episodes, 10_000)
    t_seq = time.perf_counter() - t0
    agent.modules["env"].close()
    n_evals = math.ceil(run_steps / spec.eval_every)  # the periodic ones and the one at the end
    train_time = run_steps / train_sps
    return {"algo": algo, "envs": cfg.num_envs, "train_sps": train_sps, "t_eval": t_eval, "t_seq": t_seq,
            "eval_every": spec.eval_every, "n_evals": n_evals,
            "share": n_evals * t_eval / (train_time + n_evals * t_eval),
            "share_seq_10k": math.ceil(run_steps / 10_000) * t_seq / (train_time + math.ceil(run_steps / 10_000) * t_seq)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="HalfCheetah-v5")
    p.add_argument("--algos", default="ppo,sac")
    p.add_argument("--ppo-envs", type=int, default=8)
    p.add_argument("--steps", type=int, default=100_000, help="the default run's length (CLI default 100,000)")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"| algo | envs | train steps/s | one evaluation, vectorised (s) | one at a time (s) | eval every | "
          f"evaluations in {args.steps:,} steps | eval share | before (sequential, every 10k) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for algo in args.algos.split(","):
        ppo = algo.startswith("ppo")
        r = measure(algo, args.env, args.ppo_envs if ppo else None, 3 * 2048 * args.ppo_envs if ppo else 2000,
                    args.steps)
        print(f"| {algo} | {r['envs']} | {r['train_sps']:.0f} | {r['t_eval']:.2f} | {r['t_seq']:.2f} | "
              f"{r['eval_every']:,} | {r['n_evals']} | {100 * r['share']:.1f}% | {100 * r['share_seq_10k']:.1f}% |",
              flush=True)


if __name__ == "__main__":
    main()
