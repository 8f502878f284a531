"""Auxiliary losses: one module kind that adds loss terms on a critic's features to the update of
any actor-critic, PPO as well as DDPG/TD3/SAC (DESIGN.md, "Seams": auxiliary losses).

An auxiliary loss is a module that declares :class:`AuxiliaryLoss`. The update finds every such
module with ``agent.modules_of(AuxiliaryLoss)`` (not by name, not by a flag of another module),
puts their :meth:`~AuxiliaryLoss.parameters` into the optimiser that steps the critic, and adds
:meth:`~AuxiliaryLoss.loss` of each minibatch to the critic's loss before the one backward pass:

- PPO (``algos/ppo.py``): ``features`` the critic trunk's last hidden layer ``[B, H]``,
  ``returns`` the GAE returns, ``values`` the values at collection time, ``index`` the rows of the
  rollout; :meth:`~AuxiliaryLoss.prepare` is called once per rollout, after GAE.
- DDPG/TD3/SAC (``Critic.td_loss`` in ``algos/off_policy.py``): ``features`` each Q member's last
  hidden layer ``[E, B, H]``, ``returns`` the TD target ``y``, ``values`` the detached ``Q(s, a)``
  ``[E, B]``, ``next_obs`` the replayed next observations, ``index`` ``None`` (replay samples are
  independent transitions; :meth:`~AuxiliaryLoss.prepare` is never called).

A variant is a module swap: MERL's heads (``algos/merl_heads.py``) are one implementation.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import nn

from rlblocks.module import Module, Weights

if TYPE_CHECKING:
    from rlblocks.buffers.rollout import RolloutBuffer


class AuxInputs(NamedTuple):
    """What an update hands to every auxiliary loss, once per minibatch.

    Shapes (``B`` samples, ``E`` critic members when the critic is an ensemble, ``H`` features,
    ``D`` observation dims): ``features [B, H]`` or ``[E, B, H]`` (with gradient: the loss trains
    the critic's trunk too); ``returns [B]`` the value target; ``values [B]`` or ``[E, B]`` the
    critic's prediction, without gradient; ``next_obs [B, D]`` or ``None``; ``index [B]`` (int64,
    rows of the rollout :meth:`AuxiliaryLoss.prepare` saw) or ``None``.
    """

    features: torch.Tensor
    returns: torch.Tensor
    values: torch.Tensor
    next_obs: torch.Tensor | None
    index: torch.Tensor | None


class AuxiliaryLoss(Module, Weights):
    """Base of auxiliary-loss modules (named ``aux`` unless given another name).

    Attributes:
        needs_next_obs: an on-policy rollout keeps each step's next observation for
            :meth:`prepare` (costs one more observation array).
    """

    name = "aux"
    needs_next_obs: bool = False

    @abc.abstractmethod
    def parameters(self) -> list[nn.Parameter]:
        """The trainable parameters; they join the optimiser that steps the critic."""

    def prepare(self, rollout: RolloutBuffer) -> None:
        """Called by on-policy updates once per rollout, after GAE and before the minibatches, with
        the whole rollout in time order: build targets that need trajectories. Default: nothing."""

    @abc.abstractmethod
    def loss(self, inputs: AuxInputs) -> torch.Tensor:
        """The weighted loss term (0-d tensor) of one minibatch, added to the critic's loss."""


def add_auxiliary_losses(loss: torch.Tensor, modules: Iterable[AuxiliaryLoss], inputs: AuxInputs) -> torch.Tensor:
    """``loss`` plus every module's :meth:`~AuxiliaryLoss.loss` of ``inputs`` (in module order)."""
    for module in modules:
        loss = loss + module.loss(inputs)
    return loss


def auxiliary_parameters(modules: Iterable[AuxiliaryLoss]) -> list[nn.Parameter]:
    """The parameters of ``modules``, in module order (the order the optimiser state is saved in)."""
    return [p for module in modules for p in module.parameters()]
