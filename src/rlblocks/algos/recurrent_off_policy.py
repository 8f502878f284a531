"""Recurrent DDPG (= RDPG), TD3 and SAC (``--set arch=lstm|gru``): the feed-forward updates on history features.

RDPG: Heess, Hunt, Lillicrap, Silver 2015, "Memory-based control with recurrent neural networks",
arXiv 1512.04455, Algorithm 1: actor ``mu(h_t)`` and critic ``Q(h_t, a_t)`` on recurrent summaries of
the history, trained by backpropagation through time on replayed sequences, with target networks.
The recipe of Ni, Eysenbach, Salakhutdinov 2022 ("Recurrent Model-Free RL Can Be a Strong Baseline
for Many POMDPs", arXiv 2110.05038, Sec. 4): a separate history encoder (cell) for the actor and the
critic, each with its own optimiser and target copy, inputs observation + previous action + previous
reward, losses averaged over the real steps of the sequences. Burn-in from the zero state follows
R2D2 (Kapturowski et al. 2019, ICLR, Sec. 3).

The update per sequence batch ``[T, B]`` (:mod:`rlblocks.buffers.sequence`): each encoder runs once
over the ``T + 1`` history positions (one fused ``nn.LSTM``/``nn.GRU`` call, after a no-gradient
burn-in); the features at the ``M`` real steps and at their bootstrap positions become ``[M]`` rows,
and the feed-forward update runs on them unchanged (:meth:`~rlblocks.algos.sac.SAC.losses`,
:meth:`~rlblocks.algos.ddpg.DDPG.losses`, the ``target`` module's TD(0) target, ``Critic.td_loss``):

    y_t = r_t + gamma (1 - terminated_t) V'(h_{t+1})          (a truncation bootstraps)

with ``V'`` the algorithm's bootstrap value on the target encoders' ``h_{t+1}`` (SAC: the online
actor's, as feed-forward SAC samples ``a' ~ pi``). The policy loss reads the critic's features
recomputed after the critic step, without gradient, so it moves only the actor and its encoder.
Target networks, encoders included: ``theta' <- tau theta + (1 - tau) theta'``.

Modules (swapped in for the feed-forward ones by ``arch``): ``replay`` (:class:`SequenceReplay`),
``policy`` (:class:`RecurrentGaussianPolicy` or :class:`RecurrentDeterministicPolicy`), ``critic``
(:class:`RecurrentCritic`) and ``algo`` (:class:`RecurrentSAC`, :class:`RecurrentDDPG`,
:class:`RecurrentTD3`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from rlblocks.algos.ddpg import DDPG
from rlblocks.algos.off_policy import Critic, DeterministicPolicy, GaussianPolicy, OffPolicyConfig
from rlblocks.algos.sac import SAC
from rlblocks.buffers.replay import Batch, ReplayBuffer
from rlblocks.buffers.sequence import ReplaySequenceBatch, SequenceSampler
from rlblocks.components.replay import Replay
from rlblocks.module import Actor
from rlblocks.nets import target_copy
from rlblocks.nets.history import HistoryEncoder


def _encoder(obs_dim: int, act_dim: int, cfg: OffPolicyConfig) -> HistoryEncoder:
    return HistoryEncoder(cfg.arch, obs_dim, act_dim, cfg.rnn_size, cfg.rnn_layers, cfg.rnn_inputs)


class SequenceReplay(Replay):
    """The ``replay`` module of the recurrent agents: the same storage (saved as ``replay.npz``),
    sampled as sequences with burn-in (:class:`~rlblocks.buffers.sequence.SequenceSampler`)."""

    def __init__(self, buffer: ReplayBuffer, seq_len: int, burn_in: int):
        super().__init__(buffer)
        self.sampler = SequenceSampler(buffer, seq_len, burn_in)

    def sample(self, batch_size: int) -> ReplaySequenceBatch:
        return self.sampler.sample(batch_size)


# ----------------------------------------------------------------------------- acting
class RecurrentPolicyMixin(Actor):
    """Makes a feed-forward ``policy`` module (its head on ``rnn_size`` features) a recurrent
    :class:`~rlblocks.module.Actor`: ``encoder`` turns ``(o_t, a_{t-1}, r_{t-1})`` into ``h_t``, the
    head acts on ``h_t``.

    The state of ``N`` envs is one tensor ``[K + 1, N, W]`` (``W = max(rnn_size, act_dim + 1)``):
    rows ``[:K]`` the cell's packed state (first ``rnn_size`` columns), row ``K`` the previous action
    (columns ``[:act_dim]``, written by ``act``) and the previous reward (column ``act_dim``,
    written by ``observe``); ``reset_state`` zeroes all of it where an episode starts. During the
    warm-up (``learning_starts``) the action is uniform but the cell still advances, so the state
    is the true one when the policy takes over.
    """

    encoder: HistoryEncoder

    def _init_state_layout(self) -> None:
        self.k, self.h = self.encoder.state_rows, self.encoder.rnn_size
        self.width = max(self.h, self.act_dim + 1)

    def initial_state(self, n: int) -> torch.Tensor:
        return torch.zeros(self.k + 1, n, self.width, device=self.device)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, state: torch.Tensor, explore: bool = True, deterministic: bool = False,
            env_steps: int = 0):
        k, h, a_dim = self.k, self.h, self.act_dim
        x = self.normalizer(obs.to(self.device))
        prev = state[k]
        features, cell = self.encoder.step(x, prev[:, :a_dim], prev[:, a_dim], state[:k, :, :h].contiguous())
        if explore and env_steps < self.learning_starts:
            action = self.random_action(x.shape[0]).to(self.device)
        elif explore:
            action = self.explore_action(features, env_steps)
        else:
            action = self.eval_action(features, deterministic)
        new = torch.zeros_like(state)
        new[:k, :, :h] = cell
        new[k, :, :a_dim] = action
        return action.cpu(), new, {}

    def observe(self, state: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
        state[self.k, :, self.act_dim] = reward.to(state.device)  # in place: act made this tensor
        return state

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.actor.parameters()) + list(self.encoder.parameters())

    def state_dict(self):
        return {**super().state_dict(), "encoder": self.encoder.state_dict()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.encoder.load_state_dict(state["encoder"])


class RecurrentGaussianPolicy(RecurrentPolicyMixin, GaussianPolicy):
    """SAC's squashed-Gaussian head on the history features of its own encoder."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: OffPolicyConfig, device: torch.device):
        super().__init__(cfg.rnn_size, act_dim, cfg, device)
        self.encoder = _encoder(obs_dim, act_dim, cfg).to(device)
        self._init_state_layout()


class RecurrentDeterministicPolicy(RecurrentPolicyMixin, DeterministicPolicy):
    """DDPG/TD3's ``tanh(mu(h))`` head on the history features of its own encoder, both with target copies."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: OffPolicyConfig, num_envs: int, device: torch.device):
        super().__init__(cfg.rnn_size, act_dim, cfg, num_envs, device)
        self.encoder = _encoder(obs_dim, act_dim, cfg).to(device)
        self.encoder_target = target_copy(self.encoder)
        self._init_state_layout()

    def target_pairs(self):
        (online, target) = super().target_pairs()
        return online + list(self.encoder.parameters()), target + list(self.encoder_target.parameters())

    def state_dict(self):
        return {**super().state_dict(), "encoder_target": self.encoder_target.state_dict()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.encoder_target.load_state_dict(state["encoder_target"])


class RecurrentCritic(Critic):
    """The Q ensemble on ``(h_t, a_t)``, ``h_t`` from the critic's own encoder (shared by the
    ensemble members), both with target copies."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: OffPolicyConfig, device: torch.device):
        super().__init__(cfg.rnn_size, act_dim, cfg, device)
        self.encoder = _encoder(obs_dim, act_dim, cfg).to(device)
        self.encoder_target = target_copy(self.encoder)

    def trainable_parameters(self):
        return super().trainable_parameters() + list(self.encoder.parameters())

    def target_pairs(self):
        online, target = super().target_pairs()
        return online + list(self.encoder.parameters()), target + list(self.encoder_target.parameters())

    def state_dict(self):
        return {**super().state_dict(), "encoder": self.encoder.state_dict(),
                "encoder_target": self.encoder_target.state_dict()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.encoder.load_state_dict(state["encoder"])
        self.encoder_target.load_state_dict(state["encoder_target"])


# ----------------------------------------------------------------------------- learning
class NextFeatures(NamedTuple):
    """The bootstrap inputs ``h_{t+1}`` of the real steps (``[M, rnn_size]`` each): the policy's
    (SAC: online actor; DDPG/TD3: target actor) and the target critic's. Passed through the
    ``target`` module as the batch's ``next_obs``, read by the algorithm's ``target_value``."""

    actor: torch.Tensor
    critic: torch.Tensor


def history(encoder: HistoryEncoder, seq: ReplaySequenceBatch, grad: bool = True) -> torch.Tensor:
    """``h`` at every position of ``seq``'s ``T + 1`` history inputs, ``[T + 1, B, H]``: burn-in
    without gradient from the zero state, then one call (with gradient if ``grad``)."""
    with torch.no_grad():
        state = encoder.burn_in(seq.burn_obs, seq.burn_prev_action, seq.burn_prev_reward, seq.burn_len)
    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        return encoder(seq.obs, seq.prev_action, seq.prev_reward, state)[0]


def critic_rows(seq: ReplaySequenceBatch, h: torch.Tensor, next_in: NextFeatures) -> Batch:
    """The real steps as a feed-forward batch of ``M`` rows: ``obs`` the critic's ``h_t``."""
    return Batch(seq.rows(h), seq.rows(seq.action), seq.rows(seq.reward), next_in, seq.rows(seq.discount))


class SequenceLearner:
    """What the recurrent ``algo`` modules add to the feed-forward ones: sequence normalisation
    (observations of the history and burn-in inputs) and the encoders."""

    def normalized(self, seq: ReplaySequenceBatch) -> ReplaySequenceBatch:
        norm = self.agent.normalizer
        return seq._replace(obs=norm(seq.obs), burn_obs=norm(seq.burn_obs)) if norm.enabled else seq


class RecurrentSAC(SequenceLearner, SAC):
    """SAC (:class:`~rlblocks.algos.sac.SAC`) on history features; one call = one step per loss."""

    def target_value(self, next_in: NextFeatures, with_action=False):
        return self.soft_value(next_in.actor, next_in.critic, with_action)

    def update(self, seq: ReplaySequenceBatch):
        policy, critic = self.agent.policy, self.critic
        h_pi = history(policy.encoder, seq)  # with gradient: the policy loss trains the actor's encoder
        with torch.no_grad():
            next_in = NextFeatures(seq.next_rows(h_pi), seq.next_rows(history(critic.encoder_target, seq)))
        b = critic_rows(seq, history(critic.encoder, seq), next_in)
        return self.losses(b, seq.rows(h_pi), lambda: seq.rows(history(critic.encoder, seq, grad=False)))


class RecurrentDDPG(SequenceLearner, DDPG):
    """DDPG (= RDPG) and TD3 (:class:`~rlblocks.algos.ddpg.DDPG`) on history features."""

    def target_value(self, next_in: NextFeatures, with_action=False):
        return self.target_q(next_in.actor, next_in.critic, with_action)

    def update(self, seq: ReplaySequenceBatch):
        policy, critic = self.agent.policy, self.critic
        with torch.no_grad():
            next_in = NextFeatures(seq.next_rows(history(policy.encoder_target, seq)),
                                   seq.next_rows(history(critic.encoder_target, seq)))
        b = critic_rows(seq, history(critic.encoder, seq), next_in)
        return self.losses(b, lambda: seq.rows(history(policy.encoder, seq)),
                           lambda: seq.rows(history(critic.encoder, seq, grad=False)))


class RecurrentTD3(RecurrentDDPG):
    """TD3 = :class:`RecurrentDDPG` with TD3's configuration (twin critics, delay, target smoothing)."""
