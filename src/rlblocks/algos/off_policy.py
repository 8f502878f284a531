"""Pieces shared by the off-policy actor-critics (DDPG, TD3, SAC): config, schedule, modules.

The update rules themselves live in ``ddpg.py``/``td3.py``/``sac.py``; this file holds what
they share: when to update (``learning_starts``, ``train_freq``, ``gradient_steps``), the
actor and critic modules with their target networks, and cheap metric accumulation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlblocks.algos.auxiliary import AuxiliaryLoss, AuxInputs, add_auxiliary_losses, auxiliary_parameters
from rlblocks.algos.merl_heads import MERLKeys
from rlblocks.algos.replay_config import ReplayConfig
from rlblocks.algos.sequence_config import SequenceConfig
from rlblocks.components.normalized_actor import NormalizedActor
from rlblocks.config import param
from rlblocks.envs.goal import obs_batch_size, obs_to
from rlblocks.errors import ConfigError
from rlblocks.explore import make_noise
from rlblocks.finite import check_finite
from rlblocks.metrics import MetricSums
from rlblocks.module import MetricsSource, Module, UpdateCounter, Weights
from rlblocks.nets import DeterministicActor, QEnsemble, SquashedGaussianActor, target_copy


@dataclass
class OffPolicyConfig(SequenceConfig, MERLKeys):
    """Keys shared by DDPG, TD3 and SAC (defaults: Stable-Baselines3's); replay, target and recurrent keys in
    :class:`~rlblocks.algos.sequence_config.SequenceConfig` and its bases."""

    GROUP = "algo"  # the keys' module (rlblocks.config.key_groups), unless a key says otherwise

    actor_lr: float = param(3e-4, low=0.0, high=1.0, low_open=True, help="actor Adam learning rate")
    critic_lr: float = param(3e-4, low=0.0, high=1.0, low_open=True, help="critic Adam learning rate")
    num_critics: int = param(2, low=1, high=64, help="Q ensemble size (min over members in targets)")
    layer_norm: bool = param(False, group="net", help="LayerNorm in the critic's hidden layers")
    actor_layer_norm: bool = param(False, group="net", help="LayerNorm in the actor's hidden layers (mrl's layer_norm puts it in both)")
    # mrl clips each gradient element before its Adam steps (protoge_config: grad_value_clipping 5).
    grad_value_clip: float = param(0.0, low=0.0, help="clip every gradient element to [-c, c] before each "
                                   "actor/critic step (0: off; mrl's grad_value_clipping)")
    # merl adds a module (MERLHeads, an AuxiliaryLoss; see registry.py): the critic does not know it
    merl: bool = param(False, group="aux", help="MERL auxiliary heads (variance explained, future state) on the critic trunk")
    # HER's baselines DDPG moves its targets once per 40-batch cycle with Polyak 0.05, mrl's protoge
    # every 40 (best_slide_config: 10) optimisation steps; SB3/CleanRL after every step (1).
    target_update_every: int = param(1, low=1, help="Polyak steps of the target networks happen on every "
                                     "k-th policy step only (mrl's target_network_update_freq)")

    def check(self) -> None:
        super().check()
        if self.merl and self.arch != "ff":
            raise ConfigError(f"merl=true is feed-forward only; arch={self.arch} has no MERL heads")


def adam_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, clip_value: float = 0.0) -> None:
    """zero_grad → backward → (with ``clip_value > 0``: each gradient element clipped to
    ``[-clip_value, clip_value]``, as ``nn.utils.clip_grad_value_``) → step. Parameters the loss does
    not reach have no gradient and are skipped by both the clip and Adam."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_value > 0:
        torch.nn.utils.clip_grad_value_([p for g in optimizer.param_groups for p in g["params"]], clip_value)
    optimizer.step()


def make_adam(params, lr: float) -> torch.optim.Adam:
    """Adam with the fastest implementation for the parameters' device (fused on CPU and CUDA)."""
    return torch.optim.Adam(params, lr=lr, fused=True)


class Critic(Module, Weights):
    """The ``critic`` module: a :class:`QEnsemble` of ``num_critics`` members and its target copy.

    The agent's auxiliary-loss modules (:class:`~rlblocks.algos.auxiliary.AuxiliaryLoss`, e.g.
    MERL's heads with ``merl=true``) work on each member's last hidden layer: their parameters are
    part of :meth:`trainable_parameters` and :meth:`td_loss` adds their terms, with the TD target
    ``y`` as the returns, the detached ``Q(s, a)`` as the values and the replayed next observation.
    """

    name = "critic"

    def __init__(self, obs_dim: int, act_dim: int, cfg: OffPolicyConfig, device: torch.device):
        super().__init__()
        self.cfg = cfg
        self.q = QEnsemble(obs_dim, act_dim, cfg.hidden_sizes, cfg.num_critics, cfg.layer_norm).to(device)
        self.q_target = target_copy(self.q)
        self.aux_losses: list[AuxiliaryLoss] = []  # found in setup; none for a critic outside an agent

    def setup(self) -> None:
        self.aux_losses = self.agent.modules_of(AuxiliaryLoss)

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """What the critic optimiser steps: the Q ensemble, then the auxiliary losses' parameters."""
        return list(self.q.parameters()) + auxiliary_parameters(self.aux_losses)

    def target_pairs(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``(online, target)`` parameter lists that Polyak averaging pairs up."""
        return list(self.q.parameters()), list(self.q_target.parameters())

    def td_loss(self, b, target: torch.Tensor, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, Q(s, a) [E, B])`` with ``loss = scale · sum_e mean_B (Q_e - y)^2`` + auxiliary losses.

        Shapes: ``b`` a replay batch of ``B`` transitions, ``target`` the TD target ``y [B]``.
        """
        q_values, hidden = self.q(b.obs, b.action, return_hidden=True)
        loss = scale * (q_values - target).square().mean(1).sum()
        if self.aux_losses:
            aux_inputs = AuxInputs(hidden, target, q_values.detach(), b.next_obs, None)
            loss = add_auxiliary_losses(loss, self.aux_losses, aux_inputs)
        return loss, q_values

    def state_dict(self):
        return {"q": self.q.state_dict(), "q_target": self.q_target.state_dict()}

    def load_state_dict(self, state):
        self.q.load_state_dict(state["q"])
        self.q_target.load_state_dict(state["q_target"])
        if "aux" in state:
            # Written before MERL's heads became the ``aux`` module (they were ``critic.aux`` and
            # ``critic.metrics``): hand them to it. The agent loads modules in order and skips the
            # ``aux`` that such a checkpoint lacks, so this is what the heads keep.
            self.agent.modules["aux"].load_state_dict({"heads": state["aux"], "metrics": state.get("metrics")})


class Policy(NormalizedActor, Module, Weights):
    """Base of the ``policy`` modules (feed-forward actors, :class:`~rlblocks.module.Actor`): obs →
    normalised action in [-1, 1], with warm-up. The state is ``()`` and there are no extras.

    ``act(obs, state, explore=True, env_steps=t)`` (training) draws uniform random actions while
    ``t < learning_starts``, then calls :meth:`explore_action`; ``explore=False`` (evaluation)
    calls :meth:`eval_action`. Observations are normalised by the ``normalizer`` module's
    statistics (bound in ``setup``; it turns a goal env's dict into the network input).
    Shapes: ``obs [N, obs_dim]`` or a dict of ``[N, dim]`` (CPU) → ``[N, act_dim]`` (CPU).
    """

    name = "policy"
    requires = ("normalizer",)

    def __init__(self, actor: torch.nn.Module, act_dim: int, learning_starts: int, device: torch.device):
        super().__init__()
        self.actor = actor.to(device)
        self.act_dim, self.learning_starts, self.device = act_dim, learning_starts, device

    @torch.no_grad()
    def act(self, obs, state=(), explore: bool = True, deterministic: bool = False, env_steps: int = 0):
        if explore and env_steps < self.learning_starts:
            return self.random_action(obs_batch_size(obs)), state, {}
        x = self.normalizer(obs_to(obs, self.device))
        a = self.explore_action(x, env_steps) if explore else self.eval_action(x, deterministic)
        return a.cpu(), state, {}

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """What the actor optimiser steps."""
        return list(self.actor.parameters())

    def random_action(self, n: int) -> torch.Tensor:
        """``n`` uniform random actions of the warm-up (``[n, act_dim]`` in [-1, 1])."""
        return torch.rand(n, self.act_dim) * 2.0 - 1.0

    def explore_action(self, obs: torch.Tensor, env_steps: int) -> torch.Tensor:
        """A training action for the normalised ``obs`` at ``env_steps`` env steps of the run."""
        raise NotImplementedError

    def eval_action(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        raise NotImplementedError


class GaussianPolicy(Policy):
    """Squashed-Gaussian policy (SAC): samples while training, ``tanh(mean)`` when deterministic."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: OffPolicyConfig, device: torch.device):
        actor = SquashedGaussianActor(obs_dim, act_dim, cfg.hidden_sizes, cfg.actor_layer_norm)
        super().__init__(actor, act_dim, cfg.learning_starts, device)

    def explore_action(self, obs, env_steps):
        return self.actor.sample(obs)[0]

    def eval_action(self, obs, deterministic):
        return self.actor.mode(obs) if deterministic else self.actor.sample(obs)[0]

    def state_dict(self):
        return {"actor": self.actor.state_dict()}

    def load_state_dict(self, state):
        self.actor.load_state_dict(state["actor"])


class DeterministicPolicy(Policy):
    """``tanh(mu(s))`` plus exploration noise (Gaussian or Ornstein-Uhlenbeck), with a target copy.

    With ``random_eps > 0`` each env's action is, with that probability, a uniform random one
    instead (epsilon-random exploration of HER's DDPG: Plappert et al. 2018, "Multi-Goal
    Reinforcement Learning", arXiv 1802.09464, Sec. 2 and baselines ``her/ddpg.py``,
    ``random_eps 0.3``; mrl's ``eexplore``). Its draws come from torch's global RNG, after the
    noise's, and only when it is on (so runs without it are unchanged).
    """

    def __init__(self, obs_dim: int, act_dim: int, cfg, num_envs: int, device: torch.device):
        actor = DeterministicActor(obs_dim, act_dim, cfg.hidden_sizes, cfg.actor_layer_norm)
        super().__init__(actor, act_dim, cfg.learning_starts, device)
        self.actor_target = target_copy(self.actor)
        self.noise = make_noise(cfg.noise_type, num_envs, act_dim, cfg.exploration_noise)
        self.random_eps = cfg.random_eps

    def target_pairs(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``(online, target)`` parameter lists that Polyak averaging pairs up."""
        return list(self.actor.parameters()), list(self.actor_target.parameters())

    def explore_action(self, obs, env_steps):
        action = (self.actor(obs) + self.noise().to(obs.device)).clamp(-1.0, 1.0)
        if self.random_eps > 0:
            n = action.shape[0]
            pick = torch.rand(n, 1) < self.random_eps  # [N, 1]: the whole action of that env
            action = torch.where(pick.to(action.device), self.random_action(n).to(action.device), action)
        return action

    def eval_action(self, obs, deterministic):
        return self.actor(obs)

    def on_episode_end(self, episode) -> None:
        self.noise.reset(episode["env"])

    def state_dict(self):
        return {"actor": self.actor.state_dict(), "actor_target": self.actor_target.state_dict(),
                "noise": self.noise.state_dict()}

    def load_state_dict(self, state):
        self.actor.load_state_dict(state["actor"])
        self.actor_target.load_state_dict(state["actor_target"])
        self.noise.load_state_dict(state["noise"])


def update_due(agent, cfg: ReplayConfig) -> bool:
    """Whether the learners update after this vector step: past ``learning_starts`` env steps and on
    every ``train_freq``-th vector step (SB3's ``train_freq``)."""
    return agent.env_steps >= cfg.learning_starts and agent.vector_steps % cfg.train_freq == 0


class OffPolicyAlgorithm(Module, MetricsSource, UpdateCounter):
    """Base of the ``algo`` modules: decides when to update and accumulates metrics.

    After ``learning_starts`` env steps, every ``train_freq`` vector steps, runs
    ``gradient_steps`` calls of :meth:`update` on minibatches whose observations are already
    normalised. Subclasses set ``metric_names`` and return that many scalar tensors from
    ``update``; they are summed on device and read only when the logger asks, except for one
    finiteness check per update (:func:`~rlblocks.finite.check_finite`): a NaN or Inf loss stops
    the run with :class:`~rlblocks.errors.NonFiniteError` naming it.
    """

    name = "algo"
    requires = ("replay", "policy", "critic", "normalizer")
    metric_names: tuple[str, ...] = ()

    def __init__(self, cfg: OffPolicyConfig):
        super().__init__()
        self.cfg = cfg
        self.updates = 0
        self.metrics = MetricSums(self.metric_names)

    def optimize(self) -> None:
        cfg, agent = self.cfg, self.agent
        if not update_due(agent, cfg):
            return
        for _ in range(cfg.gradient_steps):
            self.metrics.add(self.update(self.normalized(agent.replay.sample(cfg.batch_size))))
            self.updates += 1
            # NaN/Inf persists in the sums: one check per update names the loss and stops before any save
            check_finite(self.metric_names, self.metrics.sums,
                         f"at update {self.updates} (env step {agent.env_steps})")

    def update_count(self) -> int:
        return self.updates

    def normalized(self, b):
        """The replay batch with its observations normalised (the last replay stage)."""
        norm = self.agent.normalizer
        return b._replace(obs=norm(b.obs), next_obs=norm(b.next_obs)) if norm.enabled else b

    def update(self, batch) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def target_update_due(self, policy_steps: int) -> bool:
        """Whether the ``policy_steps``-th policy step (1-based, counted from the update count, so a
        resumed run keeps the phase) also moves the target networks: every ``target_update_every``-th."""
        return policy_steps % self.cfg.target_update_every == 0

    def target_value(self, obs: torch.Tensor, with_action: bool = False):
        """Bootstrap value ``[E, B]`` of states ``obs [B, obs_dim]`` (normalised), one row per
        critic member; with ``with_action`` also the action ``[B, act_dim]`` it was taken at (the
        next action of an imagined rollout). Call under ``torch.no_grad()``. See :mod:`rlblocks.algos.targets`."""
        raise NotImplementedError

    def clip_target(self, target: torch.Tensor) -> torch.Tensor:
        """With ``her_clip_target``, ``y`` clipped to ``[-1/(1-gamma), 0]``, the range of returns of
        sparse -1/0 rewards (HER, Andrychowicz et al. 2017, Sec. 4 experiments; mrl); else ``y``."""
        if self.cfg.her_clip_target:
            target = target.clamp(-1.0 / (1.0 - self.cfg.gamma), 0.0)
        return target

    def pop_metrics(self) -> dict[str, float]:
        """Mean of each metric since the last call (NaN before the first update)."""
        return self.metrics.pop()

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}

    def state_dict(self):
        # the metric sums not yet logged, so the first progress.csv row after a resume is exact
        return {"updates": self.updates, "optimizers": {k: o.state_dict() for k, o in self.optimizers().items()},
                "metrics": self.metrics.state_dict()}

    def load_state_dict(self, state):
        self.updates = int(state["updates"])
        for key, opt in self.optimizers().items():
            opt.load_state_dict(state["optimizers"][key])
        self.metrics.load_state_dict(state.get("metrics"))
