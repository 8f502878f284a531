"""An evaluator actor (STEVE's evaluator process): greedy episodes away from the learner, rows
appended to ``eval.csv``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rlblocks.components.csv_log import append_csv_row
from rlblocks.components.evaluator import EVAL_COLUMNS, GOAL_EVAL_COLUMNS, Evaluator, eval_vec_env, evaluate


class EvaluatorActor:
    """A Ray actor (``ray.remote(EvaluatorActor)``) with an acting agent (``make_agent(1, seed)``).

    :meth:`evaluate` loads the weights it is sent, runs ``episodes`` greedy episodes
    (:func:`~rlblocks.components.evaluator.evaluate`, episode ``k`` seeded ``seed + k``) and appends
    ``hours, epoch, frames, score`` (and ``success`` for goal envs) to ``path``.
    """

    def __init__(self, make_agent: Callable[[int, int], Any], env_id: str, episodes: int, seed: int,
                 path: str | None):
        import torch

        torch.set_num_threads(1)
        self.agent = make_agent(1, seed)
        self.env_id, self.episodes, self.seed = env_id, episodes, seed
        self.path = Path(path) if path is not None else None
        self._vec = None  # the evaluation envs, built at the first evaluation and kept

    def evaluate(self, weights: dict, row: dict) -> tuple[float, float, float | None]:
        """``(mean score, std, mean success or None)``; the row is written before returning."""
        self.agent.policy.load_acting_state(weights)
        goal = self.agent.env.goal
        successes: list[float] | None = [] if goal else None
        if self._vec is None:
            self._vec = eval_vec_env(self.env_id, self.episodes, goal=goal)
        returns = evaluate(self.agent, self.env_id, self.episodes, self.seed, deterministic=True,
                           successes=successes, vec=self._vec)
        row = {**row, "score": float(np.mean(returns))}
        if goal:
            row["success"] = float(np.mean(successes))
        if self.path is not None:
            append_csv_row(self.path, GOAL_EVAL_COLUMNS if goal else EVAL_COLUMNS, row)
        return row["score"], float(np.std(returns)), row.get("success")


class RayEvaluator(Evaluator):
    """The ``evaluator`` module of the asynchronous layout: the schedule of :class:`Evaluator`
    (every ``every`` env steps and at the end; ``eval.csv`` rows after a resumed checkpoint
    dropped), but each evaluation runs in an :class:`EvaluatorActor` while the learner trains on.
    The learner sends the policy's acting state (networks and normaliser statistics, one ``ray.put``) and the row's
    ``hours, epoch, frames``; the actor appends the row. Scores reach the logger (TensorBoard, the
    progress bar) when they come back; the run's end and every checkpoint wait for every pending evaluation.

    The actor reserves no CPU from Ray (it runs a few episodes now and then), so it fits beside
    interactors that take every CPU of a small machine.
    """

    def __init__(self, make_agent: Callable[[int, int], Any], run_dir: Path | None, env_id: str, every: int,
                 episodes: int, seed: int):
        super().__init__(run_dir, env_id, every, episodes, seed)
        self.make_agent = make_agent
        self._actor = None
        self._pending: list = []

    def setup(self) -> None:
        import ray

        self.ray = ray
        actor_cls = ray.remote(EvaluatorActor).options(num_cpus=0, max_restarts=3, max_task_retries=3)
        self._actor = actor_cls.remote(self.make_agent, self.env_id, self.episodes, self.seed,
                                       str(self.path) if self.path is not None else None)

    def run(self) -> None:
        agent = self.agent
        weights = self.ray.put(agent.policy.acting_state())
        row = {"hours": agent.logger.hours() if "logger" in agent.modules else 0.0,
               "epoch": agent.updates, "frames": agent.env_steps}
        self._pending.append((row, self._actor.evaluate.remote(weights, row)))
        self.last_frames = agent.env_steps

    def after_step(self) -> None:
        super().after_step()
        if self._pending:
            self._collect(wait=False)

    def on_train_end(self) -> None:
        super().on_train_end()
        self._collect(wait=True)

    def state_dict(self):
        """The schedule, once every evaluation sent so far has written its row: a checkpoint must not
        count an evaluation whose row a kill could still lose (a resume only redoes what comes after
        the checkpoint). Waits for at most one evaluation's time at each checkpoint."""
        self._collect(wait=True)
        return super().state_dict()

    def _collect(self, wait: bool) -> None:
        """Hand finished evaluations to the logger (all of them, waiting, with ``wait``)."""
        while self._pending:
            row, future = self._pending[0]
            if not wait and not self.ray.wait([future], timeout=0)[0]:
                return
            score, std, success = self.ray.get(future)
            self._pending.pop(0)
            self.history.append({**row, "score": score})
            if "logger" in self.agent.modules:
                self.agent.logger.record_eval(score, std, success)

    def close(self) -> None:
        super().close()
        if self._actor is not None:
            try:
                self.ray.kill(self._actor, no_restart=True)
            except Exception:  # noqa: BLE001,S110 - Ray already shut down: nothing left to stop
                pass
            self._actor = None
