"""A run's session: make or reopen its directory, build the agent, train under signal handlers,
resume from the latest checkpoint, and mark the run finished."""

from __future__ import annotations

import json
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlblocks.checkpoint import atomic_write_text, has_checkpoint, latest_checkpoint, load_checkpoint, restore_agent
from rlblocks.config import BaseConfig
from rlblocks.errors import ConfigError, Interrupted, RLBlocksError
from rlblocks.load import LoadSource, check_load_source, load_weights
from rlblocks.module import Closeable
from rlblocks.registry import AlgoSpec, RunOptions, build_agent, get_algo
from rlblocks.run.backend import backend_session, layout_options
from rlblocks.run.request import RunRequest, _show, check_env_fits, check_threads, make_request, resolve_device
from rlblocks.rundir import RunLock, clear_run, finished_steps, mark_finished, read_record, remove_orphans


def _build(spec: AlgoSpec, env_id: str, cfg: BaseConfig, seed: int, device: torch.device, opts: RunOptions):
    """:func:`build_agent`, with an allocation failure turned into one line."""
    try:
        return build_agent(spec, env_id, cfg, seed, device, opts)
    except RuntimeError as e:
        if "alloc" not in str(e).lower():
            raise
        raise ConfigError(f"allocating the agent failed ({str(e).splitlines()[0][:160]}); lower buffer_size or "
                          "hidden_sizes") from None


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
    ``None`` arguments take their defaults (:func:`rlblocks.run.request.make_request`); the thread
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
    if resume and overwrite:
        raise ConfigError("--resume continues the run in --run-dir and --overwrite deletes it: pass one of them")
    request = make_request(algo, env_id, steps=steps, seed=seed, config_file=config_file, overrides=overrides,
                           preset=preset, eval_every=eval_every, checkpoint_every=checkpoint_every, device=device,
                           threads=threads, backend=backend, workers=workers, ray_address=ray_address)
    path = Path(run_dir) if run_dir else request.default_run_dir()
    source = None
    if load is not None:
        if resume:
            raise RLBlocksError("--load starts a new run from another run's weights; it cannot be combined with "
                                "--resume (use `rlblocks resume RUN` to continue a run)")
        if path.resolve() == Path(load).resolve():
            raise RLBlocksError(f"--load {load} is the run directory of the new run; pass another --run-dir")
        source = check_load_source(load, request.spec, request.env_id)
    with backend_session(backend, ray_address):
        return _train_in_session(path, request, source, progress=progress, threads=threads, device=device,
                                 resume=resume, overwrite=overwrite)


def _train_in_session(path: Path, request: RunRequest, source: LoadSource | None, *, progress: bool,
                      threads: int | None, device: str, resume: bool, overwrite: bool) -> Path:
    """:func:`train` once the input is checked and the backend runs: make or reopen the run, build, train.
    A new run uses the request's thread count; a resumed one keeps its own unless ``threads`` is given."""
    new_root = _first_missing(path)  # the top directory this call creates, removed again on failure
    if path.exists() and not path.is_dir():
        raise RLBlocksError(f"--run-dir {path} is a file; pass a directory")
    path.mkdir(parents=True, exist_ok=True)
    record = request.record()
    if source is not None:
        record["options"]["loaded_from"] = str(source.checkpoint)
    with RunLock(path):
        remove_orphans(path)
        if (path / "config.json").exists():
            if resume:
                _check_same_run(path, record, request.spec)
                return _resume_locked(path, request.steps, device, progress, threads)
            if not overwrite:
                raise RLBlocksError(f"{path} already holds a run; add --resume to continue it or --overwrite to "
                                    "replace it")
            clear_run(path)
        agent = _start_new(path, request, record, source, progress, new_root)
        _loop(agent, request.steps, path)
    return path


def _start_new(path: Path, request: RunRequest, record: dict[str, Any], source: LoadSource | None, progress: bool,
               new_root: Path | None):
    """Write ``config.json`` and build the agent (with ``--load``'s weights); on any failure or Ctrl-C,
    remove what was made and re-raise."""
    opts = RunOptions(path, request.steps, request.eval_every, request.checkpoint_every, progress,
                      threads=request.threads, **layout_options(record, request.steps))
    agent = None
    try:
        atomic_write_text(path / "config.json", json.dumps(record, indent=2))
        print(f"torch threads: {request.threads} ({request.threads_from}); recorded in {path / 'config.json'}: "
              f"`rlblocks train --config {path / 'config.json'}` repeats this run exactly")
        agent = _build(request.spec, request.env_id, request.cfg, request.seed, request.device, opts)
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
    return agent


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
