"""Learning tests: each algorithm reaches a return threshold on Pendulum-v1 within a step budget.

Training stops at the first evaluation (10 deterministic episodes, every 1,000 steps) at or above
the threshold, so a passing run costs only the steps it needs; a run that never reaches it
fails with its whole evaluation history.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlblocks.components.evaluator import evaluate
from rlblocks.registry import RunOptions, build_agent, get_algo
from rlblocks.run import resolve_config

ENV = "Pendulum-v1"


def learning_curve(algo: str, seed: int, budget: int, threshold: float, every: int = 1000) -> list[tuple[int, float]]:
    """Evaluation history ``[(env steps trained, mean return of 10 evaluation episodes), ...]``, one
    entry every ``every`` steps after the warm-up, up to ``budget``; stops after the first entry at or
    above ``threshold``. The steps are the agent's own count, not the loop's target."""
    spec = get_algo(algo)
    cfg = resolve_config(spec, ENV)  # the Pendulum preset
    opts = RunOptions(None, budget, eval_every=0, checkpoint_every=0, progress=False, tensorboard=False)
    agent = build_agent(spec, ENV, cfg, seed, torch.device("cpu"), opts)
    history: list[tuple[int, float]] = []
    try:
        for steps in range(every, budget + 1, every):
            agent.train(steps)
            if steps < cfg.learning_starts + every:
                continue
            history.append((agent.env_steps, float(np.mean(evaluate(agent, ENV, 10, seed=10_000 + seed)))))
            if history[-1][1] >= threshold:
                break
    finally:
        agent.env.close()
    return history


def assert_reached(history: list[tuple[int, float]], threshold: float, budget: int, what: str) -> int:
    """The env steps of the first evaluation at or above ``threshold``; fails, showing ``history``,
    if there is none or it came after ``budget`` steps."""
    shown = ", ".join(f"{steps}: {score:.1f}" for steps, score in history) or "no evaluation"
    reached = next((steps for steps, score in history if score >= threshold), None)
    assert reached is not None, f"{what} never reached {threshold} within {budget} steps; evaluations {shown}"
    assert reached <= budget, (f"{what} reached {threshold} only at {reached} steps, over the budget {budget}; "
                               f"evaluations {shown}")
    return reached


@pytest.mark.parametrize("algo,budget,threshold", [("sac", 12_000, -250.0), ("td3", 12_000, -250.0),
                                                   ("ddpg", 15_000, -300.0)])
@pytest.mark.parametrize("seed", [0, 1])
def test_reaches_threshold_on_pendulum(algo, budget, threshold, seed, one_thread):
    history = learning_curve(algo, seed, budget, threshold)
    assert_reached(history, threshold, budget, f"{algo} seed {seed}")


def test_assert_reached_fails_with_the_history():
    """The check the learning tests make, on hand-made curves: it passes only when the bar is met
    at or before the budget, and says where the curve went when it is not."""
    rising = [(2000, -900.0), (3000, -400.0), (4000, -240.0), (5000, -300.0)]
    assert assert_reached(rising, -250.0, 12_000, "x") == 4000  # the first evaluation at the bar, not a later one
    with pytest.raises(AssertionError, match=r"never reached -250.0 within 12000 steps; evaluations 2000: -900.0, "):
        assert_reached(rising[:2], -250.0, 12_000, "x")
    with pytest.raises(AssertionError, match=r"only at 4000 steps, over the budget 3000"):
        assert_reached(rising, -250.0, 3000, "x")
    with pytest.raises(AssertionError, match="no evaluation"):
        assert_reached([], -250.0, 3000, "x")
