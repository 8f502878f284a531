"""The learner modules of PPO, feed-forward or recurrent (``arch``): variants are module swaps.

``arch=ff`` builds :mod:`rlblocks.algos.ppo`'s actor-critic, policy, rollout and update;
``arch=lstm|gru`` swaps in :mod:`rlblocks.algos.recurrent_ppo`'s (a cell for each of actor and
critic, a rollout that stores hidden states, sequence minibatches). Both ``ppo`` and ``ppo-merl``
are built here.
"""

from __future__ import annotations

import gymnasium as gym
import torch

from rlblocks.algos.ppo import PPO, ActorCritic, PPOConfig, PPOPolicy, Rollout
from rlblocks.algos.recurrent_ppo import RecurrentActorCritic, RecurrentPPO, RecurrentPPOPolicy, SequenceRollout
from rlblocks.buffers.rollout import RolloutBuffer
from rlblocks.buffers.sequence_rollout import SequenceRolloutBuffer
from rlblocks.components.normalizer import ObsNormalizer
from rlblocks.components.return_normalizer import ReturnNormalizer
from rlblocks.errors import RLBlocksError
from rlblocks.module import Module


def ppo_modules(env, cfg: PPOConfig, device: torch.device, total_steps: int, aux_factory=None) -> list[Module]:
    """The learner modules of PPO for ``env`` (an :class:`EnvRunner`): normalisers, policy,
    rollout, an optional auxiliary-loss module (``aux_factory(feature_dim, obs_dim, device)`` →
    :class:`~rlblocks.algos.auxiliary.AuxiliaryLoss`) and the update.

    Raises:
        RLBlocksError: observations that are not a flat vector, or actions neither Box nor Discrete.
    """
    obs_shape = tuple(env.obs_space.shape)
    if len(obs_shape) != 1:
        raise RLBlocksError(f"{env.env_id} has observations of shape {obs_shape}; PPO's MLP needs a flat vector")
    space = env.action_space
    if isinstance(space, gym.spaces.Discrete):
        act_dim, action_shape, discrete = int(space.n), (), True
    elif isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        act_dim, action_shape, discrete = int(space.shape[0]), (int(space.shape[0]),), False
    else:
        raise RLBlocksError(f"{env.env_id} has actions {space}; PPO supports Box (1-D) and Discrete")
    if cfg.arch == "ff":
        net = ActorCritic(obs_shape[0], act_dim, discrete, cfg.hidden_sizes, cfg.activation, cfg.shared_network)
        policy = PPOPolicy(net, device)
    else:
        net = RecurrentActorCritic(obs_shape[0], act_dim, discrete, cfg.arch, cfg.rnn_size, cfg.rnn_layers,
                                   cfg.hidden_sizes, cfg.activation)
        policy = RecurrentPPOPolicy(net, device)
    aux = aux_factory(net.feature_dim, obs_shape[0], device) if aux_factory is not None else None
    store_next_obs = aux is not None and aux.needs_next_obs
    if cfg.arch == "ff":
        rollout, algo = Rollout(RolloutBuffer(cfg.n_steps, cfg.num_envs, obs_shape, action_shape, device,
                                              store_next_obs=store_next_obs)), PPO(cfg, total_steps)
    else:
        buffer = SequenceRolloutBuffer(cfg.n_steps, cfg.num_envs, obs_shape, action_shape, cfg.sequence_length(),
                                       (2 * net.k, cfg.rnn_size), device, store_next_obs=store_next_obs)
        rollout, algo = SequenceRollout(buffer), RecurrentPPO(cfg, total_steps)
    modules: list[Module] = [ObsNormalizer(obs_shape, cfg.normalize_obs, cfg.obs_clip, cfg.obs_norm_eps).to(device),
                             ReturnNormalizer(cfg.num_envs, cfg.gamma, cfg.normalize_reward, cfg.reward_clip),
                             policy, rollout]
    if aux is not None:
        modules.append(aux)
    return modules + [algo]
