"""A run request: every check on user input, made before anything is written.

:func:`make_request` turns what ``rlblocks train`` (or :func:`rlblocks.run.train`) is given into a
:class:`RunRequest`: the algorithm and env (ids checked), the resolved and validated config, the
seed, schedules, torch thread count, device and backend, after checking that the algorithm can act
in the env and that its buffers fit in memory. ``train`` starts a run from it and ``rlblocks sweep``
checks each cell of its grid with it, so both refuse the same input with the same line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlblocks.algos.replay_config import ReplayConfig
from rlblocks.components.threads import env_threads, resolve_threads
from rlblocks.config import BaseConfig, find_config_file, load_config_file, run_identity, run_record_options
from rlblocks.envs import check_env_id, make_env
from rlblocks.envs.goal import is_goal_space
from rlblocks.errors import ConfigError, RLBlocksError
from rlblocks.memory import check_memory
from rlblocks.registry import AlgoSpec, check_action_space, get_algo
from rlblocks.run.backend import check_backend


@dataclass
class RunRequest:
    """A checked request for a new run (see :func:`make_request`)."""

    spec: AlgoSpec
    env_id: str
    cfg: BaseConfig
    seed: int
    steps: int
    eval_every: int
    checkpoint_every: int
    #: the new run's torch thread count, and where it came from (printed at the start)
    threads: int
    threads_from: str
    device: torch.device
    backend: str = "local"
    workers: int = 1
    #: ``--config`` as given (provenance in ``config.json``), ``None`` without one
    config_file: str | None = None

    @property
    def algo(self) -> str:
        return self.spec.name

    def default_run_dir(self, root: str = "runs") -> Path:
        return default_run_dir(self.algo, self.env_id, self.cfg, self.seed, root)

    def record(self) -> dict[str, Any]:
        """The run's ``config.json``: identity, resolved hyperparameters and run options."""
        options: dict[str, Any] = {"steps": self.steps, "eval_every": self.eval_every,
                                   "checkpoint_every": self.checkpoint_every, "threads": self.threads}
        if self.config_file is not None:  # provenance only: the resolved values are what the run uses
            options["config_file"] = str(self.config_file)
        if self.backend == "ray":  # recorded only for Ray runs: in-process records stay as they were
            options.update({"backend": self.backend, "workers": self.workers})
        return {"algo": self.algo, "env_id": self.env_id, "seed": self.seed, "config": self.cfg.to_dict(),
                "options": options}


def make_request(algo: str | None, env_id: str | None, *, steps: int | None = None, seed: int | None = None,
                 config_file: str | None = None, overrides: dict[str, Any] | None = None, preset: str | None = None,
                 eval_every: int | None = None, checkpoint_every: int | None = None, device: str = "auto",
                 threads: int | None = None, backend: str = "local", workers: int | None = None,
                 ray_address: str | None = None) -> RunRequest:
    """Check a request for a new run; the arguments are :func:`rlblocks.run.train`'s.

    ``None`` arguments take their defaults: ``steps`` 100,000, ``seed`` 0, ``checkpoint_every`` 50,000,
    ``eval_every`` the algorithm's; with ``config_file`` a run's ``config.json``, that run's values
    first (:data:`rlblocks.config.RECORD_OPTIONS`). ``threads``: ``--threads``, else
    ``OMP_NUM_THREADS``, else the recorded run's, else the cores other processes leave free now.

    Raises:
        RLBlocksError: unknown algo/env, incompatible spaces, invalid config, seed or schedule, too
            little memory, an unavailable device, or backend options that do not fit.
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
    check_seed(seed)
    check_threads(threads)
    if threads is None and env_threads() is None and "threads" in repeat:
        count, threads_from = repeat["threads"], f"as in {config_file}"
    else:
        count, threads_from = resolve_threads(threads)  # a new run's count (a resumed run keeps its own)
    dev = resolve_device(device)
    check_env_fits(spec, env_id, cfg)
    workers = check_backend(spec, env_id, cfg, backend, workers, ray_address)
    return RunRequest(spec, env_id, cfg, seed, steps, eval_every, checkpoint_every, count, threads_from, dev,
                      backend, workers, config_file if config_path is not None else None)


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


def _first(*values):
    """The first of ``values`` that is not ``None``."""
    return next(v for v in values if v is not None)


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)
