"""Which Ray layout a run gets: the module swaps of ``--backend ray`` (DESIGN.md, "Roles")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def ray_layout(make_agent: Callable[[int, int], Any], config: dict[str, Any], workers: int,
               off_policy: bool) -> dict[str, Any]:
    """The :class:`~rlblocks.registry.RunOptions` fields of a Ray run.

    On-policy: the ``env`` module is :class:`~rlblocks.distributed.rollout_workers.RolloutWorkers`
    (``workers`` actors splitting ``num_envs``, one rollout of ``n_steps`` per iteration).
    Off-policy: :class:`~rlblocks.distributed.interactors.Interactors` (``workers`` actors of
    ``num_envs`` envs each, weights published every ``publish_every`` updates) and the evaluator
    actor :class:`~rlblocks.distributed.evaluator.RayEvaluator`.

    Args:
        make_agent: ``make_agent(num_envs, seed)`` → an acting agent (see
            :func:`rlblocks.registry.acting_agent`), shipped to the actors by reference.
        config: the run's resolved config (``config.json``'s ``"config"``).
    """
    if not off_policy:
        from rlblocks.distributed.rollout_workers import RolloutWorkers

        def env_runner(env_id, num_envs, seed, mode, allow_goal=False):
            return RolloutWorkers(make_agent, env_id, num_envs, seed, workers, int(config["n_steps"]),
                                  allow_goal=allow_goal)

        return {"env_runner": env_runner}
    from rlblocks.distributed.evaluator import RayEvaluator
    from rlblocks.distributed.interactors import Interactors

    def interactors(env_id, num_envs, seed, mode, allow_goal=False):
        return Interactors(make_agent, env_id, num_envs, seed, workers, allow_goal=allow_goal)

    def evaluator(run_dir, env_id, every, episodes, seed):
        return RayEvaluator(make_agent, run_dir, env_id, every, episodes, seed)

    return {"env_runner": interactors, "evaluator": evaluator}
