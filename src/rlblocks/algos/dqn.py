"""Deep Q-Network with double-Q, dueling heads, n-step returns and hindsight relabelling.

Mnih et al. 2015, "Human-level control through deep reinforcement learning", Nature 518
(arXiv 1312.5602 for the 2013 workshop version): Q-learning on replayed minibatches with a
target network, an epsilon-greedy behaviour policy annealed linearly, and the TD error clipped to
[-1, 1] (here the equivalent Huber loss). Double DQN (van Hasselt, Guez, Silver 2016, "Deep
Reinforcement Learning with Double Q-learning", arXiv 1509.06461, Eq. 4): the online network
picks the next action, the target network evaluates it. Dueling heads (Wang et al. 2016, arXiv
1511.06581) are a network option (:class:`~rlblocks.nets.qnet.QNetwork`). n-step returns and HER
come from the replay stages (:mod:`rlblocks.buffers.replay`, :mod:`rlblocks.buffers.her`), so DQN +
HER runs on bit flipping. Integer actions are stored as integers.

Defaults follow Stable-Baselines3's DQN (Adam 1e-4, batch 32, train every 4 steps, gradient
norm clipped to 10, epsilon 1 → 0.05), with the Nature paper's target update every 10,000
gradient updates (a hard copy) and mrl's epsilon decay over the first 10,000 env steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rlblocks.algos.off_policy import OffPolicyAlgorithm, Policy, make_adam
from rlblocks.algos.replay_config import ReplayConfig
from rlblocks.config import param
from rlblocks.errors import ConfigError
from rlblocks.module import Module, Weights
from rlblocks.nets import polyak_update, target_copy
from rlblocks.nets.qnet import QNetwork


@dataclass
class DQNConfig(ReplayConfig):

    GROUP = "algo"  # the keys' module (rlblocks.config.key_groups), unless a key says otherwise
    buffer_size: int = param(1_000_000, group="replay", low=1, help="replay buffer capacity (transitions)")
    batch_size: int = param(32, group="replay", low=1, help="minibatch size per gradient step")
    train_freq: int = param(4, low=1, help="vector-env steps between update rounds")
    lr: float = param(1e-4, low=0.0, high=1.0, low_open=True, help="Adam learning rate")
    double_q: bool = param(True, help="double Q-learning targets (van Hasselt et al. 2016); false: max over Q'")
    dueling: bool = param(False, group="net", help="dueling value/advantage heads (Wang et al. 2016)")
    target_update_interval: int = param(10_000, low=0, help="gradient updates between hard target copies; "
                                        "0: Polyak averaging with tau after every update")
    eps_start: float = param(1.0, group="explore", low=0.0, high=1.0, help="initial exploration epsilon")
    eps_end: float = param(0.05, group="explore", low=0.0, high=1.0, help="final exploration epsilon")
    exploration_steps: int = param(10_000, group="explore", low=0, help="env steps over which epsilon decays linearly")
    max_grad_norm: float = param(10.0, low=0.0, low_open=True, help="gradient norm clip")

    def check(self) -> None:
        super().check()
        if self.eps_end > self.eps_start:
            raise ConfigError(f"eps_end={self.eps_end} is larger than eps_start={self.eps_start}; epsilon decays")


class QCritic(Module, Weights):
    """The ``critic`` module of DQN: a :class:`QNetwork` and its target copy."""

    name = "critic"

    def __init__(self, obs_dim: int, n_actions: int, cfg: DQNConfig, device: torch.device):
        super().__init__()
        self.q = QNetwork(obs_dim, n_actions, cfg.hidden_sizes, cfg.dueling).to(device)
        self.q_target = target_copy(self.q)

    def state_dict(self):
        return {"q": self.q.state_dict(), "q_target": self.q_target.state_dict()}

    def load_state_dict(self, state):
        self.q.load_state_dict(state["q"])
        self.q_target.load_state_dict(state["q_target"])


class EpsilonGreedyPolicy(Policy):
    """Acts greedily on the critic's Q network (bound in ``setup``) with probability ``1 - epsilon``, else uniformly.

    ``epsilon`` falls linearly from ``eps_start`` to ``eps_end`` over the first
    ``exploration_steps`` env steps (Mnih et al. 2015); evaluation is greedy. The policy owns no
    network (its ``actor`` is the identity): the Q network belongs to the critic.
    Shapes: ``obs [N, obs_dim]`` (or a goal dict) → integer actions ``[N]``.
    """

    requires = ("normalizer", "critic")

    def __init__(self, n_actions: int, cfg: DQNConfig, device: torch.device):
        super().__init__(torch.nn.Identity(), n_actions, cfg.learning_starts, device)
        self.cfg = cfg

    def setup(self) -> None:
        super().setup()
        self.q = self.agent.critic.q  # the greedy action's network: the critic's, bound once

    def acting_state(self) -> dict:
        return {**super().acting_state(), "q": self.q.state_dict()}  # the greedy action's network

    def load_acting_state(self, state: dict) -> None:
        super().load_acting_state(state)
        self.q.load_state_dict(state["q"])

    def epsilon(self, env_steps: int) -> float:
        """Exploration probability after ``env_steps`` env steps."""
        cfg = self.cfg
        frac = min(1.0, env_steps / cfg.exploration_steps) if cfg.exploration_steps else 1.0
        return cfg.eps_start + frac * (cfg.eps_end - cfg.eps_start)

    def random_action(self, n: int) -> torch.Tensor:
        return torch.randint(self.act_dim, (n,))

    def explore_action(self, obs, env_steps):
        greedy = self.q(obs).argmax(-1)
        explore = torch.rand(greedy.shape[0], device=obs.device) < self.epsilon(env_steps)
        return torch.where(explore, torch.randint_like(greedy, self.act_dim), greedy)

    def eval_action(self, obs, deterministic):
        return self.q(obs).argmax(-1)


class DQN(OffPolicyAlgorithm):
    """DQN update (the ``algo`` module). One call = one gradient step; the target ``y`` comes from the
    ``target`` module (TD(0)/n-step over :meth:`target_value`), as for DDPG/TD3/SAC."""

    requires = (*OffPolicyAlgorithm.requires, "target")
    metric_names = ("critic_loss", "q_mean")

    def setup(self) -> None:
        self.critic = self.agent.critic
        self.optimizer = make_adam(self.critic.q.parameters(), self.cfg.lr)
        self._online, self._target = list(self.critic.q.parameters()), list(self.critic.q_target.parameters())

    def target_value(self, obs: torch.Tensor) -> torch.Tensor:
        """Bootstrap value ``[1, B]`` of states: double-Q ``Q'(s, argmax_a Q(s, a))`` or ``max_a Q'(s, a)``."""
        if self.cfg.double_q:  # van Hasselt et al. 2016, Eq. 4
            best = self.critic.q(obs).argmax(-1, keepdim=True)
            return self.critic.q_target(obs).gather(1, best).T
        return self.critic.q_target(obs).max(-1).values[None]  # Mnih et al. 2015, Algorithm 1

    def update(self, b):
        cfg = self.cfg
        # y = r + gamma^m (1 - terminated) V'(s_{t+m})   (n-step sum in the replay's assemble stage)
        with torch.no_grad():
            b, target = self.agent.target(b)

        # L = Huber(Q(s, a) - y): the Nature paper's error clipped to [-1, 1]
        q = self.critic.q(b.obs).gather(1, b.action[:, None]).squeeze(1)  # [B]
        loss = F.smooth_l1_loss(q, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self._online, cfg.max_grad_norm)
        self.optimizer.step()

        # theta' <- theta every target_update_interval updates, or theta' <- (1 - tau) theta' + tau theta
        if cfg.target_update_interval == 0:
            polyak_update(self._target, self._online, cfg.tau)
        elif (self.updates + 1) % cfg.target_update_interval == 0:
            with torch.no_grad():
                torch._foreach_copy_(self._target, self._online)
        return loss.detach(), q.detach().mean()

    def optimizers(self):
        return {"adam": self.optimizer}
