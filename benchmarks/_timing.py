"""Shared by the benchmark scripts: time an rlblocks agent trained in-process."""

from __future__ import annotations

import time

import torch


def time_rlblocks(algo: str, env_id: str, cfg, steps: int, seed: int) -> tuple[float, float]:
    """``(env steps per wall second, env steps per CPU second)`` of ``agent.train(steps)`` for an agent
    of ``algo`` on ``env_id`` built from the validated config ``cfg``, evaluation, checkpoints,
    progress bar and TensorBoard off."""
    from rlblocks.registry import RunOptions, build_agent, get_algo

    agent = build_agent(get_algo(algo), env_id, cfg, seed, torch.device("cpu"),
                        RunOptions(None, steps, eval_every=0, checkpoint_every=0, progress=False, tensorboard=False))
    start, cpu = time.perf_counter(), time.process_time()
    agent.train(steps)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    agent.env.close()
    return agent.env_steps / elapsed, agent.env_steps / cpu
