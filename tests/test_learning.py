"""Learning tests: each algorithm reaches a return threshold on Pendulum-v1 within a step budget.

Training stops at the first evaluation (10 deterministic episodes, every 1,000 steps) at or above
the threshold, so a passing run costs only the steps it needs; a run that never reaches it
fails with the best score seen.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlblocks.components.evaluator import evaluate
from rlblocks.registry import RunOptions, build_agent, get_algo
from rlblocks.run import resolve_config

ENV = "Pendulum-v1"


def steps_to_reach(algo: str, seed: int, budget: int, threshold: float, every: int = 1000):
    spec = get_algo(algo)
    cfg = resolve_config(spec, ENV)  # the Pendulum preset
    opts = RunOptions(None, budget, eval_every=0, checkpoint_every=0, progress=False, tensorboard=False)
    agent = build_agent(spec, ENV, cfg, seed, torch.device("cpu"), opts)
    scores = []
    try:
        for steps in range(every, budget + 1, every):
            agent.train(steps)
            if steps < cfg.learning_starts + every:
                continue
            score = float(np.mean(evaluate(agent, ENV, 10, seed=10_000 + seed)))
            scores.append((steps, round(score, 1)))
            if score >= threshold:
                return steps, scores
    finally:
        agent.env.close()
    return None, scores


@pytest.mark.parametrize("algo,budget,threshold", [("sac", 12_000, -250.0), ("td3", 12_000, -250.0),
                                                   ("ddpg", 15_000, -300.0)])
@pytest.mark.parametrize("seed", [0, 1])
def test_reaches_threshold_on_pendulum(algo, budget, threshold, seed, one_thread):
    reached, scores = steps_to_reach(algo, seed, budget, threshold)
    assert reached is not None, f"{algo} seed {seed} never reached {threshold} within {budget} steps: {scores}"
    assert reached <= budget
