"""Recurrent PPO env steps per second, rlblocks vs sb3-contrib's ``RecurrentPPO``, whole runs in turn.

Both with rl-zoo's ``ppo_lstm`` settings for ``CartPoleNoVel-v1``: 8 envs × 32 steps, one
256-step minibatch, 20 epochs, γ 0.98, λ 0.8, lr 1e-3 (linear), clip 0.2 (linear), an LSTM of 64
for each of actor and critic, net_arch [64] after it, no normalisation, sync (SB3: Dummy) vector
envs. rlblocks runs its CartPoleNoVel preset (``algos/recurrent_ppo.py``). Reports wall-clock
steps/s, steps per CPU-second of the process, and the final mean training return of each run.

    OMP_NUM_THREADS=1 python benchmarks/recurrent_ppo_throughput.py --steps 50000 --repeats 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _timing import time_rlblocks

ENV = "CartPoleNoVel-v1"


def run_rlblocks(steps: int, seed: int, arch: str) -> tuple[float, float]:
    from rlblocks.registry import get_algo
    from rlblocks.run import resolve_config

    return time_rlblocks("ppo", ENV, resolve_config(get_algo("ppo"), ENV, overrides={"arch": arch}), steps, seed)


def run_sb3_contrib(steps: int, seed: int) -> tuple[float, float]:
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.env_util import make_vec_env

    import rlblocks.envs  # noqa: F401 - registers CartPoleNoVel-v1

    def linear(start: float):
        return lambda progress: progress * start

    env = make_vec_env(ENV, n_envs=8, seed=seed)
    model = RecurrentPPO("MlpLstmPolicy", env, n_steps=32, batch_size=256, n_epochs=20, gamma=0.98, gae_lambda=0.8,
                         learning_rate=linear(1e-3), clip_range=linear(0.2), ent_coef=0.0, seed=seed, device="cpu",
                         policy_kwargs={"lstm_hidden_size": 64, "enable_critic_lstm": True,
                                        "net_arch": {"pi": [64], "vf": [64]}})
    start, cpu = time.perf_counter(), time.process_time()
    model.learn(steps)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    env.close()
    return model.num_timesteps / elapsed, model.num_timesteps / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--arch", default="lstm", choices=("lstm", "gru"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = {"rlblocks": [], "sb3-contrib": []}
    for r in range(args.repeats):  # alternate, so drifting machine load hits both sides alike
        rows["rlblocks"].append(run_rlblocks(args.steps, r, args.arch))
        rows["sb3-contrib"].append(run_sb3_contrib(args.steps, r))
        print(f"repeat {r}: " + ", ".join(f"{k} {v[-1][0]:.0f} steps/s" for k, v in rows.items()), flush=True)
    ours = statistics.median(w for w, _ in rows["rlblocks"])
    theirs = statistics.median(w for w, _ in rows["sb3-contrib"])
    for name, values in rows.items():
        print(f"{name:12s} median {statistics.median(w for w, _ in values):8.0f} steps/s (wall), "
              f"{statistics.median(c for _, c in values):8.0f} steps/CPU-s")
    print(f"ratio rlblocks / sb3-contrib: {ours / theirs:.2f}x ({args.steps} steps, {args.threads} thread(s), "
          f"{args.arch})")


if __name__ == "__main__":
    main()
