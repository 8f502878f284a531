"""Speed matrix: every algorithm against its Stable-Baselines3 / sb3-contrib peer in one invocation.

Each cell runs the same work on both sides: the same env, hyperparameters and env steps, evaluation,
checkpoints and logging off on both. Each side is a whole process (``python speed_matrix.py --run
CELL SIDE``: imports, construction and training), timed from its start to its exit; the cells run
one after another, rlblocks and the peer of a cell next to each other, ``--repeats`` times, at
``--threads`` torch threads. Prints one table: env steps per second of each side (median of the
repeats) and the ratio rlblocks / peer. Run it alone on the machine (other load distorts ratios).

    python benchmarks/speed_matrix.py                      # every cell, 1 repeat
    python benchmarks/speed_matrix.py --cells dqn,ppo1 --repeats 3
    python benchmarks/speed_matrix.py --out docs/results/speed_matrix.csv

Needs ``pip install -e ".[mujoco,robotics,bench]"``.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HALF_CHEETAH = "HalfCheetah-v5"
#: cell -> (description, env steps)
CELLS = {
    "sac": ("SAC HalfCheetah-v5, SB3 defaults (256x256, batch 256, 1 update per step)", 3000),
    "td3": ("TD3 HalfCheetah-v5, 256x256, Gaussian noise 0.1", 3000),
    "ddpg": ("DDPG HalfCheetah-v5, 256x256, Gaussian noise 0.1", 3000),
    "dqn": ("DQN Acrobot-v1, rl-zoo (256x256, batch 128, 4 updates / 4 steps, plain Q targets)", 20000),
    "ppo1": ("PPO HalfCheetah-v5, 1 env, 2048 x 32 minibatches x 10 epochs, obs+return norm", 16384),
    "ppo8": ("PPO HalfCheetah-v5, 8 envs", 32768),
    "rppo": ("recurrent PPO CartPoleNoVel-v1, LSTM 64, rl-zoo ppo_lstm (8 envs x 32 steps)", 16384),
    "sac_her": ("SAC + HER FetchReach-v4 (future 4, 256x256, batch 256, gamma 0.98)", 3000),
}


# ----------------------------------------------------------------------------- rlblocks side
def rlblocks_agent(cell: str, seed: int, steps: int):
    import torch

    from rlblocks.registry import RunOptions, build_agent, get_algo
    from rlblocks.run import resolve_config

    off_policy = {"learning_starts": "100"}
    deterministic = {**off_policy, "hidden_sizes": "256,256", "exploration_noise": "0.1"}
    algo, env_id, overrides, preset = {
        "sac": ("sac", HALF_CHEETAH, off_policy, None),
        "td3": ("td3", HALF_CHEETAH, deterministic, None),
        "ddpg": ("ddpg", HALF_CHEETAH, deterministic, None),
        "dqn": ("dqn", "Acrobot-v1", {"lr": "6.3e-4", "batch_size": "128", "buffer_size": "50000",
                                      "learning_starts": "0", "train_freq": "4", "gradient_steps": "4",
                                      "target_update_interval": "250", "exploration_steps": "2400",
                                      "eps_end": "0.1", "hidden_sizes": "256,256", "double_q": "false"}, None),
        "ppo1": ("ppo", HALF_CHEETAH, {"num_envs": "1"}, None),
        "ppo8": ("ppo", HALF_CHEETAH, {"num_envs": "8"}, None),
        "rppo": ("ppo", "CartPoleNoVel-v1", {"arch": "lstm"}, None),
        "sac_her": ("sac", "FetchReach-v4", {"tau": "0.005", "buffer_size": "1000000"}, "fetch-cpu"),
    }[cell]
    spec = get_algo(algo)
    cfg = resolve_config(spec, env_id, overrides=overrides, preset=preset)
    opts = RunOptions(None, steps, eval_every=0, checkpoint_every=0, progress=False, tensorboard=False)
    return build_agent(spec, env_id, cfg, seed, torch.device("cpu"), opts)


def run_rlblocks(cell: str, seed: int, steps: int) -> None:
    agent = rlblocks_agent(cell, seed, steps)
    agent.train(steps)
    agent.env.close()


# ----------------------------------------------------------------------------- peer side
def run_peer(cell: str, seed: int, steps: int) -> None:
    import gymnasium as gym
    import numpy as np
    from stable_baselines3 import DDPG, DQN, PPO, SAC, TD3, HerReplayBuffer
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.noise import NormalActionNoise
    from stable_baselines3.common.vec_env import VecNormalize

    import rlblocks.envs  # noqa: F401 - registers CartPoleNoVel-v1

    if cell in ("sac", "td3", "ddpg"):
        env = make_vec_env(HALF_CHEETAH, n_envs=1, seed=seed)
        if cell == "sac":
            model = SAC("MlpPolicy", env, seed=seed, device="cpu", learning_starts=100)
        else:
            act_dim = env.action_space.shape[0]
            noise = NormalActionNoise(np.zeros(act_dim), 0.1 * np.ones(act_dim))
            cls = TD3 if cell == "td3" else DDPG
            model = cls("MlpPolicy", env, seed=seed, device="cpu", learning_starts=100, action_noise=noise,
                        policy_kwargs={"net_arch": [256, 256]})
    elif cell == "dqn":
        env = make_vec_env("Acrobot-v1", n_envs=1, seed=seed)
        model = DQN("MlpPolicy", env, learning_rate=6.3e-4, batch_size=128, buffer_size=50_000, learning_starts=0,
                    gamma=0.99, target_update_interval=250, train_freq=4, gradient_steps=4,
                    exploration_fraction=min(1.0, 2400 / steps), exploration_final_eps=0.1,
                    policy_kwargs={"net_arch": [256, 256]}, seed=seed, device="cpu")
    elif cell in ("ppo1", "ppo8"):
        n = 1 if cell == "ppo1" else 8
        env = VecNormalize(make_vec_env(HALF_CHEETAH, n_envs=n, seed=seed))
        model = PPO("MlpPolicy", env, n_steps=2048, batch_size=2048 * n // 32, n_epochs=10, seed=seed, device="cpu")
    elif cell == "rppo":
        from sb3_contrib import RecurrentPPO

        env = make_vec_env("CartPoleNoVel-v1", n_envs=8, seed=seed)
        model = RecurrentPPO("MlpLstmPolicy", env, n_steps=32, batch_size=256, n_epochs=20, gamma=0.98,
                             gae_lambda=0.8, learning_rate=lambda p: p * 1e-3, clip_range=lambda p: p * 0.2,
                             ent_coef=0.0, seed=seed, device="cpu",
                             policy_kwargs={"lstm_hidden_size": 64, "enable_critic_lstm": True,
                                            "net_arch": {"pi": [64], "vf": [64]}})
    elif cell == "sac_her":
        import gymnasium_robotics  # noqa: F401 - registers FetchReach

        env = gym.make("FetchReach-v4")
        model = SAC("MultiInputPolicy", env, replay_buffer_class=HerReplayBuffer,
                    replay_buffer_kwargs={"n_sampled_goal": 4, "goal_selection_strategy": "future"},
                    learning_starts=1000, batch_size=256, gamma=0.98, learning_rate=1e-3, tau=0.005,
                    buffer_size=1_000_000, policy_kwargs={"net_arch": [256, 256]}, seed=seed, device="cpu")
    else:
        raise ValueError(cell)
    model.learn(total_timesteps=steps)


# ----------------------------------------------------------------------------- the matrix
def timed(cell: str, side: str, threads: int, seed: int, steps: int) -> float:
    """Wall seconds of one whole process running ``steps`` env steps of ``side`` of ``cell``."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    start = time.perf_counter()
    r = subprocess.run([sys.executable, __file__, "--run", cell, side, "--seed", str(seed), "--steps", str(steps)],
                       env=env,
                       capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if r.returncode != 0:
        raise RuntimeError(f"{cell} {side} failed:\n{r.stderr[-2000:]}")
    return wall


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", default=",".join(CELLS), help=f"comma-separated, of {', '.join(CELLS)}")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", type=float, default=1.0, help="multiply every cell's env steps (0.1: a smoke test)")
    p.add_argument("--steps", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=None, help="also write the table as CSV")
    p.add_argument("--run", nargs=2, metavar=("CELL", "SIDE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.run:
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        cell, side = args.run
        (run_rlblocks if side == "rlblocks" else run_peer)(cell, args.seed, args.steps)
        return 0
    rows = []
    print(f"{'cell':8s} {'rlblocks steps/s':>16s} {'peer steps/s':>13s} {'ratio':>6s}  what")
    for cell in args.cells.split(","):
        what, steps = CELLS[cell][0], max(1, round(CELLS[cell][1] * args.scale))
        walls = {"rlblocks": [], "peer": []}
        for _ in range(args.repeats):
            for side, times in walls.items():
                times.append(timed(cell, side, args.threads, args.seed, steps))
        ours, peer = (steps / statistics.median(walls[s]) for s in ("rlblocks", "peer"))
        rows.append({"cell": cell, "steps": steps, "rlblocks_steps_per_s": round(ours, 1),
                     "peer_steps_per_s": round(peer, 1), "ratio": round(ours / peer, 2), "what": what})
        print(f"{cell:8s} {ours:16.1f} {peer:13.1f} {ours / peer:6.2f}  {what}", flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w", newline="") as fh:
            writer = csv.DictWriter(fh, list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
