"""``--backend``: checks of the backend options, the Ray session, and the Ray layouts' modules."""

from __future__ import annotations

import contextlib
from typing import Any

from rlblocks.algos.replay_config import ReplayConfig
from rlblocks.config import BaseConfig
from rlblocks.envs import make_env
from rlblocks.envs.goal import is_goal_space
from rlblocks.errors import ConfigError
from rlblocks.registry import AlgoSpec, get_algo

BACKENDS = ("local", "ray")


def check_backend(spec: AlgoSpec, env_id: str, cfg: BaseConfig, backend: str, workers: int | None,
                  ray_address: str | None) -> int:
    """Check the backend options before anything is made; returns the worker count (1 by default).

    Raises:
        ConfigError: an unknown backend, ``--workers``/``--ray-address`` without ``--backend ray``, a
            worker count below 1 or one that does not divide ``num_envs`` (rollout workers), or
            off-policy settings the asynchronous layout does not support (n-step, HER).
        RLBlocksError: Ray is not installed.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"--backend {backend!r} is not one of {', '.join(BACKENDS)}")
    if backend == "local":
        if workers is not None or ray_address is not None:
            flag = "--workers" if workers is not None else "--ray-address"
            raise ConfigError(f"{flag} needs --backend ray (the default backend runs in this process)")
        return 1
    workers = 1 if workers is None else workers
    if workers < 1:
        raise ConfigError(f"--workers {workers} must be >= 1")
    from rlblocks.distributed.session import check_address, require_ray

    require_ray()
    check_address(ray_address)
    if isinstance(cfg, ReplayConfig):  # the asynchronous layout: each interactor steps num_envs envs
        env = make_env(env_id)
        goal = is_goal_space(env.observation_space)
        env.close()
        arch = getattr(cfg, "arch", "ff")
        if cfg.n_step != 1 or goal or arch != "ff":
            what = ("goal envs (HER)" if goal else f"n_step={cfg.n_step}" if cfg.n_step != 1
                    else f"arch={arch} (sequence windows)")
            raise ConfigError(f"--backend ray's asynchronous layout interleaves the interactors' steps in the replay, "
                              f"but {what} need each env's steps in order: use n_step=1, arch=ff and a non-goal env, "
                              "or the default backend")
    elif cfg.num_envs % workers:
        raise ConfigError(f"--workers {workers} must divide num_envs={cfg.num_envs} (each rollout worker steps "
                          f"num_envs / workers envs): pass --num-envs {workers * max(1, cfg.num_envs // workers)}")
    return workers


def backend_session(backend: str, ray_address: str | None = None):
    """A context in which the backend runs: a Ray session for ``"ray"`` (see
    :func:`rlblocks.distributed.session.ray_session`), nothing for ``"local"``."""
    if backend != "ray":
        return contextlib.nullcontext()
    from rlblocks.distributed.session import ray_session

    return ray_session(ray_address)


def layout_options(record: dict[str, Any], total_steps: int) -> dict[str, Any]:
    """The :class:`RunOptions` fields of a run's backend (none for an in-process run): the Ray
    layout's ``env`` module (rollout workers or interactors) and, off-policy, its evaluator actor."""
    options = record["options"]
    if options.get("backend", "local") != "ray":
        return {}
    from functools import partial

    from rlblocks.distributed.layouts import ray_layout
    from rlblocks.registry import acting_agent

    make_agent = partial(acting_agent, record["algo"], record["env_id"], record["config"], total_steps)
    off_policy = isinstance(get_algo(record["algo"]).config_cls(), ReplayConfig)
    return ray_layout(make_agent, record["config"], int(options["workers"]), off_policy)
