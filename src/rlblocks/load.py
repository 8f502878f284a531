"""``--load``: start a new run from another run's trained weights (baselines' ``--load_path``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from rlblocks.checkpoint import latest_checkpoint, load_checkpoint
from rlblocks.config import BaseConfig
from rlblocks.envs import make_env
from rlblocks.errors import CheckpointError, RLBlocksError
from rlblocks.module import Weights
from rlblocks.registry import AlgoSpec
from rlblocks.rundir import read_record

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
    record = read_record(load_dir)
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
    """Copy the states of ``agent``'s :class:`~rlblocks.module.Weights` modules (the trained networks
    with their target copies, auxiliary critic heads, the observation / return statistics the
    networks were trained with) from ``source``'s checkpoint; optimizers, replay/rollout, counters
    and RNG are not copied.

    Weights are copied in place (optimizers keep pointing at the same parameters). Entries that
    are not weights (exploration noise) keep the new agent's values. Returns the module names.

    Raises:
        CheckpointError: the checkpoint lacks a module or a tensor the agent has, or a tensor's
            shape differs (other network sizes); the message names the differing config keys.
    """
    saved = source.state.get("modules", {})
    where = f"--load {source.run_dir}"
    loaded = []
    for module in agent.modules_of(Weights):
        name = module.name
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
        raise CheckpointError(f"{where}: this agent has no module with trained weights for --load to copy; its "
                              f"modules are {', '.join(agent.modules)}")
    return loaded


def _config_diff(record: dict[str, Any], cfg: BaseConfig) -> str:
    """``; config keys that differ: k (a there, b here); ...`` with a --set hint, or ``""``."""
    theirs = record.get("config", {})
    mine = cfg.to_dict()
    shape_words = ("hidden", "layer", "num_critics", "ensemble", "rnn", "lstm", "gru", "head", "sizes", "arch")
    keys = [k for k in mine if k in theirs and theirs[k] != mine[k] and any(w in k for w in shape_words)]
    if not keys:
        return ""

    def show(v):
        return ",".join(map(str, v)) if isinstance(v, list) else str(v)

    diffs = ", ".join(f"{k} ({show(theirs[k])} there, {show(mine[k])} here)" for k in keys[:4])
    sets = " ".join(f"{k}={show(theirs[k])}" for k in keys[:4])
    return f"; config keys that differ: {diffs}; build the new run with the same network sizes (--set {sets})"
