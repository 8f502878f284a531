"""Soft Actor-Critic with automatic entropy temperature.

Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications", arXiv 1812.05905
(Eqs. 5, 7, 17-18), on the original "Soft Actor-Critic: Off-Policy Maximum Entropy Deep RL
with a Stochastic Actor", arXiv 1801.01290. Twin Q with the minimum in targets (Fujimoto
et al. 2018). Defaults follow Stable-Baselines3's SAC.

With ``sequential_update`` (the default) one update equals SB3's ``SAC.train`` step
(``sac/sac.py``), checked parameter by parameter with Adam's state in
``tests/test_sb3_equivalence.py``: SB3 steps the temperature first, then the critic, then the
actor; here the critic first, then actor and temperature together. The orders agree because
both use the temperature from before its step (SB3 detaches ``exp(log_alpha)`` before stepping
it) and the temperature loss depends only on the actor, which the critic step does not change.
The one difference is deliberate: the exact tanh correction of the log-prob, where SB3 adds
1e-6 inside the log (:class:`~rlblocks.nets.actors.SquashedGaussianActor`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rlblocks.algos.off_policy import OffPolicyAlgorithm, OffPolicyConfig, adam_step, make_adam
from rlblocks.config import param
from rlblocks.nets import polyak_update


@dataclass
class SACConfig(OffPolicyConfig):

    GROUP = "algo"  # the keys' module (rlblocks.config.key_groups), unless a key says otherwise
    alpha_lr: float = param(3e-4, low=0.0, high=1.0, low_open=True, help="entropy temperature learning rate")
    init_alpha: float = param(1.0, low=0.0, low_open=True, help="initial entropy temperature")
    autotune_alpha: bool = param(True, help="learn the temperature (else keep init_alpha fixed)")
    target_entropy_per_dim: float = param(-1.0, help="target entropy = this × action dims (paper: -1)")
    # Default True: on HalfCheetah-v5 (2 seeds, 50k steps) the sequential order reached 3,157 vs
    # 860 for the simultaneous one (docs/benchmarks.md); the latter saves one backward per step.
    sequential_update: bool = param(True, help="actor/temperature step after the critic step, against the "
                                    "updated critic (SB3/CleanRL order); false: one joint step (softlearning)")


class SAC(OffPolicyAlgorithm):
    """SAC update (the ``algo`` module). One call = one gradient step on each loss."""

    requires = (*OffPolicyAlgorithm.requires, "target")
    metric_names = ("critic_loss", "actor_loss", "alpha", "entropy", "q_mean")

    def setup(self) -> None:
        cfg, agent = self.cfg, self.agent
        self.actor, self.critic = agent.policy.actor, agent.critic
        self.log_alpha = torch.full((), math.log(cfg.init_alpha), device=agent.device, requires_grad=cfg.autotune_alpha)
        groups = [{"params": self.critic.trainable_parameters(), "lr": cfg.critic_lr},
                  {"params": agent.policy.trainable_parameters(), "lr": cfg.actor_lr}]
        if cfg.autotune_alpha:
            groups.append({"params": [self.log_alpha], "lr": cfg.alpha_lr})
        # One fused Adam over three parameter groups: the losses touch disjoint parameters, and Adam
        # skips parameters without gradients, so stepping it after each backward equals separate
        # optimizers (sequential order) and one step after a joint backward equals three steps.
        self.optimizer = make_adam(groups, cfg.critic_lr)
        self.target_entropy = cfg.target_entropy_per_dim * agent.policy.act_dim
        self._q_params, self._q_target_params = self.critic.target_pairs()

    def target_value(self, obs, with_action=False):
        """Soft value ``Q'_e(s, a') - alpha log pi(a'|s) [E, B]``, ``a' ~ pi(.|s)`` (Eq. 3)."""
        return self.soft_value(obs, obs, with_action)

    def soft_value(self, actor_in, critic_in, with_action=False):
        """:meth:`target_value` with the actor and the target critics reading their own inputs
        (the same observations here; a recurrent agent's history features)."""
        action, log_prob = self.actor.sample(actor_in)
        value = self.critic.q_target(critic_in, action) - self.log_alpha.detach().exp() * log_prob
        return (value, action) if with_action else value

    def update(self, b):
        return self.losses(b, b.obs, lambda: b.obs)

    def losses(self, b, actor_in, critic_in):
        """One step on each loss. ``b``: the critic's rows (``b.obs`` its input); ``actor_in``: the
        actor's input at those rows; ``critic_in()``: the critic's input for the policy loss, taken
        after the critic step (feed-forward: all three are the observations)."""
        q, actor = self.critic.q, self.actor
        alpha = self.log_alpha.detach().exp()

        # Soft Bellman target (Eq. 3 with the min of twin target critics), by the ``target`` module:
        # y = r + gamma^n (1 - terminated) min_i (Q'_i(s', a') - alpha log pi(a'|s')), a' ~ pi(.|s')
        with torch.no_grad():
            b_q, target = self.agent.target(b)

        # Critic loss (Eq. 5): 1/2 (Q_i(s, a) - y)^2, summed over the ensemble (+ MERL's heads).
        critic_loss, q_values = self.critic.td_loss(b_q, target, scale=0.5)  # q_values [E, B]
        if self.cfg.sequential_update:  # step the critic first; the policy then sees the new critic
            adam_step(self.optimizer, critic_loss, self.cfg.grad_value_clip)  # only the critic has gradients

        # Policy loss (Eq. 7): E[alpha log pi(a|s) - min_i Q_i(s, a)], a = tanh(mu + sigma eps).
        # Critic weights are detached: the policy loss moves only the actor.
        action, log_prob = actor.sample(actor_in)
        q_pi = q(critic_in(), action, detach_params=True).min(0).values
        actor_loss = (alpha * log_prob - q_pi).mean()

        # Temperature loss (Eq. 18): -alpha (log pi(a|s) + target_entropy).
        alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()

        # With sequential_update=false all three losses are taken at the same parameters and stepped
        # together, as in the authors' softlearning code (one session.run of all train ops).
        loss = actor_loss + alpha_loss
        if not self.cfg.sequential_update:
            loss = loss + critic_loss
        adam_step(self.optimizer, loss, self.cfg.grad_value_clip)
        if self.target_update_due(self.updates + 1):
            polyak_update(self._q_target_params, self._q_params, self.cfg.tau)
        return critic_loss.detach(), actor_loss.detach(), alpha, -log_prob.detach().mean(), q_values.detach().mean()

    def optimizers(self):
        return {"adam": self.optimizer}

    def state_dict(self):
        return {**super().state_dict(), "log_alpha": self.log_alpha.detach().clone()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
