"""Acting away from the learner: a Ray actor holding an Actor copy and its own vector env, and the
driver-side pool of them that ships weights and survives their deaths.

The acting seam (DESIGN.md, "Seams"): a worker builds an acting agent (``make_agent(num_envs,
seed)``: the algorithm's env runner, normaliser and policy, nothing that learns), loads the
policy's :meth:`~rlblocks.module.Actor.acting_state` (its networks and normaliser statistics) that the
driver puts in Ray's object store once per publication, and steps its envs. What acting computed for learning travels
back in each step's ``extras``; the driver feeds the steps to its own modules as if its env runner
had made them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from rlblocks.components.env_runner import EnvRunner
from rlblocks.components.events import log_event
from rlblocks.errors import CheckpointError, RLBlocksError
from rlblocks.module import Closeable, Module


# ----------------------------------------------------------------------------- trees of tensors
def stack_tree(trees: Sequence):
    """``[tree_t]`` of tensors (nested dicts) → one tree with the tensors stacked at dim 0."""
    first = trees[0]
    if isinstance(first, dict):
        return {k: stack_tree([t[k] for t in trees]) for k in first}
    return torch.stack(list(trees))


#: Leaves whose env axis is one further in: an actor's ``state`` has the env dimension at dim 1
#: (:class:`~rlblocks.module.Actor`), e.g. a recurrent policy's ``[K, N, H]`` hidden state in ``extras``.
STATE_KEY = "state"


def cat_tree(trees: Sequence, dim: int, _shift: int = 0):
    """Trees of the same structure → one tree with the tensors concatenated along their env axis:
    ``dim``, or ``dim + 1`` under a key ``"state"`` (:data:`STATE_KEY`)."""
    first = trees[0]
    if isinstance(first, dict):
        return {k: cat_tree([t[k] for t in trees], dim, int(k == STATE_KEY)) for k in first}
    return torch.cat(list(trees), dim + _shift)


def index_tree(tree, i: int):
    """Entry ``i`` (dim 0) of every tensor of ``tree``."""
    return {k: index_tree(v, i) for k, v in tree.items()} if isinstance(tree, dict) else tree[i]


def nbytes_tree(tree) -> int:
    """Bytes held by the tensors of a tree (nested dicts and lists)."""
    if isinstance(tree, torch.Tensor):
        return tree.numel() * tree.element_size()
    if isinstance(tree, dict):
        return sum(nbytes_tree(v) for v in tree.values())
    if isinstance(tree, (list, tuple)):
        return sum(nbytes_tree(v) for v in tree)
    return 0


# ----------------------------------------------------------------------------- the Ray actor
class RolloutWorker:
    """A Ray actor (``ray.remote(RolloutWorker)``): an acting agent with its own vector env.

    Args:
        make_agent: ``make_agent(num_envs, seed)`` → an acting :class:`~rlblocks.agent.Agent` whose
            ``env`` is an in-process :class:`EnvRunner` (env ``i`` seeded ``seed + i``).
        num_envs, seed: this worker's envs and their first seed.

    A worker restarted by Ray after its process died runs this constructor again: it then seeds
    its envs and its torch generator afresh (from its new pid), so it does not replay the episodes
    of the run's start, and it holds no weights until the driver sends them.
    """

    def __init__(self, make_agent: Callable[[int, int], Any], num_envs: int, seed: int):
        import warnings

        import ray

        torch.set_num_threads(1)
        with warnings.catch_warnings():  # deprecated in Ray 2.60 without a replacement that says the same
            warnings.simplefilter("ignore")
            self.restarted = bool(ray.get_runtime_context().was_current_actor_reconstructed)
        if self.restarted:
            seed = seed + 7919 * os.getpid()
        self.agent = make_agent(num_envs, seed % 2**31)
        if not isinstance(self.agent.env, EnvRunner):
            raise TypeError(f"a rollout worker needs an in-process EnvRunner, not {type(self.agent.env).__name__}")
        self.version = -1

    def pid(self) -> int:
        return os.getpid()

    def collect(self, weights: dict, version: int, env_steps: int, n: int) -> dict:
        """Load ``weights`` (``{module name: state_dict}``) unless ``version`` is loaded already, then
        step the envs ``n`` times, the actor's warm-up and exploration schedules at ``env_steps``
        (the learner's count) plus the steps taken here.

        Returns ``{"steps": tree [n, num_envs, ...] of the experience dicts, "finished": [[episode
        dicts] per step], "errors": [(step, env, message)], "last_obs": [num_envs, ...],
        "pid": int, "seconds": float}``.
        """
        start = time.perf_counter()
        agent = self.agent
        if version != self.version:
            agent.policy.load_acting_state(weights)
            self.version = version
        env = agent.env
        steps, finished, errors = [], [], []
        for t in range(n):
            exp, done = env.step(env_steps + t * env.num_envs)
            agent.env_steps += env.num_envs  # this worker's own count
            agent.vector_steps += 1
            for episode in done:
                agent.call("on_episode_end", episode)
            finished.append(done)
            errors += [(t, i, text) for i, text in env.last_errors]
            steps.append(exp)
        last_obs = {k: v.clone() for k, v in env.obs.items()} if isinstance(env.obs, dict) else env.obs.clone()
        return {"steps": stack_tree(steps), "finished": finished, "errors": errors, "last_obs": last_obs,
                "pid": os.getpid(), "seconds": time.perf_counter() - start}

    def reseed(self, seed: int) -> None:
        """Start new episodes in every env, env ``i`` reset with ``seed + i`` (a resumed asynchronous run)."""
        self.agent.env.restart(seed)
        torch.manual_seed(seed)

    def state(self) -> dict:
        """The envs' exact state and the torch generator (for a checkpoint of the driver)."""
        return {"env": self.agent.env.state_dict(), "torch_rng": torch.get_rng_state()}

    def load_state(self, state: dict) -> None:
        self.agent.env.load_state_dict(state["env"])
        torch.set_rng_state(state["torch_rng"])


# ----------------------------------------------------------------------------- the driver's pool
class WorkerPool(Module, Closeable):
    """Base of the Ray layouts' ``env`` modules: ``workers`` :class:`RolloutWorker` actors with
    ``num_envs // workers`` envs each, on the driver's behalf.

    It presents the worker envs as one vector env of ``num_envs`` envs (``obs_space``,
    ``action_space``, ``to_env_action``, ``goal`` come from one local env made for the purpose),
    so the driver's other modules (normaliser, rollout or replay, evaluator, logger) are those of
    the in-process run.

    Faults: workers are Ray actors with ``max_restarts``; a call to a worker that died raises in
    :meth:`get`, which logs the event (``events.log``), and calls again once Ray has restarted it,
    with the same weights reference (the new process loads them: the current weights are sent
    again). ``max_restarts`` deaths of one worker in one call end the run with an error.

    Args:
        make_agent: see :class:`RolloutWorker`.
        env_id, num_envs, seed: as :class:`EnvRunner`; worker ``w`` gets envs ``w·k .. w·k + k - 1``
            seeded ``seed + w·k + j``, the seeds of the in-process run's envs.
        workers: actor count; must divide ``num_envs``.
        allow_goal: as :class:`EnvRunner`.
        max_restarts: restarts Ray allows each worker over the run, and retries per call.
        cpus: CPUs Ray reserves for each worker.
        restart_timeout: seconds to wait for a dead worker to be back before giving up.

    Raises:
        RLBlocksError: ``num_envs`` not divisible by ``workers``, or more CPUs asked for than the
            Ray cluster has.
    """

    name = "env"
    requires = ("policy",)
    role = "rollout worker"

    def __init__(self, make_agent: Callable[[int, int], Any], env_id: str, num_envs: int, seed: int, workers: int,
                 allow_goal: bool = False, max_restarts: int = 5,
                 cpus: float = 1.0, restart_timeout: float = 300.0):
        super().__init__()
        if workers < 1 or num_envs % workers:
            raise RLBlocksError(f"--workers {workers} must divide num_envs={num_envs} (each worker steps num_envs / "
                                f"workers envs); pass --num-envs {workers * max(1, num_envs // workers)}")
        import ray

        total = ray.cluster_resources().get("CPU", 0)
        if workers * cpus > total:  # Ray would wait for CPUs that never come
            raise RLBlocksError(f"--workers {workers} need {workers * cpus:g} CPUs (one each) but the Ray cluster has "
                                f"{total:g}: lower --workers, or join a bigger cluster with --ray-address")
        self.ray = ray
        self.env_id, self.num_envs, self.seed, self.workers = env_id, num_envs, seed, workers
        self.per_worker = num_envs // workers
        self.max_restarts, self.restart_timeout = max_restarts, restart_timeout
        local = EnvRunner(env_id, 1, seed, allow_goal=allow_goal)  # spaces and the action mapping
        local.close()
        self._local = local
        self.obs_space, self.action_space = local.obs_space, local.action_space
        self.goal, self.continuous = local.goal, local.continuous
        self.obs = None
        actor_cls = ray.remote(RolloutWorker).options(num_cpus=cpus, max_restarts=max_restarts, max_task_retries=0)
        self.actors = [actor_cls.remote(make_agent, self.per_worker, seed + w * self.per_worker)
                       for w in range(workers)]
        self.pids: list[int | None] = [None] * workers
        self.restarts = 0  # worker deaths survived in this session
        self.version = 0  # weights publications
        self.shipped_bytes = 0  # bytes of the latest publication

    def to_env_action(self, action: torch.Tensor):
        return self._local.to_env_action(action)

    def setup(self) -> None:
        pids = self.ray.get([a.pid.remote() for a in self.actors])
        self.pids = list(pids)
        log_event(self.agent, f"{self.workers} {self.role}s started on Ray (pids {', '.join(map(str, pids))}, "
                              f"{self.per_worker} envs each)")

    def publish(self):
        """Put the policy's acting state in Ray's object store once; returns the reference."""
        weights = self.agent.policy.acting_state()
        self.shipped_bytes = nbytes_tree(weights)
        self.version += 1
        return self.ray.put(weights)

    def request(self, w: int, ref, n: int):
        """Ask worker ``w`` for ``n`` vector steps with the weights at ``ref``; returns the future."""
        return self.actors[w].collect.remote(ref, self.version, self.agent.env_steps, n)

    def get(self, w: int, future, ref, n: int) -> dict:
        """The result of worker ``w``'s ``future``; if the worker died, log it, wait for Ray to restart
        it and collect again (its lost steps are collected anew, with the weights at ``ref``).

        Raises:
            RLBlocksError: the worker died more than ``max_restarts`` times in one call, stays
                unreachable for ``restart_timeout`` seconds, or Ray gave up restarting it.
        """
        ray = self.ray
        for attempt in range(self.max_restarts + 1):
            try:
                result = ray.get(future)
                if result["pid"] != self.pids[w]:
                    log_event(self.agent, f"{self.role} {w} runs again as pid {result['pid']}")
                    self.pids[w] = result["pid"]
                self._log_errors(w, result)
                return result
            except ray.exceptions.RayActorError as e:
                self.restarts += 1
                log_event(self.agent, f"{self.role} {w} (pid {self.pids[w]}) died ({type(e).__name__}); Ray restarts "
                                      f"it; sending it the current weights and collecting its {n} steps again "
                                      f"(restart {attempt + 1})")
                self._wait_alive(w)
                future = self.actors[w].collect.remote(ref, self.version, self.agent.env_steps, n)
        raise RLBlocksError(f"{self.role} {w} died {self.max_restarts + 1} times while collecting one batch; see "
                            "events.log and the Ray logs (/tmp/ray/session_latest/logs)")

    def _wait_alive(self, w: int) -> None:
        """Block until Ray has restarted worker ``w`` (its constructor ran again)."""
        ray, deadline = self.ray, time.time() + self.restart_timeout
        while True:
            try:
                ray.get(self.actors[w].pid.remote(), timeout=max(1.0, deadline - time.time()))
                return
            except ray.exceptions.ActorUnavailableError:  # restarting: its old process is gone, the new one not up
                if time.time() > deadline:
                    break
                time.sleep(0.2)
            except ray.exceptions.ActorDiedError as e:  # restarts used up, or its constructor failed
                raise RLBlocksError(f"{self.role} {w} cannot be restarted ({str(e).strip().splitlines()[0][:200]}); "
                                    "see the Ray logs (/tmp/ray/session_latest/logs)") from None
            except ray.exceptions.GetTimeoutError:
                break
        raise RLBlocksError(f"{self.role} {w} was not back {self.restart_timeout:.0f} s after it died; see the Ray "
                            "logs (/tmp/ray/session_latest/logs)")

    def _log_errors(self, w: int, result: dict) -> None:
        for t, i, text in result["errors"]:
            log_event(self.agent, f"env {w * self.per_worker + i} of {self.env_id} ({self.role} {w}) raised ({text}); "
                                  "rebuilt it and dropped its episode")

    def offset_finished(self, w: int, finished: list[list[dict]]) -> list[list[dict]]:
        """Worker ``w``'s episodes with their env index made global."""
        base = w * self.per_worker
        return [[{**ep, "env": ep["env"] + base} for ep in done] for done in finished]

    def worker_states(self) -> list[dict]:
        return self.ray.get([a.state.remote() for a in self.actors])

    def load_worker_states(self, states: list[dict]) -> None:
        """Restore every worker's envs.

        Raises:
            CheckpointError: a checkpoint of another layout or another worker count.
        """
        if not isinstance(states, list) or len(states) != self.workers:
            n = len(states) if isinstance(states, list) else "no"
            raise CheckpointError(f"the checkpoint holds the envs of {n} Ray workers, this run has {self.workers}; "
                                  f"resume with --workers {n}" if isinstance(states, list) else
                                  "the checkpoint was not written by a --backend ray run of this layout; resume it "
                                  "with the backend it was started with")
        self.ray.get([a.load_state.remote(s) for a, s in zip(self.actors, states)])

    def close(self) -> None:
        for actor in self.actors:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001,S110 - Ray already shut down: nothing left to stop
                pass
        self.actors = []
