"""Off-policy interactors: STEVE's asynchronous process layout (REFERENCES.md § STEVE) for DDPG,
TD3 and SAC (and DQN) on ``--backend ray``."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from rlblocks.distributed.workers import WorkerPool, index_tree


class Interactors(WorkerPool):
    """The ``env`` module of the asynchronous layout: ``workers`` interactor actors, each stepping
    its own ``num_envs`` envs with the latest policy the learner published.

    The driver process is the learner: its agent owns the replay, the critic, the update (and a
    world-model learner when the config adds one: the slot STEVE's separate world-model learner
    takes). Every interactor always has one request of ``chunk`` vector steps in flight, so envs
    step while the learner updates; :meth:`step` hands the learner one vector step of
    ``num_envs`` transitions at a time from whichever interactor delivered, and the learner's own
    schedule then updates: ``num_envs · train_freq / gradient_steps`` frames per update, exactly as
    in-process (the bounded ratio: interactors are at most ``workers · chunk`` vector steps ahead
    of the learner, because a new request goes out only when a result is taken). The weights of
    ``policy`` and ``normalizer`` are published (one ``ray.put``) every ``publish_every`` updates;
    until ``learning_starts`` the interactors act at random, as the in-process warm-up.

    Each interactor's steps enter the replay as vector steps of their own, so n-step returns and
    HER (which need each env's steps in order) are refused for this layout by ``run.check_backend``.
    A checkpoint holds the learner (replay, networks, counters), not the interactors' envs: a
    resumed run starts new episodes (seeded from the env steps reached) and is not bit-exact
    (DESIGN.md, "Roles"). Dead interactors are restarted and asked again (see :class:`WorkerPool`).

    Args:
        num_envs: envs of each interactor (the config's ``num_envs``, the replay's width).
        chunk: vector steps per request.
        publish_every: learner updates between weight publications (K).
        others: see :class:`~rlblocks.distributed.workers.WorkerPool`.
    """

    role = "interactor"

    def __init__(self, make_agent: Callable[[int, int], Any], env_id: str, num_envs: int, seed: int, workers: int,
                 chunk: int = 50, publish_every: int = 50, **kwargs):
        super().__init__(make_agent, env_id, num_envs * workers, seed, workers, **kwargs)
        self.num_envs = num_envs  # the width of one vector step handed to the learner
        self.chunk, self.publish_every = chunk, publish_every
        self._queue: deque = deque()
        self._futures: dict[int, Any] = {}
        self._ref, self._published_at = None, 0
        self.collected = 0  # vector steps received

    def _submit(self, w: int) -> None:
        if self._ref is None or self.agent.updates - self._published_at >= self.publish_every:
            self._ref, self._published_at = self.publish(), self.agent.updates
        self._futures[w] = self.request(w, self._ref, self.chunk)

    def step(self):
        """The next vector step ``(exp, finished)`` from whichever interactor delivered first."""
        if not self._queue:
            if not self._futures:
                for w in range(self.workers):
                    self._submit(w)
            ready, _ = self.ray.wait(list(self._futures.values()), num_returns=1)
            w = next(i for i, f in self._futures.items() if f == ready[0])
            result = self.get(w, self._futures.pop(w), self._ref, self.chunk)
            self._submit(w)  # with the newest weights, while the learner works through this result
            self.collected += self.chunk
            for t in range(self.chunk):
                self._queue.append((index_tree(result["steps"], t), result["finished"][t]))
        return self._queue.popleft()

    def state_dict(self):
        return {"published_at": self._published_at}

    def load_state_dict(self, state):
        """A resumed run: new episodes in every interactor, seeded from the env steps reached."""
        self._published_at = int(state.get("published_at", 0))
        base = self.seed + 7919 * (self.agent.env_steps // max(1, self.num_envs))
        self.ray.get([a.reseed.remote((base + w * self.num_envs) % 2**31) for w, a in enumerate(self.actors)])
