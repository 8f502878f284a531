"""On-policy rollout workers (r2l's ``--workers``; RLlib's rollout workers): the ``env`` module of a
``--backend ray`` PPO run."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rlblocks.distributed.workers import WorkerPool, cat_tree, index_tree, nbytes_tree


class RolloutWorkers(WorkerPool):
    """Synchronous rollout collection on Ray workers, seen by the learner as its vector env.

    Once per rollout (when the previous one is used up) the driver publishes the policy and the
    normaliser statistics (one ``ray.put``, the reference to every worker), each worker steps its
    ``num_envs / workers`` envs ``steps_per_collect`` times with that Actor copy, and the driver
    concatenates the results along the env axis: ``[steps_per_collect, num_envs, ...]``. Then
    :meth:`step` hands out one vector step at a time, so the driver's modules run as in-process:
    the ``normalizer`` folds every worker's observations into its running statistics (the merge of
    the workers' statistics: Chan et al.'s parallel update over all their observations), the
    ``return_normalizer`` scales rewards, the ``rollout`` stores the workers' normalised
    observations and raw actions, and PPO updates when the rollout is full. Compared with the
    in-process run, the workers act with the normaliser statistics of the rollout's start, as
    r2l's and RLlib's workers do; the learning statistics are otherwise the same.

    ``obs`` is the observation each env is at (the last one of the batch once it is used up: PPO's
    bootstrap value). Checkpoints hold the unused rest of the batch and every worker's env state
    and generator, so a resumed run continues exactly where the checkpoint was taken.

    Args:
        steps_per_collect: vector steps per collection: PPO's ``n_steps``.
        others: see :class:`~rlblocks.distributed.workers.WorkerPool`.

    Attributes:
        timing: ``{"collect_s", "worker_s", "sent_bytes", "received_bytes"}`` of the latest
            collection: the driver's wall time from publishing to having every result, the slowest
            worker's own stepping time (the difference is the layout's per-iteration overhead),
            the bytes of weights published (once, whatever the worker count) and the bytes of
            experience the workers sent back. ``timings``: every collection's.
    """

    def __init__(self, make_agent: Callable[[int, int], Any], env_id: str, num_envs: int, seed: int, workers: int,
                 steps_per_collect: int, **kwargs):
        super().__init__(make_agent, env_id, num_envs, seed, workers, **kwargs)
        self.steps_per_collect = steps_per_collect
        self._batch = None
        self._finished: list[list[dict]] = []
        self._last_obs = None
        self._t = self._len = 0
        self.timing: dict[str, float] = {}
        self.timings: list[dict[str, float]] = []  # one per collection of this session

    def step(self):
        """The next vector step ``(exp, finished)``, collecting a new batch when this one is used up."""
        if self._t >= self._len:
            self._collect()
        t = self._t
        exp, finished = index_tree(self._batch, t), self._finished[t]
        self._t += 1
        self.obs = index_tree(self._batch["obs"], self._t) if self._t < self._len else self._last_obs
        return exp, finished

    def _collect(self) -> None:
        start = time.perf_counter()
        n = self.steps_per_collect
        ref = self.publish()
        futures = [self.request(w, ref, n) for w in range(self.workers)]
        results = [self.get(w, f, ref, n) for w, f in enumerate(futures)]
        self._batch = cat_tree([r["steps"] for r in results], 1)
        per_worker = [self.offset_finished(w, r["finished"]) for w, r in enumerate(results)]
        self._finished = [[ep for done in step for ep in done] for step in zip(*per_worker)]
        self._last_obs = cat_tree([r["last_obs"] for r in results], 0)
        self._t, self._len = 0, n
        self.timing = {"collect_s": time.perf_counter() - start, "worker_s": max(r["seconds"] for r in results),
                       "sent_bytes": self.shipped_bytes,
                       "received_bytes": sum(nbytes_tree(r["steps"]) + nbytes_tree(r["last_obs"]) for r in results)}
        self.timings.append(self.timing)

    def state_dict(self):
        return {"batch": self._batch, "finished": self._finished, "last_obs": self._last_obs, "t": self._t,
                "len": self._len, "obs": self.obs, "workers": self.worker_states()}

    def load_state_dict(self, state):
        self.load_worker_states(state.get("workers"))
        self._batch, self._finished, self._last_obs = state["batch"], state["finished"], state["last_obs"]
        self._t, self._len, self.obs = int(state["t"]), int(state["len"]), state["obs"]
