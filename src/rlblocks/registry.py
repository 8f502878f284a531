"""Algorithm registry: name → config class, presets and the list of modules that make the agent.

An algorithm preset is just a list of modules (DESIGN.md); variants are module swaps.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import torch

from rlblocks.agent import Agent
from rlblocks.algos.ddpg import DDPG, DDPGConfig
from rlblocks.algos.dqn import DQN, DQNConfig, EpsilonGreedyPolicy, QCritic
from rlblocks.algos.merl import MERLConfig, merl_modules
from rlblocks.algos.merl_heads import MERLHeads
from rlblocks.algos.off_policy import Critic, DeterministicPolicy, GaussianPolicy, OffPolicyConfig
from rlblocks.algos.ppo import PPOConfig
from rlblocks.algos.ppo_modules import ppo_modules
from rlblocks.algos.recurrent_off_policy import (
    RecurrentCritic,
    RecurrentDDPG,
    RecurrentDeterministicPolicy,
    RecurrentGaussianPolicy,
    RecurrentSAC,
    RecurrentTD3,
    SequenceReplay,
)
from rlblocks.algos.replay_config import ReplayConfig
from rlblocks.algos.sac import SAC, SACConfig
from rlblocks.algos.targets import TDTarget
from rlblocks.algos.td3 import TD3, TD3Config
from rlblocks.algos.value_expansion import target_modules
from rlblocks.buffers import ReplayBuffer
from rlblocks.buffers.her import parse_strategy
from rlblocks.components import Checkpointer, EnvRunner, Evaluator, Logger, ObsNormalizer, Replay, Threads
from rlblocks.components.events import EventLog
from rlblocks.components.goal_normalizer import GoalNormalizer
from rlblocks.components.her_replay import HindsightReplay
from rlblocks.config import BaseConfig, env_presets, named_presets
from rlblocks.envs.goal import goal_shapes, network_obs_dim
from rlblocks.errors import ConfigError, RLBlocksError
from rlblocks.module import Module


@dataclass
class RunOptions:
    """How to run (not hyperparameters, so not part of the run hash)."""

    run_dir: Path | None = None
    total_steps: int = 100_000
    eval_every: int = 10_000
    checkpoint_every: int = 50_000
    progress: bool = True
    tensorboard: bool = True
    #: False for an agent that only acts (``rlblocks eval``): no replay buffer, no update module.
    training: bool = True
    #: torch threads: ``None`` adapts to the cores other processes leave free (``components/threads.py``)
    threads: int | None = None
    #: the count in the run's ``config.json``, used when ``threads`` is ``None`` and no checkpoint has one
    recorded_threads: int | None = None
    #: builds the ``env`` module, ``env_runner(env_id, num_envs, seed, vector_mode, allow_goal)``;
    #: ``None``: an in-process :class:`EnvRunner`. The Ray layouts (``rlblocks.distributed``) swap in
    #: their workers here.
    env_runner: Callable[..., Module] | None = None
    #: builds the ``evaluator`` module, ``evaluator(run_dir, env_id, every, episodes, seed)``;
    #: ``None``: the in-process :class:`Evaluator` (the async Ray layout swaps in an evaluator actor).
    evaluator: Callable[..., Module] | None = None


@dataclass
class AlgoSpec:
    name: str
    config_cls: type[BaseConfig]
    build: Callable[..., list]
    action_space: str  # "continuous" | "discrete" | "any"
    summary: str
    presets: dict[str, dict] = field(default_factory=dict)  # env-id glob → overrides
    #: default env steps between evaluations: keeps evaluation a small share of a default run's
    #: wall time (docs/benchmarks.md, "Evaluation cost")
    eval_every: int = 10_000

    def named_preset(self, name: str) -> dict:
        """The values of preset ``name`` for this algorithm.

        Raises:
            ConfigError: an unknown name, or a preset made for other algorithms.
        """
        if name not in NAMED_PRESETS:
            import difflib

            close = difflib.get_close_matches(name, NAMED_PRESETS, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(f"unknown preset {name!r}: choose one of {', '.join(NAMED_PRESETS)}{hint}")
        algos, values, _ = NAMED_PRESETS[name]
        if self.name not in algos:
            raise ConfigError(f"preset {name!r} is for {', '.join(algos)}, not {self.name}")
        return values

    def preset_for(self, env_id: str) -> dict:
        out: dict = {}
        for pattern, values in self.presets.items():
            if fnmatch.fnmatch(env_id, pattern):
                out.update(values)
        return out


def _normalizer(env: EnvRunner, cfg: ReplayConfig, device: torch.device):
    """The ``normalizer`` module for the env's observations: a flat Box, or a goal dict (per key)."""
    if env.goal:
        shapes = goal_shapes(env.obs_space)
        return GoalNormalizer(shapes["observation"][0], shapes["desired_goal"][0], cfg.normalize_obs,
                              cfg.obs_clip, cfg.obs_norm_eps).to(device)
    return ObsNormalizer(env.obs_space.shape, cfg.normalize_obs, cfg.obs_clip, cfg.obs_norm_eps).to(device)


def _replay(env: EnvRunner, cfg: ReplayConfig, act_dim: int, device: torch.device,
            action_dtype: torch.dtype = torch.float32):
    """The ``replay`` module: goal dicts stored per key, with hindsight relabelling unless ``her=none``."""
    strategy = parse_strategy(cfg.her) if env.goal else None
    shape = goal_shapes(env.obs_space) if env.goal else env.obs_space.shape
    buffer = ReplayBuffer(cfg.buffer_size, cfg.num_envs, shape, act_dim, cfg.gamma, cfg.n_step, device,
                          action_dtype=action_dtype, track_episodes=strategy is not None)
    return HindsightReplay(buffer, env.env_id, strategy, cfg.her_terminal) if strategy is not None else Replay(buffer)


#: the recurrent ``algo`` module of each feed-forward one (``arch=lstm|gru``)
_RECURRENT = {SAC: RecurrentSAC, TD3: RecurrentTD3, DDPG: RecurrentDDPG}


def _off_policy_modules(algo_cls, policy_kind: str):
    def build(env_id: str, cfg: OffPolicyConfig, seed: int, device: torch.device, opts: RunOptions) -> list:
        env = _env_runner(opts, env_id, cfg, seed, allow_goal=True)
        obs_dim, act_dim = network_obs_dim(env.obs_space), int(env.action_space.shape[0])
        if cfg.arch != "ff":
            return _recurrent_off_policy_modules(env, algo_cls, policy_kind, cfg, seed, device, opts)
        if policy_kind == "gaussian":
            policy = GaussianPolicy(obs_dim, act_dim, cfg, device)
        else:
            policy = DeterministicPolicy(obs_dim, act_dim, cfg, cfg.num_envs, device)
        normalizer = _normalizer(env, cfg, device)
        if not opts.training:  # acting only: no replay buffer to allocate, no critic, no update
            return [env, normalizer, policy] + _service_modules(env_id, cfg, seed, opts)
        modules = [env, normalizer, _replay(env, cfg, act_dim, device), policy, Critic(obs_dim, act_dim, cfg, device)]
        if cfg.merl:  # an auxiliary-loss module; built right after the critic, as when it owned the heads: same init draws
            modules.append(MERLHeads(cfg.hidden_sizes[-1], obs_dim, cfg.ve_coef, cfg.fs_coef,
                                     ensemble_size=cfg.num_critics, device=device))
        modules += target_modules(cfg, obs_dim, act_dim, env.goal, device)  # TD(0), or a world model + MVE/STEVE
        return modules + [algo_cls(cfg)] + _service_modules(env_id, cfg, seed, opts)

    return build


def _recurrent_off_policy_modules(env: EnvRunner, algo_cls, policy_kind: str, cfg: OffPolicyConfig, seed: int,
                                  device: torch.device, opts: RunOptions) -> list:
    """``arch=lstm|gru``: the recurrent policy, critic, sequence replay and update
    (:mod:`rlblocks.algos.recurrent_off_policy`) in place of the feed-forward ones.

    Raises:
        RLBlocksError: a goal env (dict observations), which the history encoders do not read.
    """
    if env.goal or len(env.obs_space.shape) != 1:
        env.close()
        raise RLBlocksError(f"arch={cfg.arch} needs a flat Box observation but {env.env_id} has {env.obs_space}; "
                            "use arch=ff")
    obs_dim, act_dim = int(env.obs_space.shape[0]), int(env.action_space.shape[0])
    if policy_kind == "gaussian":
        policy = RecurrentGaussianPolicy(obs_dim, act_dim, cfg, device)
    else:
        policy = RecurrentDeterministicPolicy(obs_dim, act_dim, cfg, cfg.num_envs, device)
    normalizer = _normalizer(env, cfg, device)
    if not opts.training:
        return [env, normalizer, policy] + _service_modules(env.env_id, cfg, seed, opts)
    buffer = ReplayBuffer(cfg.buffer_size, cfg.num_envs, env.obs_space.shape, act_dim, cfg.gamma, 1, device)
    modules = [env, normalizer, SequenceReplay(buffer, cfg.seq_len, cfg.burn_in), policy,
               RecurrentCritic(obs_dim, act_dim, cfg, device), TDTarget(), _RECURRENT[algo_cls](cfg)]
    return modules + _service_modules(env.env_id, cfg, seed, opts)


def _env_runner(opts: RunOptions, env_id: str, cfg: BaseConfig, seed: int, allow_goal: bool = False) -> Module:
    """The ``env`` module: ``opts.env_runner``'s (a Ray layout's workers) or an in-process :class:`EnvRunner`."""
    make = opts.env_runner if opts.env_runner is not None else EnvRunner
    return make(env_id, cfg.num_envs, seed, cfg.vector_mode, allow_goal=allow_goal)


def _service_modules(env_id: str, cfg: BaseConfig, seed: int, opts: RunOptions) -> list:
    evaluator = opts.evaluator if opts.evaluator is not None else Evaluator
    modules = [EventLog(opts.run_dir),
               evaluator(opts.run_dir, env_id, opts.eval_every, cfg.eval_episodes, seed + 10_000),
               Logger(opts.run_dir, cfg.log_every, opts.total_steps, opts.progress, opts.tensorboard)]
    if opts.run_dir is not None:
        modules.append(Checkpointer(opts.run_dir, opts.checkpoint_every, opts.total_steps))
    if opts.training:
        modules.append(Threads(opts.threads, opts.recorded_threads))
    return modules


#: ``name: (algorithms, values, what it is)`` selected with ``--preset NAME`` (or ``"preset"`` in a
#: config file), applied after the per-env preset and before the config file and ``--set``: the data
#: files ``configs/presets/named/<name>.json`` (with their measured notes).
NAMED_PRESETS: dict[str, tuple[tuple[str, ...], dict, str]] = {
    name: (tuple(data["algos"]), data["values"], data["description"]) for name, data in named_presets().items()}

ALGOS: dict[str, AlgoSpec] = {
    "sac": AlgoSpec("sac", SACConfig, _off_policy_modules(SAC, "gaussian"), "continuous",
                    "Soft Actor-Critic, automatic temperature (Haarnoja et al. 2018)",
                    presets=env_presets("sac")),
    "td3": AlgoSpec("td3", TD3Config, _off_policy_modules(TD3, "deterministic"), "continuous",
                    "Twin Delayed DDPG (Fujimoto et al. 2018)", presets=env_presets("td3")),
    "ddpg": AlgoSpec("ddpg", DDPGConfig, _off_policy_modules(DDPG, "deterministic"), "continuous",
                     "Deep Deterministic Policy Gradient (Lillicrap et al. 2015)",
                     presets=env_presets("ddpg")),
}


def _dqn_modules(env_id: str, cfg: DQNConfig, seed: int, device: torch.device, opts: RunOptions) -> list:
    env = _env_runner(opts, env_id, cfg, seed, allow_goal=True)
    obs_dim, n_actions = network_obs_dim(env.obs_space), int(env.action_space.n)
    critic = QCritic(obs_dim, n_actions, cfg, device)
    modules = [env, _normalizer(env, cfg, device), critic, EpsilonGreedyPolicy(n_actions, cfg, device)]
    if not opts.training:
        return modules + _service_modules(env_id, cfg, seed, opts)
    modules.insert(2, _replay(env, cfg, n_actions, device, torch.int64))
    return modules + [TDTarget(), DQN(cfg)] + _service_modules(env_id, cfg, seed, opts)


ALGOS["dqn"] = AlgoSpec("dqn", DQNConfig, _dqn_modules, "discrete",
                        "DQN with double-Q, dueling heads, n-step and HER (Mnih et al. 2015)",
                        presets=env_presets("dqn"))


def _on_policy_modules(learner_modules):
    def build(env_id: str, cfg: PPOConfig, seed: int, device: torch.device, opts: RunOptions) -> list:
        env = _env_runner(opts, env_id, cfg, seed)
        return [env, *learner_modules(env, cfg, device, opts.total_steps)] + _service_modules(env_id, cfg, seed, opts)

    return build


# PPO steps its envs 20-30x as fast as SAC updates: evaluating every 10,000 steps would cost as
# much env stepping as training itself.
PPO_EVAL_EVERY = 50_000
ALGOS["ppo"] = AlgoSpec("ppo", PPOConfig, _on_policy_modules(ppo_modules), "any",
                        "PPO, clipped surrogate, as OpenAI baselines ppo2 (Schulman et al. 2017)",
                        presets=env_presets("ppo"), eval_every=PPO_EVAL_EVERY)
ALGOS["ppo-merl"] = AlgoSpec("ppo-merl", MERLConfig, _on_policy_modules(merl_modules), "any",
                             "PPO + MERL variance-explained and future-state heads (Flet-Berliac & Preux 2019)",
                             presets=env_presets("ppo-merl"), eval_every=PPO_EVAL_EVERY)


def get_algo(name: str) -> AlgoSpec:
    if name not in ALGOS:
        import difflib

        close = difflib.get_close_matches(name, ALGOS, n=2)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise RLBlocksError(f"unknown algorithm {name!r}: choose one of {', '.join(ALGOS)}{hint}")
    return ALGOS[name]


def check_action_space(spec: AlgoSpec, env_id: str, space: gym.Space) -> None:
    """Raise :class:`RLBlocksError` if ``spec`` cannot act in ``space``."""
    if spec.action_space == "continuous" and not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1):
        others = [a.name for a in ALGOS.values() if a.action_space in ("discrete", "any")]
        alt = f"use {' or '.join(others)}" if others else "use a continuous-action env such as Pendulum-v1"
        raise RLBlocksError(f"{spec.name} needs a continuous (Box) action space but {env_id} has {space}; {alt}")
    if spec.action_space == "discrete" and not isinstance(space, gym.spaces.Discrete):
        raise RLBlocksError(f"{spec.name} needs a Discrete action space but {env_id} has {space}")


def acting_agent(algo: str, env_id: str, config: dict, total_steps: int, num_envs: int, seed: int) -> Agent:
    """An agent that only acts (env runner, normaliser, policy; no run directory) with ``num_envs``
    in-process envs seeded from ``seed``: what a Ray worker or evaluator actor builds from the run's
    resolved ``config`` (a dict, as in ``config.json``). Module-level, so Ray ships it by reference."""
    spec = get_algo(algo)
    cfg = spec.config_cls().updated({**config, "num_envs": num_envs, "vector_mode": "sync"}, "the worker's config")
    opts = RunOptions(None, total_steps, 0, 0, False, tensorboard=False, training=False)
    return build_agent(spec, env_id, cfg, seed, torch.device("cpu"), opts)


def build_agent(spec: AlgoSpec, env_id: str, cfg: BaseConfig, seed: int, device: torch.device,
                opts: RunOptions) -> Agent:
    """Seed torch, build the modules and attach them to an :class:`Agent`."""
    torch.manual_seed(seed)
    return Agent(spec.build(env_id, cfg, seed, device, opts), cfg, device)
