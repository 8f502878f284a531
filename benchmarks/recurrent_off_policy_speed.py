"""Updates per second of recurrent SAC (``arch=lstm|gru``) against feed-forward SAC, one thread.

Each update samples from a replay buffer filled with PendulumNoVel-v1-shaped transitions (obs 3,
action 1, 200-step episodes) and runs SAC's three losses. Two comparisons at the same batch:

* **same trained steps**: recurrent ``B`` sequences × ``T`` steps against feed-forward ``B·T`` rows;
* **same sample count**: recurrent ``B`` sequences × ``T`` steps against feed-forward ``B`` rows.

Run: ``OMP_NUM_THREADS=1 python benchmarks/recurrent_off_policy_speed.py [--batch 32] [--seq-len 16]
[--burn-in 4] [--rnn-size 32] [--hidden 64,64] [--updates 200]``; prints one row per setting with
updates/s, ms per update and the ratio to feed-forward SAC at ``B·T`` rows. The machine's load
moves the absolute numbers; the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import time

import torch

from rlblocks.registry import RunOptions, build_agent, get_algo
from rlblocks.run import resolve_config

ENV = "PendulumNoVel-v1"


def updates_per_second(overrides: dict, n: int, seed: int = 0) -> float:
    """SAC updates per second (sampling and normalisation included) after 2,000 stored steps."""
    spec = get_algo("sac")
    cfg = resolve_config(spec, ENV, overrides={**overrides, "learning_starts": 10**9})
    agent = build_agent(spec, ENV, cfg, seed, torch.device("cpu"),
                        RunOptions(None, 10**9, eval_every=0, checkpoint_every=0, progress=False, tensorboard=False))
    agent.train(2000)  # random actions: fills the replay with 10 episodes
    algo = agent.algo

    def one():
        algo.metrics.add(algo.update(algo.normalized(agent.replay.sample(cfg.batch_size))))

    for _ in range(10):
        one()
    start = time.perf_counter()
    for _ in range(n):
        one()
    elapsed = time.perf_counter() - start
    algo.pop_metrics()
    agent.env.close()
    return n / elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32, help="sequences per batch (B)")
    p.add_argument("--seq-len", type=int, default=16, help="trained steps per sequence (T)")
    p.add_argument("--burn-in", type=int, default=4)
    p.add_argument("--rnn-size", type=int, default=32)
    p.add_argument("--hidden", default="64,64")
    p.add_argument("--updates", type=int, default=200)
    args = p.parse_args()
    torch.set_num_threads(1)
    B, T = args.batch, args.seq_len
    common = {"hidden_sizes": args.hidden, "buffer_size": 100_000}
    rec = {**common, "batch_size": B, "seq_len": T, "burn_in": args.burn_in, "rnn_size": args.rnn_size}
    rows = [(f"feed-forward, {B * T} rows (= B*T)", {**common, "batch_size": B * T}),
            (f"feed-forward, {B} rows (= B)", {**common, "batch_size": B})]
    rows += [(f"{arch}, {B} seq x {T} steps, burn-in {args.burn_in}", {**rec, "arch": arch}) for arch in ("lstm", "gru")]
    rows += [(f"lstm, {B} seq x {T} steps, no burn-in", {**rec, "arch": "lstm", "burn_in": 0})]
    base = None
    print(f"SAC on {ENV} shapes, hidden {args.hidden}, rnn_size {args.rnn_size}, 1 thread, {args.updates} updates each")
    for name, overrides in rows:
        ups = updates_per_second(overrides, args.updates)
        base = ups if base is None else base
        print(f"{name:44s} {ups:7.1f} updates/s {1e3 / ups:7.1f} ms  x{ups / base:5.2f} of FF at B*T rows", flush=True)


if __name__ == "__main__":
    main()
