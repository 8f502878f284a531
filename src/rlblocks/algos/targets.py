"""The ``target`` seam: the module that turns rewards, discounts and bootstrap values into ``y``.

Every value-based algorithm here exposes ``target_value(obs) -> [E, B]``, the bootstrap value of
any batch of states under its own rules (SAC: the soft value ``min``-free per critic member under
the current policy with the target critics; DDPG/TD3: the target critics at the (smoothed)
target action; DQN: max or double-Q), and ``clip_target(y)``. A target module calls it on the
replayed next states (TD(0)/n-step, :class:`TDTarget`, the default) or on imagined states
(MVE, TD(lambda), STEVE: :mod:`rlblocks.algos.value_expansion`). Variants are module swaps.

Protocol: ``target(b) -> (critic_batch, y)``. ``critic_batch`` is the batch the critic regresses
on: ``b`` itself, or ``b`` extended with imagined rows (MVE's TD-k trick); ``y [B']`` matches its
rows. Called by the algorithm's update under ``torch.no_grad()``.
"""

from __future__ import annotations

import torch

from rlblocks.module import Module


class Target(Module):
    """Base of the ``target`` modules (see the module docstring for the protocol)."""

    name = "target"
    requires = ("algo",)

    def __call__(self, b) -> tuple[object, torch.Tensor]:
        raise NotImplementedError


class TDTarget(Target):
    """TD(0) / n-step target with clipped double Q (Fujimoto et al. 2018, arXiv 1802.09477, Eq. 10):

        y = r + discount · min_e V_e(s')        [B]

    with ``r`` the (n-step) discounted reward sum and ``discount = gamma^m (1 - terminated)`` from
    the replay's assemble stage; ``min_e`` over a one-member ensemble is the identity (DDPG).
    """

    def __call__(self, b):
        algo = self.agent.algo
        value = algo.target_value(b.next_obs)  # [E, B]
        value = value[0] if value.shape[0] == 1 else value.min(0).values  # one member (DDPG, DQN): no reduction op
        return b, algo.clip_target(b.reward + b.discount * value)
