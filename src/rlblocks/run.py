"""Runs: resolve a config, create or reopen a run directory, train, resume and evaluate.

A run directory holds ``config.json`` (algo, env, seed, resolved hyperparameters, run options),
``progress.csv``, ``eval.csv``, ``tb/`` (TensorBoard), ``checkpoints/`` and ``.lock``.

Guarantees (tested in ``tests/test_run_integrity.py``):

* every check that can fail on user input (ids, spaces, hyperparameters, seed, memory) happens
  before the run directory is created; a start-up that fails or is interrupted removes what it made;
* one process at a time trains or resumes a run (:class:`rlblocks.rundir.RunLock`), and it first
  removes the temporaries of killed writers;
* Ctrl-C (SIGINT) and SIGTERM finish the current step, save a checkpoint and raise
  :class:`rlblocks.errors.Interrupted` (the CLI exits 130 / 143);
* rows logged after the checkpoint a run resumes from are dropped only once training continues.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlblocks.algos.replay_config import ReplayConfig
from rlblocks.checkpoint import atomic_write_text, has_checkpoint, latest_checkpoint, load_checkpoint, restore_agent
from rlblocks.components.threads import env_threads, resolve_threads
from rlblocks.config import BaseConfig, find_config_file, load_config_file, run_identity, run_record_options
from rlblocks.envs import check_env_id, make_env
from rlblocks.envs.goal import is_goal_space
from rlblocks.errors import ConfigError, Interrupted, RLBlocksError
from rlblocks.load import LoadSource, check_load_source, load_weights  # noqa: F401 - re-exported
from rlblocks.memory import check_memory
from rlblocks.module import Closeable
from rlblocks.registry import AlgoSpec, RunOptions, build_agent, check_action_space, get_algo
from rlblocks.rundir import RunLock, clear_run, finished_steps, mark_finished, read_record, remove_orphans


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU. Raises :class:`RLBlocksError` for missing CUDA."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RLBlocksError("--device cuda was asked for but torch sees no CUDA device; use --device cpu")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise RLBlocksError(f"--device {name!r} is not one of auto, cpu, cuda")
    return torch.device(name)


def resolve_config(spec: AlgoSpec, env_id: str, config_file: str | None = None,
                   overrides: dict[str, Any] | None = None, preset: str | None = None) -> BaseConfig:
    """Defaults → env preset → named preset (``--preset``, or ``"preset"`` in the config file) →
    config file (with inheritance) → ``--set`` overrides, validated.

    Raises:
        ConfigError: an unknown preset name or key, or an invalid value.
    """
    cfg = spec.config_cls().updated(spec.preset_for(env_id), f"the {spec.name} preset")
    values = load_config_file(config_file) if config_file else {}
    for key in ("algo", "env", "env_id", "seed", "description"):  # run identity and notes, not hyperparameters
        values.pop(key, None)
    preset = preset if preset is not None else values.pop("preset", None)
    values.pop("preset", None)
    if preset is not None:
        cfg = cfg.updated(spec.named_preset(preset), f"preset {preset!r}")
    if values:
        cfg = cfg.updated(values, config_file)
    if overrides:
        cfg = cfg.updated(overrides, "--set")
    cfg.validate()
    return cfg


def default_run_dir(algo: str, env_id: str, cfg: BaseConfig, seed: int, root: str = "runs") -> Path:
    """``runs/<algo>/<env>/<hash of non-default hyperparameters>-seed<S>`` (r2l's layout)."""
    return Path(root) / algo / env_id / f"{cfg.short_hash()}-seed{seed}"


#: Seeds are used as ``seed + i`` for env ``i`` and ``seed + 10_000`` / ``+ 20_000`` for evaluation.
MAX_SEED = 2**31 - 1


def check_seed(seed: int) -> None:
    """Raise :class:`ConfigError` unless ``0 <= seed <= MAX_SEED``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"--seed {seed} must be an integer from 0 to {MAX_SEED}")


def check_threads(threads: int | None) -> None:
    """Raise :class:`ConfigError` unless ``threads`` is ``None`` (adapt) or a positive count."""
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads {threads} must be >= 1 (or omitted: adapt to the free cores)")


def check_env_fits(spec: AlgoSpec, env_id: str, cfg: BaseConfig, new_run: bool = True) -> None:
    """Check, on one env made for the purpose, that ``spec`` can act in it (action space), read its
    observations (a flat Box vector, or a goal dict for the replay-based algorithms) and that the
    replay buffer and networks fit in memory; for a ``new_run``, also that no goal-env key
    (:attr:`ReplayConfig.GOAL_KEYS`) is set on an env without goals (a run already made resumes as it is).

    Raises:
        RLBlocksError: naming the space or the key (``buffer_size``, ``hidden_sizes``, ``her``) and the fix.
    """
    import gymnasium as gym

    env = make_env(env_id)
    try:
        check_action_space(spec, env_id, env.action_space)
        obs_space, act_space = env.observation_space, env.action_space
    finally:
        env.close()
    goal_ok = isinstance(cfg, ReplayConfig)  # replay-based algorithms read goal dicts; PPO does not (yet)
    if goal_ok and new_run and not is_goal_space(obs_space):
        defaults = type(cfg)()
        for key in ReplayConfig.GOAL_KEYS:
            if getattr(cfg, key) != getattr(defaults, key):
                raise ConfigError(f"{key}={_show(getattr(cfg, key))} acts only on goal envs (dict observations with "
                                  f"a desired_goal) and {env_id} is not one; drop the {key} setting")
    if goal_ok and is_goal_space(obs_space):
        obs_dim = sum(int(s.shape[0]) for s in obs_space.spaces.values())  # every key is stored
    elif isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1:
        obs_dim = int(obs_space.shape[0])
    else:
        also = (" or a goal dict (observation, achieved_goal, desired_goal)" if goal_ok else
                "; goal envs need a replay-based algorithm (ddpg, td3, sac, dqn)" if is_goal_space(obs_space) else "")
        raise RLBlocksError(f"{env_id} has {obs_space} observations but {spec.name} needs a flat Box vector{also}; "
                            "use an env with such observations")
    act_dim = int(act_space.n) if isinstance(act_space, gym.spaces.Discrete) else int(np.prod(act_space.shape))
    check_memory(cfg, obs_dim, act_dim)


def _build(spec: AlgoSpec, env_id: str, cfg: BaseConfig, seed: int, device: torch.device, opts: RunOptions):
    """:func:`build_agent`, with an allocation failure turned into one line."""
    try:
        return build_agent(spec, env_id, cfg, seed, device, opts)
    except RuntimeError as e:
        if "alloc" not in str(e).lower():
            raise
        raise ConfigError(f"allocating the agent failed ({str(e).splitlines()[0][:160]}); lower buffer_size or "
                          "hidden_sizes") from None


def resolve_run(algo: str | None, env_id: str | None, config_file: str | None) -> tuple[str, str, Path | None]:
    """``(algo, env_id, config path)`` from the flags and ``--config``: a local file or a shipped name
    (:func:`rlblocks.config.find_config_file`) that may name ``algo`` and ``env``.

    Raises:
        ConfigError: a missing config file, a flag that conflicts with the file, or an algo or env
            named by neither.
    """
    path = find_config_file(config_file) if config_file else None
    values = load_config_file(path) if path is not None else {}
    ident = run_identity(values, config_file, algo=algo, env=env_id)
    return ident["algo"], ident["env"], path


def train(algo: str | None, env_id: str | None, *, steps: int | None = None, seed: int | None = None,
          run_dir: str | None = None, config_file: str | None = None, overrides: dict[str, Any] | None = None,
          eval_every: int | None = None, checkpoint_every: int | None = None, device: str = "auto",
          resume: bool = False, overwrite: bool = False, progress: bool = True, load: str | None = None,
          threads: int | None = None, preset: str | None = None, backend: str = "local", workers: int | None = None,
          ray_address: str | None = None) -> Path:
    """Train ``algo`` on ``env_id`` until ``steps`` env steps; returns the run directory.

    ``config_file`` is a JSON file or a shipped config name (``steve/hopper/steve.json``); when it
    names ``algo``/``env``, ``algo``/``env_id`` may be ``None`` (given, they must agree with it).
    ``backend="ray"`` runs the distributed layout of the algorithm on Ray (:mod:`rlblocks.distributed`;
    ``workers`` actors, default 1): PPO's rollout workers, or the off-policy algorithms' asynchronous
    interactors and evaluator actor; ``ray_address`` joins a running cluster, else a local Ray is
    started and shut down at the end. The backend is recorded, so ``resume`` uses it again.

    ``config_file`` may also be a run's ``config.json``: its hyperparameters, and its seed, thread
    count and schedules (:data:`rlblocks.config.RECORD_OPTIONS`) for the arguments left ``None``, so
    that ``rlblocks train --config RUN/config.json`` repeats that run bit for bit.

    ``preset`` names a hyperparameter preset (:data:`rlblocks.registry.NAMED_PRESETS`).
    ``None`` arguments take their defaults: ``steps`` 100,000, ``seed`` 0, ``checkpoint_every`` 50,000,
    ``eval_every`` the algorithm's (:attr:`AlgoSpec.eval_every`), ``threads`` ``OMP_NUM_THREADS`` when
    set, else the cores other processes leave free now (:mod:`rlblocks.components.threads`); the
    count is recorded in ``config.json`` and printed.
    ``resume`` continues the run already in ``run_dir`` (from step 0 if it has no checkpoint yet);
    it must have been made with the same algo, env, seed and hyperparameters. ``overwrite`` replaces
    it. ``load`` (a run directory) starts the new run from that run's trained weights: see
    :func:`rlblocks.load.load_weights`. Only the networks and the normaliser are taken; optimizers,
    replay, counters and RNG start fresh (so ``learning_starts`` random steps happen again).

    Raises:
        RLBlocksError: unknown algo/env, incompatible spaces, invalid config or seed, too little
            memory, an occupied ``run_dir`` without ``resume``/``overwrite``, a ``resume`` with other
            settings, a run directory in use by another process, or a ``load`` run of another
            algorithm, other observation/action shapes or other network sizes. Raised before
            training starts; a new run directory is removed again.
        Interrupted: training stopped on SIGINT/SIGTERM after saving a checkpoint.
    """
    algo, env_id, config_path = resolve_run(algo, env_id, config_file)
    spec = get_algo(algo)
    check_env_id(env_id)
    cfg = resolve_config(spec, env_id, config_path, overrides, preset)
    repeat = run_record_options(config_path)  # a run's config.json: repeat its options where none are given
    steps = _first(steps, repeat.get("steps"), 100_000)
    seed = _first(seed, repeat.get("seed"), 0)
    eval_every = _first(eval_every, repeat.get("eval_every"), spec.eval_every)
    checkpoint_every = _first(checkpoint_every, repeat.get("checkpoint_every"), 50_000)
    if steps <= 0:
        raise ConfigError(f"--steps {steps} must be positive")
    for flag, value in (("--eval-every", eval_every), ("--checkpoint-every", checkpoint_every)):
        if value < 0:
            raise ConfigError(f"{flag} {value} must be >= 0 (0 turns it off)")
    if resume and overwrite:
        raise ConfigError("--resume continues the run in --run-dir and --overwrite deletes it: pass one of them")
    check_seed(seed)
    check_threads(threads)
    if threads is None and env_threads() is None and "threads" in repeat:
        count, threads_from = repeat["threads"], f"as in {config_file}"
    else:
        count, threads_from = resolve_threads(threads)  # a new run's count (a resumed run keeps its own)
    dev = resolve_device(device)
    check_env_fits(spec, env_id, cfg)
    workers = check_backend(spec, env_id, cfg, backend, workers, ray_address)
    path = Path(run_dir) if run_dir else default_run_dir(algo, env_id, cfg, seed)
    source = None
    if load is not None:
        if resume:
            raise RLBlocksError("--load starts a new run from another run's weights; it cannot be combined with "
                                "--resume (use `rlblocks resume RUN` to continue a run)")
        if path.resolve() == Path(load).resolve():
            raise RLBlocksError(f"--load {load} is the run directory of the new run; pass another --run-dir")
        source = check_load_source(load, spec, env_id)
    record = {"algo": algo, "env_id": env_id, "seed": seed, "config": cfg.to_dict(),
              "options": {"steps": steps, "eval_every": eval_every, "checkpoint_every": checkpoint_every,
                          "threads": count}}
    if source is not None:
        record["options"]["loaded_from"] = str(source.checkpoint)
    if config_path is not None:  # provenance only: the resolved values above are what the run uses
        record["options"]["config_file"] = str(config_file)
    if backend == "ray":  # recorded only for Ray runs: in-process records stay as they were
        record["options"].update({"backend": backend, "workers": workers})
    with backend_session(backend, ray_address):
        return _train_in_session(path, record, spec, env_id, cfg, seed, dev, steps, eval_every, checkpoint_every,
                                 progress, threads, threads_from, device, resume, overwrite, source)


def _first(*values):
    """The first of ``values`` that is not ``None``."""
    return next(v for v in values if v is not None)


def _train_in_session(path: Path, record: dict[str, Any], spec: AlgoSpec, env_id: str, cfg: BaseConfig, seed: int,
                      dev: torch.device, steps: int, eval_every: int, checkpoint_every: int, progress: bool,
                      threads: int | None, threads_from: str, device: str, resume: bool, overwrite: bool,
                      source) -> Path:
    """:func:`train` once the input is checked and the backend runs: make or reopen the run, build, train.
    A new run uses the thread count in ``record``; a resumed one keeps its own unless ``threads`` is given."""
    new_root = _first_missing(path)  # the top directory this call creates, removed again on failure
    if path.exists() and not path.is_dir():
        raise RLBlocksError(f"--run-dir {path} is a file; pass a directory")
    path.mkdir(parents=True, exist_ok=True)
    with RunLock(path):
        remove_orphans(path)
        if (path / "config.json").exists():
            if resume:
                _check_same_run(path, record, spec)
                return _resume_locked(path, steps, device, progress, threads)
            if not overwrite:
                raise RLBlocksError(f"{path} already holds a run; add --resume to continue it or --overwrite to "
                                    "replace it")
            clear_run(path)
        count = record["options"]["threads"]
        opts = RunOptions(path, steps, eval_every, checkpoint_every, progress, threads=count,
                          **layout_options(record, steps))
        agent = None
        try:
            atomic_write_text(path / "config.json", json.dumps(record, indent=2))
            print(f"torch threads: {count} ({threads_from}); recorded in {path / 'config.json'}: `rlblocks train "
                  f"--config {path / 'config.json'}` repeats this run exactly")
            agent = _build(spec, env_id, cfg, seed, dev, opts)
            if source is not None:
                names = load_weights(agent, source)
                print(f"loaded {', '.join(names)} from {source.checkpoint}")
        except BaseException:  # an error or Ctrl-C during start-up: leave no half-made run behind
            if agent is not None:
                _close(agent)
            if new_root is not None:
                shutil.rmtree(new_root, ignore_errors=True)
            else:
                (path / "config.json").unlink(missing_ok=True)
            raise
        _loop(agent, steps, path)
    return path


def _first_missing(path: Path) -> Path | None:
    """The outermost ancestor of ``path`` (or ``path``) that does not exist yet; ``None`` if it exists."""
    missing = None
    for p in (path, *path.parents):
        if p.exists():
            break
        missing = p
    return missing


def _check_same_run(path: Path, record: dict[str, Any], spec: AlgoSpec) -> None:
    """Raise :class:`RLBlocksError` naming every difference between the run in ``path`` and the
    ``train --resume`` request (algo, env, seed, hyperparameters)."""
    saved = read_record(path)
    diffs = [f"{key} ({saved[key]} in the run, {record[key]} asked)"
             for key in ("algo", "env_id", "seed") if saved[key] != record[key]]
    backends = [r.get("options", {}).get("backend", "local") for r in (saved, record)]
    if backends[0] != backends[1]:
        diffs.append(f"backend ({backends[0]} in the run, {backends[1]} asked)")
    if saved["algo"] == record["algo"]:
        try:
            theirs = spec.config_cls().updated(saved["config"], f"{path}/config.json").to_dict()
        except ConfigError:
            theirs = saved["config"]
        diffs += [f"{k} ({_show(theirs.get(k))} in the run, {_show(v)} asked)"
                  for k, v in record["config"].items() if theirs.get(k) != v]
    if diffs:
        raise RLBlocksError(f"{path} holds a run with other settings: {'; '.join(diffs)}; drop those flags to "
                            "continue it, or pass another --run-dir (or --overwrite) to start a new run")


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def _agent_from_record(run_dir: Path, record: dict[str, Any], *, for_training: bool, total: int, device: str,
                       progress: bool, threads: int | None = None):
    """A fresh agent built from a run's ``config.json`` record (nothing restored yet)."""
    spec = get_algo(record["algo"])
    cfg = spec.config_cls().updated(record["config"], f"{run_dir}/config.json")
    cfg.validate()
    options = record["options"]
    if for_training:
        check_env_fits(spec, record["env_id"], cfg, new_run=False)  # the memory check, before the buffer is allocated
        opts = RunOptions(run_dir, total, options["eval_every"], options["checkpoint_every"], progress, threads=threads,
                          recorded_threads=options.get("threads"), **layout_options(record, total))
    else:  # acting only: no run directory outputs, no replay buffer
        opts = RunOptions(None, total, 0, 0, False, tensorboard=False, training=False)
    return _build(spec, record["env_id"], cfg, record["seed"], resolve_device(device), opts)


def load_run_agent(run_dir: Path, *, for_training: bool, steps: int | None = None, device: str = "auto",
                   progress: bool = True, threads: int | None = None):
    """Rebuild a run's agent from ``config.json`` and its latest checkpoint; returns ``(agent, record)``.

    ``for_training=False`` builds an agent that only acts (no replay buffer, no update modules).

    Raises:
        RLBlocksError / CheckpointError: not a run, a malformed ``config.json``, no checkpoint, or a
            corrupt checkpoint or one that does not fit the run's config.
    """
    run_dir = Path(run_dir)
    record = read_record(run_dir)
    ckpt = latest_checkpoint(run_dir)
    state = load_checkpoint(ckpt)  # verify hashes and readability before building anything
    total = steps if steps is not None else record["options"]["steps"]
    agent = _agent_from_record(run_dir, record, for_training=for_training, total=total, device=device,
                               progress=progress, threads=threads)
    if not for_training and record["options"].get("backend") == "ray":  # its env state is the workers': not
        state["modules"].pop("env", None)  # an acting agent's (evaluation makes its own envs)
    try:
        restore_agent(agent, ckpt, with_buffers=for_training, state=state)
    except BaseException:
        _close(agent)
        raise
    return agent, record


def resume_run(run_dir: str | Path, steps: int | None = None, device: str = "auto", progress: bool = True,
               threads: int | None = None, ray_address: str | None = None) -> Path:
    """Continue a run from its latest checkpoint (from step 0 if it has none yet) until ``steps``
    total env steps (default: the total it was started with). A ``--backend ray`` run continues on
    Ray with its workers (``ray_address`` joins a cluster, else a local Ray is started).

    Raises:
        RLBlocksError: as :func:`load_run_agent`, or the run is in use by another process.
        Interrupted: training stopped on SIGINT/SIGTERM after saving a checkpoint.
    """
    run_dir = Path(run_dir)
    if steps is not None and steps <= 0:
        raise ConfigError(f"--steps {steps} must be positive")
    check_threads(threads)
    record = read_record(run_dir)  # not a run: say so before touching the directory
    backend = record["options"].get("backend", "local")
    if ray_address is not None and backend != "ray":
        raise ConfigError(f"--ray-address: {run_dir} runs in-process (it was not started with --backend ray)")
    with backend_session(backend, ray_address), RunLock(run_dir):
        remove_orphans(run_dir)
        return _resume_locked(run_dir, steps, device, progress, threads)


def _resume_locked(run_dir: Path, steps: int | None, device: str, progress: bool, threads: int | None = None) -> Path:
    record = read_record(run_dir)
    total = steps if steps is not None else record["options"]["steps"]
    if has_checkpoint(run_dir):
        agent, record = load_run_agent(run_dir, for_training=True, steps=total, device=device, progress=progress,
                                       threads=threads)
        if agent.env_steps >= total and finished_steps(run_dir) == agent.env_steps:
            print(f"{run_dir} is already at {agent.env_steps} env steps (>= {total}); pass a larger --steps to "
                  "train on")
            _close(agent)
            return run_dir
        # else: train on, or (killed between its final checkpoint and its final evaluation) let the loop
        # write the end-of-run row and evaluation that the run lacks
    else:  # stopped or killed before its first checkpoint: nothing to continue from
        print(f"{run_dir} has no checkpoint yet: training it from step 0")
        agent = _agent_from_record(run_dir, record, for_training=True, total=total, device=device, progress=progress,
                                   threads=threads)
    if record["options"]["steps"] != total:
        record["options"]["steps"] = total
        try:
            atomic_write_text(run_dir / "config.json", json.dumps(record, indent=2))
        except BaseException:
            _close(agent)
            raise
    _loop(agent, total, run_dir)
    return run_dir


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


def _close(agent) -> None:
    for module in agent.modules_of(Closeable):
        module.close()


def _loop(agent, total_steps: int, run_dir: Path) -> None:
    """Train until ``total_steps`` with SIGINT/SIGTERM handlers, then save a final checkpoint; a run
    that reached ``total_steps`` then writes its end-of-run rows and is marked finished
    (:func:`rlblocks.rundir.mark_finished`).

    The first Ctrl-C or SIGTERM finishes the current step, saves and stops (then raises
    :class:`Interrupted`); a second one aborts at once without saving (the previous checkpoint
    stays the latest).
    """
    caught: list[int] = []

    def on_signal(signum, frame):
        caught.append(signum)
        agent.stop_requested = True
        for sig, handler in previous.items():  # a second signal aborts at once
            signal.signal(sig, handler)
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        print(f"\n{name}: saving a checkpoint and stopping (press Ctrl-C again to abort without saving)",
              file=sys.stderr)

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, on_signal)
        except ValueError:  # not the main thread: no handlers, Ctrl-C aborts
            pass
    try:
        agent.call("on_train_start")
        agent.train(total_steps)
        finished = agent.env_steps >= total_steps
        where = f"; checkpoint {agent.checkpointer.save()}" if "checkpointer" in agent.modules else ""
        if finished:  # after the save: a run resumed to more steps drops these off-schedule rows
            agent.call("on_train_end")  # last log row and evaluation
            mark_finished(run_dir, agent.env_steps)
        recent = agent.logger.recent
        ret = f", recent return {np.mean(recent):.1f}" if recent else ""
        agent.logger.close()  # the progress bar goes before the closing line
        print(f"{'finished' if finished else 'stopped'} at {agent.env_steps} env steps{ret}{where}")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _close(agent)
    if caught and not finished:
        raise Interrupted(caught[0])


def evaluate_run(run_dir: str | Path, episodes: int = 10, deterministic: bool = False, video: str | None = None,
                 render: bool = False, seed: int | None = None, device: str = "auto", video_length: int = 500,
                 video_episodes: int = 1, progress: bool = True, successes: list[float] | None = None) -> list[float]:
    """Evaluate a run's latest checkpoint; returns the ``episodes`` returns (and, for a goal env,
    puts each episode's ``is_success`` into the list ``successes`` when one is given).

    Episodes run side by side in a vector env (:func:`rlblocks.components.evaluator.evaluate`).
    ``video`` records the first ``video_episodes`` of them, at most ``video_length`` frames each
    (0: whole episodes), one at a time with a progress bar of frames; ``render`` shows every
    episode in a window.

    Raises:
        RLBlocksError: as :func:`load_run_agent`, a bad count, an unwritable video path, or a
            rendering failure (naming its cause).
    """
    from rlblocks.components.evaluator import evaluate, record

    for flag, value, low in (("--episodes", episodes, 1), ("--video-length", video_length, 0),
                             ("--video-episodes", video_episodes, 1)):
        if value < low:
            raise ConfigError(f"{flag} {value} must be >= {low}")
    if video is not None:
        _check_writable(Path(video))
    agent, record_ = load_run_agent(Path(run_dir), for_training=False, device=device)
    env_id = record_["env_id"]
    eval_seed = seed if seed is not None else record_["seed"] + 20_000
    try:
        if not agent.env.goal:
            successes = None
        if not (video or render):
            return evaluate(agent, env_id, episodes, eval_seed, deterministic, successes=successes)
        shown = episodes if render else min(video_episodes, episodes)
        with warnings.catch_warnings():  # a failed render also makes RecordVideo warn "zero frames"
            warnings.filterwarnings("ignore", message=".*zero frames.*")
            returns = record(agent, env_id, shown, eval_seed, deterministic, video_path=video,
                             video_length=video_length, progress=progress)
        return returns + (evaluate(agent, env_id, episodes - shown, eval_seed + shown, deterministic,
                                   successes=successes) if episodes > shown else [])
    except Exception as e:
        if not (video or render) or isinstance(e, RLBlocksError):
            raise
        raise RLBlocksError(_render_error(env_id, e, bool(video))) from None
    finally:
        _close(agent)


#: What headless MuJoCo rendering needs (checked on Debian 12 with mujoco 3 and software Mesa).
HEADLESS_HINT = ("headless MuJoCo rendering needs MUJOCO_GL=egl with the system packages libegl1 libopengl0 "
                 "libgl1-mesa-dri (apt-get install libegl1 libopengl0 libgl1-mesa-dri), or MUJOCO_GL=osmesa with "
                 "libosmesa6")


def _check_writable(video: Path) -> None:
    """Raise :class:`RLBlocksError` unless ``video``'s directory exists or can be made, and is writable."""
    import os

    folder = video.parent
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("/"))
    if not existing.is_dir():
        raise RLBlocksError(f"--video {video}: {existing} is a file, so {folder} cannot be made; pass a path in a "
                            "directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RLBlocksError(f"--video {video}: {existing} is not writable; pass a path in a writable directory")


def _is_mujoco(env_id: str) -> bool:
    import gymnasium as gym

    try:
        return "mujoco" in str(gym.spec(env_id).entry_point).lower()
    except gym.error.Error:
        return False


def _render_error(env_id: str, e: Exception, video: bool) -> str:
    """A one-line explanation (with the fix) of a rendering failure in ``rlblocks eval``; the
    MuJoCo/EGL hint only where MuJoCo rendering is what failed."""
    import os

    import gymnasium as gym

    text = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
    if isinstance(e, (ImportError, gym.error.DependencyNotInstalled)):
        if "moviepy" in text.lower():
            return f"--video needs moviepy ({text}); pip install moviepy (or pip install -e \".[mujoco]\")"
        return f"rendering {env_id} needs a package that is missing ({text}); install the package it names"
    if isinstance(e, OSError) and e.filename is not None:
        return f"writing {e.filename} failed ({e.strerror or text}); pass a --video path in a writable directory"
    gl = os.environ.get("MUJOCO_GL")
    if video and not _is_mujoco(env_id):
        return f"rendering {env_id} to video failed ({type(e).__name__}: {text})"
    if video:
        return f"rendering {env_id} failed with MUJOCO_GL={gl} ({type(e).__name__}: {text}); {HEADLESS_HINT}"
    return (f"showing {env_id} in a window failed ({type(e).__name__}: {text}); --render needs a working display "
            f"and MUJOCO_GL unset or glfw (it is {gl}); use --video out.mp4 on a headless machine")
