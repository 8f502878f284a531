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
from rlblocks.config import BaseConfig
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


# Pendulum: a 3-dim observation needs no 256-wide nets; a faster learning rate (as rl-zoo's
# Pendulum settings) and 1k random warm-up steps.
_PENDULUM = {"learning_starts": 1000, "actor_lr": 1e-3, "critic_lr": 1e-3, "hidden_sizes": [64, 64]}

# Goal envs (gymnasium-robotics Fetch*, PointMaze*): HER's gamma 0.98, learning rates 1e-3, 1k random
# steps, and mrl's normaliser settings (per key, raw clip 200, normalised clip 5, eps 1e-8; obs_norm_eps=1e-4
# floors each std at 0.01 as HER's baselines) for where normalize_obs is on.
_GOAL_ENV = {"gamma": 0.98, "actor_lr": 1e-3, "critic_lr": 1e-3, "learning_starts": 1000, "obs_clip": 5.0}
# DDPG/TD3 normalise and clip TD targets to [-1/(1-gamma), 0], the range of sparse -1/0 returns (HER, mrl).
_GOAL_CLIPPED = {**_GOAL_ENV, "normalize_obs": True, "her_clip_target": True}
_GOAL_PRESETS = {"Fetch*": _GOAL_CLIPPED, "PointMaze*": _GOAL_CLIPPED}
# SAC takes SB3's HER setup: raw inputs, unclipped targets, the temperature at lr 1e-3. On FetchPush-v4
# (300k steps, docs/benchmarks.md) that reached 0.90 / 0.93 eval success (seeds 0 / 1). With clipped
# targets SAC stayed at chance (0.07; its soft targets add -alpha log pi to every reward, so the
# sparse-return range is not theirs); with mrl's normaliser and unclipped targets it reached 1.00 on
# seed 0 but stayed at chance on seed 1.
_SAC_GOAL = {**_GOAL_ENV, "alpha_lr": 1e-3}
_SAC_GOAL_PRESETS = {"Fetch*": _SAC_GOAL, "PointMaze*": _SAC_GOAL}
# the networks and batch; the normaliser and the target clip come from the env's preset per algorithm
_FETCH_CPU = {**_GOAL_ENV, "hidden_sizes": [256, 256], "batch_size": 256, "her": "future_4"}

#: ``name: (algorithms, values, what it is)`` selected with ``--preset NAME`` (or ``"preset"`` in a
#: config file), applied after the per-env preset and before the config file and ``--set``.
NAMED_PRESETS: dict[str, tuple[tuple[str, ...], dict, str]] = {
    # mrl's `protoge_config` (Pitis et al. 2020; mrl/configs/make_continuous_agents.py) with the 3×512
    # LayerNorm layers of its train_her.py: DDPG, gamma 0.98, lr 1e-3, batch 2000, Polyak 0.05 every 40
    # updates, 5,000 random steps (mrl: initial_explore 5000; its warm_up 2500 buffered steps before the
    # first update is one key here), Gaussian noise 0.1 and 10% uniform random actions (eexplore),
    # action_l2 0.1, HER rfaab_1_4_3_1_1, targets clipped to [-1/(1-gamma), 0], LayerNorm in actor and
    # critic and each gradient element clipped to ±5. The critic's LayerNorm has no affine parameters
    # (it is batched over the ensemble), mrl's has.
    "protoge": (("ddpg", "td3"),
                {"hidden_sizes": [512, 512, 512], "layer_norm": True, "actor_layer_norm": True,
                 "grad_value_clip": 5.0, "gamma": 0.98, "actor_lr": 1e-3,
                 "critic_lr": 1e-3, "batch_size": 2000, "tau": 0.05, "target_update_every": 40,
                 "learning_starts": 5000, "exploration_noise": 0.1, "random_eps": 0.1, "action_l2": 0.1,
                 "her": "rfaab_1_4_3_1_1", "her_clip_target": True, "normalize_obs": True, "obs_clip": 5.0},
                ("mrl's protoge_config (3x512 + LayerNorm, batch 2000, Polyak 0.05 every 40 updates, "
                 "HER rfaab_1_4_3_1_1)")),
    # Fetch on a 2-core CPU: 256×256, batch 256, 1k warm-up; DDPG+HER reached 1.00 eval success on
    # FetchReach-v4 at 2,000 steps with these values (seeds 0 and 1, docs/benchmarks.md). The normaliser
    # and the target clip come from the env's preset (DDPG/TD3 have both, SAC neither).
    "fetch-cpu": (("ddpg", "td3", "sac"),
                  _FETCH_CPU,
                  "Fetch tasks on a small CPU (256x256, batch 256, 1k warm-up, HER future_4)"),
    # fetch-cpu plus the exploration of HER's DDPG (Plappert et al. 2018, arXiv 1802.09464; baselines her:
    # random_eps 0.3, noise_eps 0.2, action_l2 1.0) for tasks where the object must be found first
    # (FetchPush/PickAndPlace/Slide): with fetch-cpu's Gaussian 0.1 alone, DDPG+HER on FetchPush-v4 stayed at
    # the chance success rate (0.03-0.07, goals already met at reset) up to 80k steps (seeds 0 and 1); with
    # this preset it reached 0.47 / 0.63 at 300k, still rising (docs/benchmarks.md).
    "fetch-cpu-explore": (("ddpg", "td3"),
                          {**_FETCH_CPU, "her_clip_target": True, "random_eps": 0.3, "exploration_noise": 0.2,
                           "action_l2": 1.0},
                          "fetch-cpu with HER's DDPG exploration (random_eps 0.3, noise 0.2, action_l2 1.0)"),
    # Pendulum with the angular velocity hidden (PendulumNoVel-v1), recurrent: an LSTM of 32 for each of
    # actor and critic on observation + previous action + previous reward, 64x64 heads, 32 sequences of
    # 16 steps after a 4-step burn-in, lr 1e-3, 1k warm-up, one update every 2 env steps (a recurrent update
    # costs 3-4x a feed-forward one on CPU); --set arch=ff gives the feed-forward baseline.
    # Reached >= -250 within 30k steps for seeds 0 and 1 with SAC (docs/recurrent.md).
    "pendulum-novel": (("ddpg", "td3", "sac"),
                       {"arch": "lstm", "rnn_size": 32, "hidden_sizes": [64, 64], "rnn_inputs": "obs_action_reward",
                        "batch_size": 32, "seq_len": 16, "burn_in": 4, "actor_lr": 1e-3, "critic_lr": 1e-3,
                        "learning_starts": 1000, "train_freq": 2},
                       ("recurrent agent for PendulumNoVel-v1 (LSTM 32, 32 sequences x 16 steps, burn-in 4, "
                        "an update every 2 steps)")),
}

ALGOS: dict[str, AlgoSpec] = {
    "sac": AlgoSpec("sac", SACConfig, _off_policy_modules(SAC, "gaussian"), "continuous",
                    "Soft Actor-Critic, automatic temperature (Haarnoja et al. 2018)",
                    presets={"Pendulum-*": {**_PENDULUM, "alpha_lr": 1e-3}, **_SAC_GOAL_PRESETS}),
    "td3": AlgoSpec("td3", TD3Config, _off_policy_modules(TD3, "deterministic"), "continuous",
                    "Twin Delayed DDPG (Fujimoto et al. 2018)", presets={"Pendulum-*": _PENDULUM, **_GOAL_PRESETS}),
    "ddpg": AlgoSpec("ddpg", DDPGConfig, _off_policy_modules(DDPG, "deterministic"), "continuous",
                     "Deep Deterministic Policy Gradient (Lillicrap et al. 2015)",
                     presets={"Pendulum-*": _PENDULUM, **_GOAL_PRESETS}),
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


# CartPole: rl-zoo's DQN settings (hyperparams/dqn.yml), the exploration fraction 0.16 of 50k steps
# as 8,000 steps; rl-zoo's target update every 10 env steps, with 128 gradient steps every 256 env
# steps, refreshes the target before each round: a hard copy every 128 updates here.
_DQN_CARTPOLE = {"lr": 2.3e-3, "batch_size": 64, "buffer_size": 100_000, "learning_starts": 1000,
                 "target_update_interval": 128, "train_freq": 256, "gradient_steps": 128,
                 "exploration_steps": 8000, "eps_end": 0.04, "hidden_sizes": [256, 256]}
# BitFlip (HER's toy task): reaching a relabelled goal is terminal as reaching the real one is,
# targets clipped to the sparse-reward range; tuned here: 10 bits solved within 2,000 steps.
_DQN_BITFLIP = {"her_terminal": True, "her_clip_target": True, "lr": 1e-3, "batch_size": 128, "gamma": 0.98,
                "buffer_size": 100_000, "learning_starts": 1000, "exploration_steps": 3000, "train_freq": 1,
                "target_update_interval": 0, "tau": 0.05, "hidden_sizes": [256]}
ALGOS["dqn"] = AlgoSpec("dqn", DQNConfig, _dqn_modules, "discrete",
                        "DQN with double-Q, dueling heads, n-step and HER (Mnih et al. 2015)",
                        presets={"CartPole-*": _DQN_CARTPOLE, "BitFlip*": _DQN_BITFLIP})


def _on_policy_modules(learner_modules):
    def build(env_id: str, cfg: PPOConfig, seed: int, device: torch.device, opts: RunOptions) -> list:
        env = _env_runner(opts, env_id, cfg, seed)
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
