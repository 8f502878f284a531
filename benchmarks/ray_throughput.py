"""PPO env steps per second on Ray rollout workers against the in-process run, with the layout's
per-iteration overhead and the bytes it ships.

The same PPO config (baselines' MuJoCo set: 2048 steps per env per rollout, 32 minibatches, 10
epochs, 64×64 tanh) with ``--num-envs`` envs, trained in-process and with 1 and 2 Ray rollout
workers (each steps ``num_envs / workers`` envs) in a local Ray; each run is timed from the first
step to the last (worker start-up excluded: it is paid once per run). Per collection it reports
the driver's wall time from publishing the weights to having every rollout minus the slowest
worker's own stepping time (the overhead: serialisation, object store, scheduling, concatenation),
the bytes of weights and normaliser statistics published (one ``ray.put`` per iteration) and the
bytes of experience sent back.

    python benchmarks/ray_throughput.py --env HalfCheetah-v5 --num-envs 2 --rollouts 3 --workers 1,2 --repeats 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch


def build(env_id: str, num_envs: int, total: int, seed: int, workers: int):
    """An agent of PPO on ``env_id`` (in-process for ``workers == 0``, else on Ray rollout workers)."""
    from rlblocks.registry import RunOptions, build_agent, get_algo
    from rlblocks.run import layout_options

    spec = get_algo("ppo")
    cfg = spec.config_cls().updated({"num_envs": num_envs}, "benchmark")
    cfg.validate()
    record = {"algo": "ppo", "env_id": env_id, "config": cfg.to_dict(),
              "options": {"backend": "ray", "workers": workers} if workers else {}}
    opts = RunOptions(None, total, eval_every=0, checkpoint_every=0, progress=False, tensorboard=False,
                      **layout_options(record, total))
    return build_agent(spec, env_id, cfg, seed, torch.device("cpu"), opts), cfg


def timed(env_id: str, num_envs: int, rollouts: int, seed: int, workers: int) -> dict:
    agent, cfg = build(env_id, num_envs, 10**9, seed, workers)
    per_rollout = cfg.n_steps * num_envs
    try:
        agent.train(per_rollout)  # the first rollout and update: start-up effects (lazy imports, first calls)
        start, cpu = time.perf_counter(), time.process_time()
        agent.train(per_rollout * (rollouts + 1))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        out = {"steps_per_s": per_rollout * rollouts / elapsed,
               "driver_cpu_per_step_us": 1e6 * cpu / (per_rollout * rollouts)}
        if workers:
            timings = agent.env.timings[1:]  # those of the timed rollouts
            out.update(overhead_ms=1e3 * statistics.median(t["collect_s"] - t["worker_s"] for t in timings),
                       collect_s=statistics.median(t["collect_s"] for t in timings),
                       sent_bytes=timings[-1]["sent_bytes"], received_bytes=timings[-1]["received_bytes"])
        return out
    finally:
        from rlblocks.module import Closeable

        for module in agent.modules_of(Closeable):
            module.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="HalfCheetah-v5")
    p.add_argument("--num-envs", type=int, default=2, help="envs in total (split among the workers)")
    p.add_argument("--rollouts", type=int, default=3, help="timed rollouts (each 2048 × num-envs steps + an update)")
    p.add_argument("--workers", default="1,2")
    p.add_argument("--repeats", type=int, default=1,
                   help="alternate the in-process run and the Ray runs this many times; ratios are the medians of "
                        "the per-repeat ratios (a shared machine drifts between runs)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    from rlblocks.distributed.session import ray_session

    counts = [int(x) for x in args.workers.split(",")]
    print(f"torch {torch.__version__}, 1 thread; PPO {args.env}, {args.num_envs} envs, {args.rollouts} timed rollouts "
          f"of {2048 * args.num_envs} steps, {args.repeats} repeats")
    results: dict[int, list[dict]] = {w: [] for w in [0, *counts]}
    with tempfile.TemporaryDirectory(), ray_session():
        for _ in range(args.repeats):
            for w in [0, *counts]:
                results[w].append(timed(args.env, args.num_envs, args.rollouts, args.seed, w))
    base = [r["steps_per_s"] for r in results[0]]
    print(f"in-process            {statistics.median(base):8.0f} steps/s (runs: {', '.join(f'{b:.0f}' for b in base)})")
    for w in counts:
        rs = results[w]
        ratio = statistics.median(r["steps_per_s"] / b for r, b in zip(rs, base))
        med = {key: statistics.median(r[key] for r in rs) for key in ("steps_per_s", "collect_s", "overhead_ms")}
        print(f"ray, {w} worker{'s' if w > 1 else ' '}        {med['steps_per_s']:8.0f} steps/s ({ratio:.2f} x in-process); "
              f"per iteration: collect {med['collect_s']:.2f} s, overhead {med['overhead_ms']:.0f} ms, weights sent "
              f"{rs[-1]['sent_bytes']} B (one ray.put), experience received {rs[-1]['received_bytes']} B")


if __name__ == "__main__":
    main()
