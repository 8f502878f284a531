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
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlblocks.checkpoint import atomic_write_text, latest_checkpoint, load_checkpoint, restore_agent
from rlblocks.config import BaseConfig, load_config_file
from rlblocks.envs import check_env_id, make_env
from rlblocks.errors import ConfigError, RLBlocksError
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
          resume: bool = False, overwrite: bool = False, progress: bool = True) -> Path:
    """Train ``algo`` on ``env_id`` until ``steps`` env steps; returns the run directory.

    Raises:
        RLBlocksError: unknown algo/env, incompatible spaces, invalid config, or an occupied
            ``run_dir`` without ``resume``/``overwrite``. Raised before anything is written.
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
    if (path / "config.json").exists():
        if resume:
            return resume_run(path, steps, device=device, progress=progress)
        if not overwrite:
            raise RLBlocksError(f"{path} already holds a run; add --resume to continue it or --overwrite to replace it")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    record = {"algo": algo, "env_id": env_id, "seed": seed, "config": cfg.to_dict(),
              "options": {"steps": steps, "eval_every": eval_every, "checkpoint_every": checkpoint_every}}
    atomic_write_text(path / "config.json", json.dumps(record, indent=2))
    opts = RunOptions(path, steps, eval_every, checkpoint_every, progress)
    agent = build_agent(spec, env_id, cfg, seed, dev, opts)
    _loop(agent, steps)
    return path


def load_run_agent(run_dir: Path, *, for_training: bool, steps: int | None = None, device: str = "auto",
                   progress: bool = True):
    """Rebuild a run's agent from ``config.json`` and its latest checkpoint.

    Raises:
        RLBlocksError / CheckpointError: not a run, no checkpoint, corrupt checkpoint.
    """
    run_dir = Path(run_dir)
    record = read_run(run_dir)
    ckpt = latest_checkpoint(run_dir)
    load_checkpoint(ckpt)  # verify hashes and readability before building anything
    spec = get_algo(record["algo"])
    cfg = spec.config_cls().updated(record["config"], f"{run_dir}/config.json")
    if not for_training:  # evaluation needs no replay capacity
        cfg = dataclasses.replace(cfg, buffer_size=max(getattr(cfg, "batch_size", 1), cfg.num_envs))
    cfg.validate()
    options = record.get("options", {})
    total = steps if steps is not None else int(options.get("steps", 0))
    opts = RunOptions(run_dir if for_training else None, total, int(options.get("eval_every", 0)) if for_training else 0,
                      int(options.get("checkpoint_every", 0)), progress and for_training, for_training)
    agent = build_agent(spec, record["env_id"], cfg, int(record["seed"]), resolve_device(device), opts)
    restore_agent(agent, ckpt, with_buffers=for_training)
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
        return evaluate(agent, record["env_id"], episodes, eval_seed, deterministic,
                        render_mode="human" if render else None, video_path=video)
    finally:
        _close(agent)
