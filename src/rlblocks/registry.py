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
from rlblocks.algos.merl import MERLConfig, merl_modules
from rlblocks.algos.merl_heads import MERLHeads
from rlblocks.algos.off_policy import Critic, DeterministicPolicy, GaussianPolicy, OffPolicyConfig
from rlblocks.algos.ppo import PPOConfig
from rlblocks.algos.ppo_modules import ppo_modules
from rlblocks.algos.sac import SAC, SACConfig
from rlblocks.algos.td3 import TD3, TD3Config
from rlblocks.buffers import ReplayBuffer
from rlblocks.components import Checkpointer, EnvRunner, Evaluator, Logger, ObsNormalizer, Replay, Threads
from rlblocks.config import BaseConfig
from rlblocks.errors import RLBlocksError


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

    def preset_for(self, env_id: str) -> dict:
        out: dict = {}
        for pattern, values in self.presets.items():
            if fnmatch.fnmatch(env_id, pattern):
                out.update(values)
        return out


def _off_policy_modules(algo_cls, policy_kind: str):
    def build(env_id: str, cfg: OffPolicyConfig, seed: int, device: torch.device, opts: RunOptions) -> list:
        env = EnvRunner(env_id, cfg.num_envs, seed, cfg.vector_mode)
        obs_shape = env.obs_space.shape
        obs_dim, act_dim = int(obs_shape[0]), int(env.action_space.shape[0])
        if policy_kind == "gaussian":
            policy = GaussianPolicy(obs_dim, act_dim, cfg, device)
        else:
            policy = DeterministicPolicy(obs_dim, act_dim, cfg, cfg.num_envs, device)
        normalizer = ObsNormalizer(obs_shape, cfg.normalize_obs, cfg.obs_clip).to(device)
        if not opts.training:  # acting only: no replay buffer to allocate, no critic, no update
            return [env, normalizer, policy] + _service_modules(env_id, cfg, seed, opts)
        buffer = ReplayBuffer(cfg.buffer_size, cfg.num_envs, obs_shape, act_dim, cfg.gamma, cfg.n_step, device)
        modules = [env, normalizer, Replay(buffer), policy, Critic(obs_dim, act_dim, cfg, device)]
        if cfg.merl:  # an auxiliary-loss module; built right after the critic, as when it owned the heads: same init draws
            modules.append(MERLHeads(cfg.hidden_sizes[-1], obs_dim, cfg.ve_coef, cfg.fs_coef,
                                     ensemble_size=cfg.num_critics, device=device))
        return modules + [algo_cls(cfg)] + _service_modules(env_id, cfg, seed, opts)

    return build


def _service_modules(env_id: str, cfg: BaseConfig, seed: int, opts: RunOptions) -> list:
    modules = [Evaluator(opts.run_dir, env_id, opts.eval_every, cfg.eval_episodes, seed + 10_000),
               Logger(opts.run_dir, cfg.log_every, opts.total_steps, opts.progress, opts.tensorboard)]
    if opts.run_dir is not None:
        modules.append(Checkpointer(opts.run_dir, opts.checkpoint_every, opts.total_steps))
    if opts.training:
        modules.append(Threads(opts.threads, every=1000))
    return modules


# Pendulum: a 3-dim observation needs no 256-wide nets; a faster learning rate (as rl-zoo's
# Pendulum settings) and 1k random warm-up steps.
_PENDULUM = {"learning_starts": 1000, "actor_lr": 1e-3, "critic_lr": 1e-3, "hidden_sizes": [64, 64]}

ALGOS: dict[str, AlgoSpec] = {
    "sac": AlgoSpec("sac", SACConfig, _off_policy_modules(SAC, "gaussian"), "continuous",
                    "Soft Actor-Critic, automatic temperature (Haarnoja et al. 2018)",
                    presets={"Pendulum-*": {**_PENDULUM, "alpha_lr": 1e-3}}),
    "td3": AlgoSpec("td3", TD3Config, _off_policy_modules(TD3, "deterministic"), "continuous",
                    "Twin Delayed DDPG (Fujimoto et al. 2018)", presets={"Pendulum-*": _PENDULUM}),
    "ddpg": AlgoSpec("ddpg", DDPGConfig, _off_policy_modules(DDPG, "deterministic"), "continuous",
                     "Deep Deterministic Policy Gradient (Lillicrap et al. 2015)", presets={"Pendulum-*": _PENDULUM}),
}


def _on_policy_modules(learner_modules):
    def build(env_id: str, cfg: PPOConfig, seed: int, device: torch.device, opts: RunOptions) -> list:
        env = EnvRunner(env_id, cfg.num_envs, seed, cfg.vector_mode)
        return [env, *learner_modules(env, cfg, device, opts.total_steps)] + _service_modules(env_id, cfg, seed, opts)

    return build


# CartPole: rl-zoo's PPO settings (8 envs × 32 steps, one 256-sample minibatch, 20 epochs).
_PPO_CARTPOLE = {"num_envs": 8, "n_steps": 32, "n_minibatches": 1, "n_epochs": 20, "gamma": 0.98,
                 "gae_lambda": 0.8, "lr": 1e-3, "anneal_clip_range": True, "clip_value_loss": False,
                 "normalize_obs": False, "normalize_reward": False}
# CartPole without velocities: rl-zoo's ppo_lstm settings (the CartPole ones plus observation
# normalisation, ReLU, an LSTM of 64 for each of actor and critic, net_arch [64] after it; rl-zoo
# also turns orthogonal init off); --set arch=ff gives the feed-forward baseline.
_PPO_CARTPOLE_NOVEL = {**_PPO_CARTPOLE, "arch": "lstm", "rnn_size": 64, "hidden_sizes": [64], "normalize_obs": True,
                       "activation": "relu"}
# PPO steps its envs 20-30x as fast as SAC updates: evaluating every 10,000 steps would cost as
# much env stepping as training itself.
PPO_EVAL_EVERY = 50_000
ALGOS["ppo"] = AlgoSpec("ppo", PPOConfig, _on_policy_modules(ppo_modules), "any",
                        "PPO, clipped surrogate, as OpenAI baselines ppo2 (Schulman et al. 2017)",
                        presets={"CartPole-*": _PPO_CARTPOLE, "CartPoleNoVel-*": _PPO_CARTPOLE_NOVEL},
                        eval_every=PPO_EVAL_EVERY)
ALGOS["ppo-merl"] = AlgoSpec("ppo-merl", MERLConfig, _on_policy_modules(merl_modules), "any",
                             "PPO + MERL variance-explained and future-state heads (Flet-Berliac & Preux 2019)",
                             presets={"CartPole-*": _PPO_CARTPOLE, "CartPoleNoVel-*": _PPO_CARTPOLE_NOVEL},
                             eval_every=PPO_EVAL_EVERY)


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


def build_agent(spec: AlgoSpec, env_id: str, cfg: BaseConfig, seed: int, device: torch.device,
                opts: RunOptions) -> Agent:
    """Seed torch, build the modules and attach them to an :class:`Agent`."""
    torch.manual_seed(seed)
    return Agent(spec.build(env_id, cfg, seed, device, opts), cfg, device)
