"""Recurrent PPO (``ppo --set arch=lstm|gru``): PPO's update on sequences from stored states.

The update is PPO's (Schulman et al. 2017, "Proximal Policy Optimization Algorithms", arXiv
1707.06347, Eqs. 7 and 9; ``algos/ppo.py``), the same loss on the real steps of padded sequence
minibatches. The sequence conventions follow sb3-contrib's ``RecurrentPPO`` (and rl-zoo's
``ppo_lstm`` settings): actor and critic each have their own cell (``enable_critic_lstm``), the
MLP layers ``hidden_sizes`` come after the cell, sequences start from the hidden state stored
while collecting (R2D2's stored state, Kapturowski et al. 2019, ICLR, without burn-in), the state
is zeroed where an episode starts, and sequences are padded with a mask.

Where this differs from sb3-contrib, on purpose: sequences are fixed chunks of ``seq_len`` steps
(by default the longest that fill whole minibatches, :meth:`PPOConfig.sequence_length
<rlblocks.algos.ppo.PPOConfig.sequence_length>`, where sb3-contrib's minibatches are runs of
consecutive steps) split at episode starts (``buffers/sequence_rollout.py``), so a sequence never
holds an episode start after its first step and the cells run as one fused ``nn.LSTM``/``nn.GRU``
call per minibatch (sb3-contrib loops over time steps in Python whenever an episode starts inside
a sequence); the log-probabilities and values at collection time are recomputed by one fused pass
over the whole rollout after collection, as the feed-forward PPO does; time-limit truncations
bootstrap from ``V(final obs)`` with the critic state of that episode.

Modules (swapped in for the feed-forward ones by ``arch``): ``policy``
(:class:`RecurrentPPOPolicy`), ``rollout`` (:class:`SequenceRollout`) and ``algo``
(:class:`RecurrentPPO`).
"""

from __future__ import annotations

import torch
from torch import nn

from rlblocks.algos.ppo import PPO, PPOPolicy, Rollout
from rlblocks.buffers.sequence_rollout import RolloutSequenceBatch, SequenceRolloutBuffer
from rlblocks.nets.distributions import CategoricalHead, DiagGaussianHead, orthogonal_init
from rlblocks.nets.mlp import mlp
from rlblocks.nets.recurrent import RecurrentCell


def _mlp_trunk(in_dim: int, hidden_sizes: list[int], activation: str) -> nn.Sequential:
    """``Linear → activation`` per width, orthogonal with gain sqrt(2) (baselines ``mlp``)."""
    return mlp(in_dim, hidden_sizes, None, nn.Tanh if activation == "tanh" else nn.ReLU,
               init=lambda layer: orthogonal_init(layer, 2 ** 0.5))


class RecurrentActorCritic(nn.Module):
    """``obs → cell → MLP(hidden_sizes) → head`` for the actor and, with its own cell, the critic.

    The packed state of both is ``[2 K, N, rnn_size]``: rows ``[:K]`` the actor cell's,
    ``[K:]`` the critic cell's (``K = n_states × rnn_layers``, see :mod:`rlblocks.nets.recurrent`).

    Shapes: acting ``obs [N, obs_dim]``; sequences ``obs [T, B, obs_dim]``; actions
    ``[M, act_dim]`` (Box) or ``[M]`` (Discrete); values ``[M]``; critic features
    ``[M, feature_dim]`` with ``feature_dim = hidden_sizes[-1]`` (``rnn_size`` without MLP layers).
    """

    def __init__(self, obs_dim: int, act_dim: int, discrete: bool, kind: str, rnn_size: int, rnn_layers: int,
                 hidden_sizes: list[int], activation: str = "tanh"):
        super().__init__()
        self.pi_cell = RecurrentCell(kind, obs_dim, rnn_size, rnn_layers)
        self.v_cell = RecurrentCell(kind, obs_dim, rnn_size, rnn_layers)
        self.pi_mlp = _mlp_trunk(rnn_size, hidden_sizes, activation)
        self.v_mlp = _mlp_trunk(rnn_size, hidden_sizes, activation)
        self.feature_dim = hidden_sizes[-1] if hidden_sizes else rnn_size
        self.activation_name = activation
        self.k = self.pi_cell.state_rows
        head = CategoricalHead if discrete else DiagGaussianHead
        self.pi_head = head(self.feature_dim, act_dim)  # output init scale 0.01
        self.v_head = orthogonal_init(nn.Linear(self.feature_dim, 1), 1.0)

    def initial_state(self, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The zero state of ``n`` envs, ``[2 K, n, rnn_size]``."""
        return torch.cat([self.pi_cell.initial_state(n, device), self.v_cell.initial_state(n, device)])

    def step(self, obs: torch.Tensor, state: torch.Tensor, critic: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """One acting step: ``(actor features [N, feature_dim], next state [2K, N, H])``; the critic
        cell advances only with ``critic`` (training, where its state is stored)."""
        out, pi_state = self.pi_cell(obs.unsqueeze(0), state[: self.k])
        v_state = self.v_cell(obs.unsqueeze(0), state[self.k:])[1] if critic else state[self.k:]
        return self.pi_mlp(out[0]), torch.cat([pi_state, v_state])

    def cells(self, obs: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both cells over padded sequences, one fused call each: ``obs [T, B, obs_dim]``,
        ``state [2K, B, H]`` → outputs ``(actor [T * B, H], critic [T * B, H])``."""
        pi_out = self.pi_cell(obs, state[: self.k])[0]
        v_out = self.v_cell(obs, state[self.k:])[0]
        return pi_out.reshape(-1, pi_out.shape[-1]), v_out.reshape(-1, v_out.shape[-1])

    def value_at(self, v_out: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``V`` at flat ``positions [M]`` of the critic cell's outputs, ``[M]``."""
        return self.v_head(self.v_mlp(v_out.index_select(0, positions))).squeeze(-1)

    def evaluate_sequences(self, batch: RolloutSequenceBatch):
        """``(log_prob, entropy, value, critic features)`` at the batch's real steps (``[M]``,
        features ``[M, feature_dim]``); the MLPs and heads run on those steps only."""
        pi_out, v_out = self.cells(batch.obs, batch.state)
        pi = self.pi_mlp(pi_out.index_select(0, batch.valid))
        v = self.v_mlp(v_out.index_select(0, batch.valid))
        log_prob, entropy = self.pi_head.log_prob_entropy(pi, batch.action)
        return log_prob, entropy, self.v_head(v).squeeze(-1), v


class RecurrentPPOPolicy(PPOPolicy):
    """The ``policy`` module of recurrent PPO, an :class:`~rlblocks.module.Actor` with a state.

    ``act(obs, state)`` (training) advances both cells, samples ``a ~ pi(.|s, h)`` and returns as
    ``extras`` the normalised observation, the raw sample and ``"state"``, the state it acted from
    (``[2K, N, H]``, stored by the rollout at chunk starts). Evaluation advances only the actor cell.
    Acting runs in torch (no NumPy path).
    """

    def __init__(self, net: RecurrentActorCritic, device: torch.device):
        super().__init__(net, device, numpy_acting=False)

    def initial_state(self, n: int) -> torch.Tensor:
        return self.net.initial_state(n, self.device)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, state: torch.Tensor, explore: bool = True, deterministic: bool = False,
            env_steps: int = 0):
        x = self.normalizer(obs.to(self.device))
        pi, next_state = self.net.step(x, state, critic=explore)
        if explore:
            action = self.net.pi_head.sample_action(pi)
            extras = {"obs": x, "action": action, "state": state}
        else:
            action = self.net.pi_head.mode(pi) if deterministic else self.net.pi_head.sample_action(pi)
            extras = {}
        return self.env_action(action), next_state, extras


class SequenceRollout(Rollout):
    """The ``rollout`` module of recurrent PPO: :class:`~rlblocks.algos.ppo.Rollout` that also
    stores the actor's state at each chunk start (``extras["state"]``)."""

    def process_experience(self, exp) -> None:
        self.buffer.store_state(exp["extras"]["state"])
        super().process_experience(exp)


class RecurrentPPO(PPO):
    """The ``algo`` module of recurrent PPO: PPO's update (``PPO.update``) on sequence minibatches.

    ``score_rollout`` cuts the full rollout into sequences and runs both cells over all of them
    in one fused pass: ``log pi_old``, ``V`` at every step, ``V(final obs)`` where an episode was
    truncated and ``V(s_T)`` after the last step, the last two as one more step appended to the
    sequence that ends there (so they use that episode's critic state).
    """

    @torch.no_grad()
    def score_rollout(self, buf: SequenceRolloutBuffer) -> None:
        net = self.agent.policy.net
        buf.build_layout()
        lay = buf._layout
        end = lay["first"] + lay["length"] - 1  # column-major position of each piece's last step
        T, N = buf.n_steps, buf.num_envs
        end_t, env = end % T, end // T
        end_row = end_t * N + env
        truncated = buf.flat("truncated")[end_row]
        open_end = (end_t == T - 1) & ~buf.flat("terminated")[end_row] & ~truncated  # bootstrap V(s_T)
        boot = (truncated | open_end).nonzero().squeeze(1)  # pieces with a bootstrap step
        batch = buf.all_sequences(extra=1 if boot.numel() else 0)
        S = batch.obs.shape[1]
        boot_pos = lay["length"][boot] * S + boot
        next_obs = self.agent.normalizer(self.agent.env.obs.to(buf.device))
        boot_obs = torch.where(truncated[boot].unsqueeze(1), buf.flat("final_obs")[end_row[boot]], next_obs[env[boot]])
        obs = batch.obs.view(-1, batch.obs.shape[-1]).index_copy(0, boot_pos, boot_obs).view_as(batch.obs)
        pi_out, v_out = net.cells(obs, batch.state)
        log_prob, _ = net.pi_head.log_prob_entropy(net.pi_mlp(pi_out.index_select(0, batch.valid)), batch.action)
        buf.flat("log_prob").index_copy_(0, batch.index, log_prob)
        buf.flat("value").index_copy_(0, batch.index, net.value_at(v_out, batch.valid))
        boot_value = net.value_at(v_out, boot_pos)
        buf.final_value.zero_()
        tb = truncated[boot]
        buf.flat("final_value").index_copy_(0, end_row[boot][tb], boot_value[tb])
        last_value = torch.zeros(N, device=buf.device).index_copy_(0, env[boot][~tb], boot_value[~tb])
        buf.compute_returns(last_value, self.cfg.gamma, self.cfg.gae_lambda)

    def minibatches(self, buf: SequenceRolloutBuffer):
        return buf.sequence_minibatches(self.cfg.n_minibatches, normalize_advantage=self.cfg.normalize_advantage)

    @staticmethod
    def evaluate(net: RecurrentActorCritic, batch: RolloutSequenceBatch):
        return net.evaluate_sequences(batch)
