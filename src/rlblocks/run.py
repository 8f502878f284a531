"""Runs: resolve a config, create or reopen a run directory, train, resume and evaluate.

A run directory holds ``config.json`` (algo, env, seed, resolved hyperparameters, run options),
``progress.csv``, ``eval.csv``, ``tb/`` (TensorBoard) and ``checkpoints/``. Every check that can
fail on user input happens before the first env step.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlblocks.checkpoint import atomic_write_text, latest_checkpoint, load_checkpoint, restore_agent
from rlblocks.config import BaseConfig, load_config_file
from rlblocks.envs import check_env_id, make_env
from rlblocks.errors import CheckpointError, ConfigError, RLBlocksError
from rlblocks.registry import AlgoSpec, RunOptions, build_agent, check_action_space, get_algo


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
                   overrides: dict[str, Any] | None = None) -> BaseConfig:
    """Defaults → env preset → config file (with inheritance) → ``--set`` overrides, validated."""
    cfg = spec.config_cls().updated(spec.preset_for(env_id), f"the {spec.name} preset")
    if config_file:
        values = load_config_file(config_file)
        for key in ("algo", "env", "env_id", "seed"):  # run identity, not hyperparameters
            values.pop(key, None)
        cfg = cfg.updated(values, config_file)
    if overrides:
        cfg = cfg.updated(overrides, "--set")
    cfg.validate()
    return cfg


def default_run_dir(algo: str, env_id: str, cfg: BaseConfig, seed: int, root: str = "runs") -> Path:
    """``runs/<algo>/<env>/<hash of non-default hyperparameters>-seed<S>`` (r2l's layout)."""
    return Path(root) / algo / env_id / f"{cfg.short_hash()}-seed{seed}"


def read_run(run_dir: Path) -> dict[str, Any]:
    """Load ``config.json``. Raises :class:`RLBlocksError` if the directory is not a run."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise RLBlocksError(f"{run_dir} is not a run directory (no config.json); pass the directory `rlblocks train` created")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RLBlocksError(f"{path} is corrupt ({e}); restore it from the checkpoint or start a new run") from None


def _probe_spaces(spec: AlgoSpec, env_id: str) -> None:
    env = make_env(env_id)
    try:
        check_action_space(spec, env_id, env.action_space)
    finally:
        env.close()


def train(algo: str, env_id: str, *, steps: int, seed: int = 0, run_dir: str | None = None,
          config_file: str | None = None, overrides: dict[str, Any] | None = None,
          eval_every: int = 10_000, checkpoint_every: int = 50_000, device: str = "auto",
          resume: bool = False, overwrite: bool = False, progress: bool = True, load: str | None = None) -> Path:
    """Train ``algo`` on ``env_id`` until ``steps`` env steps; returns the run directory.

    ``load`` (a run directory) starts the new run from that run's trained weights: see
    :func:`load_weights`. Only the networks and the normaliser are taken; optimizers, replay,
    counters and RNG start fresh (so ``learning_starts`` random steps happen again unless set to 0).

    Raises:
        RLBlocksError: unknown algo/env, incompatible spaces, invalid config, an occupied
            ``run_dir`` without ``resume``/``overwrite``, or a ``load`` run of another algorithm,
            other observation/action shapes or other network sizes. Raised before training starts
            (for a network-size mismatch the new ``config.json`` is removed again).
    """
    spec = get_algo(algo)
    check_env_id(env_id)
    cfg = resolve_config(spec, env_id, config_file, overrides)
    if steps <= 0:
        raise ConfigError(f"--steps {steps} must be positive")
    for flag, value in (("--eval-every", eval_every), ("--checkpoint-every", checkpoint_every)):
        if value < 0:
            raise ConfigError(f"{flag} {value} must be >= 0 (0 turns it off)")
    dev = resolve_device(device)
    _probe_spaces(spec, env_id)
    path = Path(run_dir) if run_dir else default_run_dir(algo, env_id, cfg, seed)
    source = None
    if load is not None:
        if resume:
            raise RLBlocksError("--load starts a new run from another run's weights; it cannot be combined with "
                                "--resume (use `rlblocks resume RUN` to continue a run)")
        if path.resolve() == Path(load).resolve():
            raise RLBlocksError(f"--load {load} is the run directory of the new run; pass another --run-dir")
        source = check_load_source(load, spec, env_id)
    if (path / "config.json").exists():
        if resume:
            return resume_run(path, steps, device=device, progress=progress)
        if not overwrite:
            raise RLBlocksError(f"{path} already holds a run; add --resume to continue it or --overwrite to replace it")
        shutil.rmtree(path)
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    record = {"algo": algo, "env_id": env_id, "seed": seed, "config": cfg.to_dict(),
              "options": {"steps": steps, "eval_every": eval_every, "checkpoint_every": checkpoint_every}}
    if source is not None:
        record["options"]["loaded_from"] = str(source.checkpoint)
    atomic_write_text(path / "config.json", json.dumps(record, indent=2))
    opts = RunOptions(path, steps, eval_every, checkpoint_every, progress)
    agent = build_agent(spec, env_id, cfg, seed, dev, opts)
    if source is not None:
        try:
            names = load_weights(agent, source)
        except RLBlocksError:
            _close(agent)  # leave no half-made run behind: the user fixes the flags and runs again
            (path / "config.json").unlink(missing_ok=True)
            if created:
                shutil.rmtree(path, ignore_errors=True)
            raise
        print(f"loaded {', '.join(names)} from {source.checkpoint}")
    _loop(agent, steps)
    return path


# ----------------------------------------------------------------------------- --load
#: Modules whose state ``--load`` copies when the agent has them: the trained networks (with their
#: target copies), auxiliary critic heads (MERL) and the observation / return statistics the
#: networks were trained with. Optimizers (``algo``), replay/rollout, counters and RNG are not copied.
LOADABLE_MODULES = ("policy", "critic", "aux", "normalizer", "return_normalizer")
#: Entries of a loadable module's state that are run-time state, not weights: exploration-noise
#: processes and per-env running returns (their shapes follow num_envs).
_NOT_WEIGHTS = frozenset({"noise", "ret"})


@dataclasses.dataclass
class LoadSource:
    """A checked ``--load`` run: its directory, ``config.json`` record, checkpoint dir and state."""

    run_dir: Path
    record: dict[str, Any]
    checkpoint: Path
    state: dict[str, Any]


def _space_shapes(env_id: str) -> tuple[tuple, tuple]:
    """``(observation shape, action shape)`` of an env; a Discrete action space gives ``("n", n)``."""
    import gymnasium as gym

    env = make_env(env_id)
    try:
        act = env.action_space
        act_shape = ("n", int(act.n)) if isinstance(act, gym.spaces.Discrete) else tuple(act.shape or ())
        return tuple(env.observation_space.shape or ()), act_shape
    finally:
        env.close()


def check_load_source(load_dir: str | Path, spec: AlgoSpec, env_id: str) -> LoadSource:
    """Check that the run in ``load_dir`` can seed a new ``spec.name`` run on ``env_id``.

    Reads (and verifies) its latest checkpoint. Nothing is written.

    Raises:
        RLBlocksError: not a run, no or a corrupt checkpoint, another algorithm, or an env whose
            observation or action shape differs from ``env_id``'s.
    """
    load_dir = Path(load_dir)
    if not load_dir.is_dir():
        raise RLBlocksError(f"--load {load_dir} does not exist; pass a run directory made by `rlblocks train`")
    record = read_run(load_dir)
    src_algo = record.get("algo")
    if src_algo != spec.name:
        raise RLBlocksError(f"--load {load_dir} is a {src_algo} run but --algo is {spec.name}; load a "
                            f"{spec.name} run or train with --algo {src_algo}")
    checkpoint = latest_checkpoint(load_dir)
    state = load_checkpoint(checkpoint)
    src_env = str(record.get("env_id"))
    if src_env != env_id:
        (src_obs, src_act), (obs, act) = _space_shapes(src_env), _space_shapes(env_id)
        if (src_obs, src_act) != (obs, act):
            raise RLBlocksError(f"--load {load_dir} was trained on {src_env} (observation shape {src_obs}, action "
                                f"shape {src_act}) but {env_id} has observation shape {obs}, action shape {act}; "
                                "load a run trained on an env with the same spaces")
    return LoadSource(load_dir, record, checkpoint, state)


def _tensor_leaves(value: Any, prefix: str):
    if isinstance(value, torch.Tensor):
        yield prefix, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _tensor_leaves(v, f"{prefix}.{k}")


def load_weights(agent, source: LoadSource) -> list[str]:
    """Copy the :data:`LOADABLE_MODULES` states of ``source``'s checkpoint into ``agent``.

    Weights are copied in place (optimizers keep pointing at the same parameters). Entries that
    are not weights (exploration noise) keep the new agent's values. Returns the module names.

    Raises:
        CheckpointError: the checkpoint lacks a module or a tensor the agent has, or a tensor's
            shape differs (other network sizes); the message names the differing config keys.
    """
    saved = source.state.get("modules", {})
    where = f"--load {source.run_dir}"
    loaded = []
    for name in LOADABLE_MODULES:
        if name not in agent.modules:
            continue
        module = agent.modules[name]
        current = module.state_dict()
        src = saved.get(name)
        if not isinstance(src, dict):
            raise CheckpointError(f"{where}: its checkpoint {source.checkpoint} has no {name!r} state")
        merged = {}
        for key, value in current.items():
            if key in _NOT_WEIGHTS:
                merged[key] = value
            elif key not in src:
                raise CheckpointError(f"{where}: its checkpoint {source.checkpoint} has no {name}.{key}")
            else:
                merged[key] = src[key]
        mine = dict(_tensor_leaves(current, name))
        theirs = dict(_tensor_leaves({k: v for k, v in merged.items() if k not in _NOT_WEIGHTS}, name))
        for leaf, tensor in mine.items():
            other = theirs.get(leaf)
            if leaf.split(".")[1] in _NOT_WEIGHTS:
                continue
            if other is None or tuple(other.shape) != tuple(tensor.shape):
                got = "is missing" if other is None else f"has shape {tuple(other.shape)}"
                raise CheckpointError(f"{where}: {leaf} {got} there but has shape {tuple(tensor.shape)} here"
                                      f"{_config_diff(source.record, agent.config)}")
        try:
            module.load_state_dict(merged)
        except (KeyError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"{where}: {name} does not fit this agent ({type(e).__name__}: "
                                  f"{str(e).splitlines()[0][:200]})") from None
        loaded.append(name)
    if not loaded:
        raise CheckpointError(f"{where}: this agent has none of the modules --load copies "
                              f"({', '.join(LOADABLE_MODULES)}); its modules are {', '.join(agent.modules)}")
    return loaded


def _config_diff(record: dict[str, Any], cfg: BaseConfig) -> str:
    """``; config keys that differ: k (a there, b here); ...`` with a --set hint, or ``""``."""
    theirs = record.get("config", {})
    mine = cfg.to_dict()
    shape_words = ("hidden", "layer", "num_critics", "ensemble", "rnn", "lstm", "gru", "head", "sizes")
    keys = [k for k in mine if k in theirs and theirs[k] != mine[k] and any(w in k for w in shape_words)]
    if not keys:
        return ""

    def show(v):
        return ",".join(map(str, v)) if isinstance(v, list) else str(v)

    diffs = ", ".join(f"{k} ({show(theirs[k])} there, {show(mine[k])} here)" for k in keys[:4])
    sets = " ".join(f"{k}={show(theirs[k])}" for k in keys[:4])
    return f"; config keys that differ: {diffs}; build the new run with the same network sizes (--set {sets})"


def load_run_agent(run_dir: Path, *, for_training: bool, steps: int | None = None, device: str = "auto",
                   progress: bool = True):
    """Rebuild a run's agent from ``config.json`` and its latest checkpoint.

    Raises:
        RLBlocksError / CheckpointError: not a run, no checkpoint, corrupt checkpoint.
    """
    run_dir = Path(run_dir)
    record = read_run(run_dir)
    ckpt = latest_checkpoint(run_dir)
    state = load_checkpoint(ckpt)  # verify hashes and readability before building anything
    spec = get_algo(record["algo"])
    cfg = spec.config_cls().updated(record["config"], f"{run_dir}/config.json")
    if not for_training and hasattr(cfg, "buffer_size"):  # evaluation needs no replay capacity
        cfg = dataclasses.replace(cfg, buffer_size=max(getattr(cfg, "batch_size", 1), cfg.num_envs))
    cfg.validate()
    options = record.get("options", {})
    total = steps if steps is not None else int(options.get("steps", 0))
    opts = RunOptions(run_dir if for_training else None, total, int(options.get("eval_every", 0)) if for_training else 0,
                      int(options.get("checkpoint_every", 0)), progress and for_training, for_training)
    agent = build_agent(spec, record["env_id"], cfg, int(record["seed"]), resolve_device(device), opts)
    restore_agent(agent, ckpt, with_buffers=for_training, state=state)
    return agent, record


def resume_run(run_dir: str | Path, steps: int | None = None, device: str = "auto", progress: bool = True) -> Path:
    """Continue a run from its latest checkpoint until ``steps`` total env steps."""
    agent, record = load_run_agent(Path(run_dir), for_training=True, steps=steps, device=device, progress=progress)
    total = steps if steps is not None else int(record.get("options", {}).get("steps", 0))
    if agent.env_steps >= total:
        print(f"{run_dir} is already at {agent.env_steps} env steps (>= {total}); pass a larger --steps to train on")
        _close(agent)
        return Path(run_dir)
    if steps is not None:
        record.setdefault("options", {})["steps"] = steps
        atomic_write_text(Path(run_dir) / "config.json", json.dumps(record, indent=2))
    _loop(agent, total)
    return Path(run_dir)


def _close(agent) -> None:
    for name in ("logger", "env"):
        if name in agent.modules:
            agent.modules[name].close()


def _loop(agent, total_steps: int) -> None:
    """Train with a Ctrl-C handler: the first Ctrl-C finishes the step, checkpoints and exits."""
    def on_sigint(signum, frame):
        agent.stop_requested = True
        signal.signal(signal.SIGINT, previous)  # a second Ctrl-C aborts at once
        print("\nCtrl-C: saving a checkpoint and stopping (press again to abort without saving)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_sigint)
    agent.logger.start()
    try:
        agent.train(total_steps)
        if "checkpointer" in agent.modules:
            path = agent.checkpointer.save()
            where = f"; checkpoint {path}"
        else:
            where = ""
        recent = agent.logger.recent
        ret = f", recent return {np.mean(recent):.1f}" if recent else ""
        state = "stopped" if agent.stop_requested else "finished"
        agent.logger.close()
        print(f"{state} at {agent.env_steps} env steps{ret}{where}")
    finally:
        signal.signal(signal.SIGINT, previous)
        _close(agent)


def evaluate_run(run_dir: str | Path, episodes: int = 10, deterministic: bool = False, video: str | None = None,
                 render: bool = False, seed: int | None = None, device: str = "auto") -> list[float]:
    """Evaluate a run's latest checkpoint; returns the episode returns.

    Raises:
        RLBlocksError: as :func:`load_run_agent`, or ``render`` without a display.
    """
    from rlblocks.components.evaluator import evaluate

    if episodes <= 0:
        raise ConfigError(f"--episodes {episodes} must be positive")
    agent, record = load_run_agent(Path(run_dir), for_training=False, device=device)
    try:
        eval_seed = seed if seed is not None else int(record["seed"]) + 20_000
        with warnings.catch_warnings():  # a failed render also makes RecordVideo warn "zero frames"
            warnings.filterwarnings("ignore", message=".*zero frames.*")
            return evaluate(agent, record["env_id"], episodes, eval_seed, deterministic,
                            render_mode="human" if render else None, video_path=video)
    except Exception as e:
        if not (video or render) or isinstance(e, RLBlocksError):
            raise
        raise RLBlocksError(_render_error(record["env_id"], e, bool(video))) from None
    finally:
        _close(agent)


#: What headless MuJoCo rendering needs (checked on Debian 12 with mujoco 3 and software Mesa).
HEADLESS_HINT = ("headless MuJoCo rendering needs MUJOCO_GL=egl with the system packages libegl1 libopengl0 "
                 "libgl1-mesa-dri (apt-get install libegl1 libopengl0 libgl1-mesa-dri), or MUJOCO_GL=osmesa with "
                 "libosmesa6")


def _render_error(env_id: str, e: Exception, video: bool) -> str:
    """A one-line explanation (with the fix) of a rendering failure in ``rlblocks eval``."""
    import os

    import gymnasium as gym

    text = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
    if isinstance(e, (ImportError, gym.error.DependencyNotInstalled)):
        if "moviepy" in text.lower():
            return f"--video needs moviepy ({text}); pip install moviepy (or pip install -e \".[mujoco]\")"
        return f"rendering {env_id} needs a package that is missing ({text}); install the package it names"
    gl = os.environ.get("MUJOCO_GL")
    if video:
        return f"rendering {env_id} failed with MUJOCO_GL={gl} ({type(e).__name__}: {text}); {HEADLESS_HINT}"
    return (f"showing {env_id} in a window failed ({type(e).__name__}: {text}); --render needs a working display "
            f"and MUJOCO_GL unset or glfw (it is {gl}); use --video out.mp4 on a headless machine")
