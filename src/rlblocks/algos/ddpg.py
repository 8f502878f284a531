"""DDPG, and the deterministic actor-critic update that TD3 specialises.

Lillicrap et al. 2015, "Continuous control with deep reinforcement learning", arXiv 1509.02971,
Algorithm 1: critic regression to ``y = r + gamma Q'(s', mu'(s'))``, actor ascent on
``Q(s, mu(s))``, Polyak-averaged target networks, exploration with Ornstein-Uhlenbeck or
Gaussian noise. Defaults are the modern ones used by TD3's "OurDDPG" and Stable-Baselines3
(256×256, Adam 1e-3, tau 0.005, Gaussian noise 0.1) rather than the paper's 400×300 and
1e-4/1e-3 learning rates; ``--set noise_type=ou exploration_noise=0.2`` gives the paper's noise.

One update equals Stable-Baselines3's ``TD3.train`` step (``td3/td3.py``; SB3's DDPG is the
same code) for DDPG and TD3, Adam state and target networks included
(``tests/test_sb3_equivalence.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlblocks.algos.off_policy import OffPolicyAlgorithm, OffPolicyConfig, adam_step, make_adam
from rlblocks.config import param
from rlblocks.errors import ConfigError
from rlblocks.nets import polyak_update

_FIRST = slice(0, 1)  # the actor follows Q_1 only (TD3 Algorithm 1)


@dataclass
class DDPGConfig(OffPolicyConfig):

    GROUP = "algo"  # the keys' module (rlblocks.config.key_groups), unless a key says otherwise
    actor_lr: float = param(1e-3, low=0.0, high=1.0, low_open=True, help="actor Adam learning rate")
    critic_lr: float = param(1e-3, low=0.0, high=1.0, low_open=True, help="critic Adam learning rate")
    num_critics: int = param(1, low=1, high=64, help="Q ensemble size (min over members in targets)")
    noise_type: str = param("gaussian", group="explore", choices=("gaussian", "ou"), help="exploration noise process")
    exploration_noise: float = param(0.1, group="explore", low=0.0, help="exploration noise std (in [-1, 1] action units)")
    random_eps: float = param(0.0, group="explore", low=0.0, high=1.0, help="probability of a uniform random action per env step "
                              "(HER baselines' random_eps, mrl's eexplore)")
    action_l2: float = param(0.0, group="algo", low=0.0, help="actor loss penalty on mean(mu(s)^2), actions in [-1, 1] "
                             "(HER baselines' action_l2)")
    policy_delay: int = param(1, low=1, help="critic updates per actor/target update")
    target_noise: float = param(0.0, low=0.0, help="std of target policy smoothing noise (TD3)")
    target_noise_clip: float = param(0.5, low=0.0, help="clip of target policy smoothing noise (TD3)")

    def check(self) -> None:
        super().check()
        if self.noise_type == "ou" and self.exploration_noise == 0:
            raise ConfigError("noise_type=ou needs exploration_noise > 0")


class DDPG(OffPolicyAlgorithm):
    """Deterministic actor-critic update (the ``algo`` module).

    With ``num_critics = 1``, ``policy_delay = 1`` and ``target_noise = 0`` this is DDPG; TD3's
    three changes are the other settings of the same update (see :mod:`rlblocks.algos.td3`).
    """

    requires = (*OffPolicyAlgorithm.requires, "target")
    metric_names = ("critic_loss", "actor_loss", "q_mean")

    def setup(self) -> None:
        cfg, policy = self.cfg, self.agent.policy
        self.actor, self.actor_target, self.critic = policy.actor, policy.actor_target, self.agent.critic
        self.actor_opt = make_adam(policy.trainable_parameters(), cfg.actor_lr)
        self.critic_opt = make_adam(self.critic.trainable_parameters(), cfg.critic_lr)
        (q_online, q_target), (pi_online, pi_target) = self.critic.target_pairs(), policy.target_pairs()
        self._online, self._target = q_online + pi_online, q_target + pi_target
        self._last_actor_loss = torch.zeros((), device=self.agent.device)

    def target_value(self, obs, with_action=False):
        """``Q'_e(s, a') [E, B]`` at the target action ``a' = mu'(s)`` (+ TD3's smoothing noise)."""
        return self.target_q(obs, obs, with_action)

    def target_q(self, actor_in, critic_in, with_action=False):
        """:meth:`target_value` with the target actor and the target critics reading their own
        inputs (the same observations here; a recurrent agent's history features)."""
        cfg, action = self.cfg, self.actor_target(actor_in)
        if cfg.target_noise > 0:  # TD3 target policy smoothing (Fujimoto et al. 2018, Eq. 14)
            noise = (torch.randn_like(action) * cfg.target_noise).clamp(-cfg.target_noise_clip, cfg.target_noise_clip)
            action = (action + noise).clamp(-1.0, 1.0)
        value = self.critic.q_target(critic_in, action)
        return (value, action) if with_action else value

    def update(self, b):
        return self.losses(b, lambda: b.obs, lambda: b.obs)

    def losses(self, b, actor_in, critic_in):
        """One critic step and, every ``policy_delay`` calls, one actor and target step. ``b``: the
        critic's rows (``b.obs`` its input); ``actor_in()``, ``critic_in()``: the actor's and the
        critic's inputs for the policy loss, taken after the critic step (feed-forward: all three
        are the observations)."""
        cfg, q = self.cfg, self.critic.q

        # y = r + discount · min_e Q'_e(s', mu'(s') [+ noise]): clipped double Q (TD3 Eq. 10), the
        # identity for one critic (DDPG); the ``target`` module may expand it with a model (STEVE).
        with torch.no_grad():
            b_q, target = self.agent.target(b)

        critic_loss, q_values = self.critic.td_loss(b_q, target)  # sum_e mean (Q_e - y)^2, [E, B]
        adam_step(self.critic_opt, critic_loss, cfg.grad_value_clip)

        if (self.updates + 1) % cfg.policy_delay == 0:  # TD3 delayed policy updates (Sec. 5.2)
            # Deterministic policy gradient: maximise Q_1(s, mu(s)); critic weights detached.
            # HER's DDPG adds action_l2 · mean(mu(s)^2) (Plappert et al. 2018, baselines her/ddpg.py).
            action = self.actor(actor_in())
            actor_loss = -q(critic_in(), action, detach_params=True, members=_FIRST).mean()
            if cfg.action_l2 > 0:
                actor_loss = actor_loss + cfg.action_l2 * action.square().mean()
            adam_step(self.actor_opt, actor_loss, cfg.grad_value_clip)
            if self.target_update_due((self.updates + 1) // cfg.policy_delay):
                polyak_update(self._target, self._online, cfg.tau)
            self._last_actor_loss = actor_loss.detach()
        return critic_loss.detach(), self._last_actor_loss, q_values.detach().mean()

    def optimizers(self):
        return {"actor": self.actor_opt, "critic": self.critic_opt}

    def state_dict(self):
        # With policy_delay > 1 the steps between actor updates log the last actor loss: saved, so
        # the first progress.csv row after a resume is exact.
        return {**super().state_dict(), "last_actor_loss": self._last_actor_loss.clone()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        last = state.get("last_actor_loss")  # absent in older checkpoints: zero, as a fresh start
        self._last_actor_loss = (torch.zeros((), device=self.agent.device) if last is None
                                 else last.to(self.agent.device))
