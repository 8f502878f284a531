"""Proximal Policy Optimization with the clipped surrogate objective, as in OpenAI baselines ppo2.

Schulman et al. 2017, "Proximal Policy Optimization Algorithms", arXiv 1707.06347 (Eqs. 6-9),
with the implementation details of baselines ``ppo2`` (Dhariwal et al. 2017): GAE(lambda)
advantages normalised per minibatch, a value loss clipped like the probability ratio, one Adam
step on the summed loss with global gradient-norm clipping, a learning rate annealed linearly to
0 over the run, orthogonal initialisation, a state-independent log-std, and observation/return
normalisation (VecNormalize). Differences from baselines, on purpose: time-limit truncations
bootstrap from ``V(final obs)`` (baselines treats them as terminations), and the normaliser
statistics are saved in checkpoints and frozen in evaluation.

Where Stable-Baselines3's PPO (``ppo/ppo.py``) differs from baselines, this follows baselines:
advantages standardised with the population std (SB3: Bessel-corrected), ``L^VF`` with the
factor ½ (SB3 has none: SB3's ``vf_coef`` is this one halved), the value clip as the larger of
the clipped and unclipped errors (SB3's ``clip_range_vf`` uses the clipped error alone; SB3
clips no value by default), and annealing from the full learning rate at the first update
(SB3's schedules read the progress after the rollout). Otherwise one update equals SB3's
``train()``, Adam state included (``tests/test_sb3_equivalence.py``).

Modules: ``policy`` (:class:`PPOPolicy`, actor + critic; ``act`` caches the normalised
observation and its sampled action), ``rollout`` (:class:`Rollout`, fills a :class:`RolloutBuffer`)
and ``algo`` (:class:`PPO`: scores the full rollout in one pass, then the update). Auxiliary-loss
modules (:class:`~rlblocks.algos.auxiliary.AuxiliaryLoss`, e.g. MERL's heads for ``ppo-merl``) add
loss terms computed from the critic's trunk features.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rlblocks.algos.auxiliary import AuxiliaryLoss, AuxInputs, add_auxiliary_losses, auxiliary_parameters
from rlblocks.algos.ppo_loss import clipped_ppo_loss
from rlblocks.buffers.rollout import RolloutBuffer
from rlblocks.components.normalized_actor import NormalizedActor
from rlblocks.config import BaseConfig, param
from rlblocks.errors import ConfigError
from rlblocks.finite import check_finite
from rlblocks.metrics import MetricSums, explained_variance
from rlblocks.module import ArrayCheckpoint, MetricsSource, Module, UpdateCounter, Weights
from rlblocks.nets.activations import relu_layer, tanh_layer
from rlblocks.nets.distributions import CategoricalHead, DiagGaussianHead, orthogonal_init
from rlblocks.nets.ensemble import EnsembleLinear
from rlblocks.nets.flat import FlatParameters
from rlblocks.nets.numpy_actor import NumpyGaussianActor
from rlblocks.nets.recurrent import ARCHS


@dataclass
class PPOConfig(BaseConfig):
    """PPO keys; defaults are baselines ppo2's MuJoCo set (``ppo2/defaults.py: mujoco()``)."""

    GROUP = "algo"  # the keys' module (rlblocks.config.key_groups), unless a key says otherwise

    hidden_sizes: list = param([64, 64], group="net", help="MLP hidden layer widths (actor and critic; after the cell if recurrent)")
    arch: str = param("ff", group="encoder", choices=ARCHS, help="feed-forward, or an LSTM/GRU cell for each of actor and critic")
    rnn_size: int = param(64, group="encoder", low=1, help="hidden units of each recurrent cell (arch=lstm|gru)")
    rnn_layers: int = param(1, group="encoder", low=1, high=8, help="stacked layers of each recurrent cell (arch=lstm|gru)")
    # 0 picks the longest sequences that fill whole minibatches, for any n_steps/num_envs/n_minibatches
    # (see sequence_length): a fixed default would not divide every env's rollout.
    seq_len: int = param(0, group="encoder", low=0, help="steps per training sequence (arch=lstm|gru); 0: the longest that splits a "
                         "rollout into whole minibatches, gcd(n_steps, n_steps × num_envs / n_minibatches)")
    activation: str = param("tanh", group="net", choices=("tanh", "relu"), help="hidden-layer activation")
    shared_network: bool = param(False, group="net", help="one trunk for actor and critic (baselines default: separate copy)")
    normalize_obs: bool = param(True, group="normalizer", help="running mean/std observation normalisation")
    normalize_reward: bool = param(True, group="normalizer", help="scale rewards by the std of a running discounted return")
    reward_clip: float = param(10.0, group="normalizer", low=0.0, low_open=True, help="clip scaled rewards to ±reward_clip")
    n_steps: int = param(2048, low=1, help="vector steps per rollout (rollout = n_steps × num_envs)")
    n_minibatches: int = param(32, low=1, help="minibatches per epoch (must divide n_steps × num_envs)")
    n_epochs: int = param(10, low=1, help="passes over each rollout")
    gae_lambda: float = param(0.95, low=0.0, high=1.0, help="GAE lambda")
    lr: float = param(3e-4, low=0.0, high=1.0, low_open=True, help="Adam learning rate")
    anneal_lr: bool = param(True, help="anneal the learning rate linearly to 0 over the run")
    adam_eps: float = param(1e-5, low=0.0, low_open=True, help="Adam epsilon")
    clip_range: float = param(0.2, low=0.0, low_open=True, help="ratio clip epsilon (Eq. 7)")
    anneal_clip_range: bool = param(False, help="anneal clip_range linearly to 0 as the learning rate")
    clip_value_loss: bool = param(True, help="clip the value change like the ratio (baselines ppo2)")
    ent_coef: float = param(0.0, low=0.0, help="entropy bonus coefficient (c2 in Eq. 9)")
    vf_coef: float = param(0.5, low=0.0, help="value loss coefficient (c1 in Eq. 9)")
    max_grad_norm: float = param(0.5, low=0.0, low_open=True, help="global gradient-norm clip")
    normalize_advantage: bool = param(True, help="normalise advantages per minibatch")
    # One progress.csv row per rollout-and-update (as SB3 logs PPO): a row every 1,000 steps would
    # hold no loss between two updates (2,048 × num_envs steps apart).
    log_every: int = param(0, group="logger", low=0, help="env steps between progress.csv rows (0: one row per update round)")

    def check(self) -> None:
        batch = self.n_steps * self.num_envs
        if batch % self.n_minibatches or self.n_minibatches > batch:
            raise ConfigError(
                f"n_steps × num_envs = {self.n_steps} × {self.num_envs} = {batch} is not divisible by "
                f"n_minibatches={self.n_minibatches}; pick n_minibatches dividing {batch} or change n_steps/num_envs")
        if self.arch == "ff":
            return
        if self.shared_network:
            raise ConfigError(f"shared_network=true is feed-forward only; arch={self.arch} gives actor and critic "
                              "their own cell")
        if not self.seq_len:
            return  # sequence_length() divides by construction
        auto = self.sequence_length(auto=True)
        if self.n_steps % self.seq_len:
            raise ConfigError(f"seq_len={self.seq_len} does not divide n_steps={self.n_steps}; set seq_len to a "
                              f"divisor of {self.n_steps}, e.g. seq_len={auto}, or seq_len=0 to have it chosen")
        chunks = self.num_envs * self.n_steps // self.seq_len
        if chunks % self.n_minibatches:
            fits = max(d for d in range(1, min(chunks, self.n_minibatches) + 1) if chunks % d == 0)
            raise ConfigError(f"n_minibatches={self.n_minibatches} does not divide the {chunks} sequences of a rollout "
                              f"(num_envs × n_steps / seq_len = {self.num_envs} × {self.n_steps} / {self.seq_len}); "
                              f"set n_minibatches={fits} (a divisor of {chunks}) or seq_len={auto} "
                              f"(or seq_len=0 to have it chosen)")

    def sequence_length(self, auto: bool = False) -> int:
        """The steps per training sequence of a recurrent ``arch``: ``seq_len``, or when it is 0 (or
        ``auto``) the longest length ``L`` that cuts every rollout column into whole chunks that fill
        whole minibatches: ``L = gcd(n_steps, n_steps × num_envs / n_minibatches)`` (``L`` divides
        ``n_steps``, and ``n_minibatches`` divides the ``num_envs × n_steps / L`` chunks exactly when
        ``L`` divides the minibatch size). That is a whole rollout column when one fits in a
        minibatch, else at most a minibatch's worth of steps (exactly one sequence per minibatch when
        the minibatch size divides ``n_steps``, as sb3-contrib's ``RecurrentPPO`` minibatches of
        consecutive steps). E.g. the defaults ``n_steps=2048``, ``num_envs=1``, ``n_minibatches=32``
        give ``L = 64``; CartPoleNoVel's preset (32 steps × 8 envs, one minibatch) gives ``L = 32``.
        Valid only once :meth:`check` passed (``n_minibatches`` divides ``n_steps × num_envs``).
        """
        if self.seq_len and not auto:
            return self.seq_len
        return math.gcd(self.n_steps, self.n_steps * self.num_envs // self.n_minibatches)


def _trunk_layer(n_trunks: int, in_dim: int, out_dim: int) -> EnsembleLinear:
    """One hidden layer of ``n_trunks`` trunks, each orthogonal with gain sqrt(2) (baselines ``mlp``)."""
    layer = EnsembleLinear(n_trunks, in_dim, out_dim)
    with torch.no_grad():
        for e in range(n_trunks):
            layer.weight[e].copy_(nn.init.orthogonal_(torch.empty(out_dim, in_dim), 2 ** 0.5).T)
        layer.bias.zero_()
    return layer


class ActorCritic(nn.Module):
    """Policy head on an actor trunk, value head on a critic trunk (the same trunk if ``shared``).

    The two trunks (MLPs of ``hidden_sizes``) are evaluated as one 2-member ensemble, one batched
    matmul per layer: at PPO's sizes the cost is per-op overhead, so this halves the trunk's cost
    in acting and in the update.

    Shapes: ``obs [B, obs_dim]``; actions ``[B, act_dim]`` (Box) or ``[B]`` (Discrete);
    values ``[B]``; critic features ``[B, hidden_sizes[-1]]``.
    """

    def __init__(self, obs_dim: int, act_dim: int, discrete: bool, hidden_sizes: list[int],
                 activation: str = "tanh", shared: bool = False):
        super().__init__()
        self.feature_dim = hidden_sizes[-1]
        self.n_trunks = 1 if shared else 2
        dims = [obs_dim, *hidden_sizes]
        self.trunk = nn.ModuleList(_trunk_layer(self.n_trunks, a, b) for a, b in itertools.pairwise(dims))
        self.activation_name = activation
        self.hidden_layer = tanh_layer if activation == "tanh" else relu_layer
        head = CategoricalHead if discrete else DiagGaussianHead
        self.pi_head = head(self.feature_dim, act_dim)  # output init scale 0.01
        self.v_head = orthogonal_init(nn.Linear(self.feature_dim, 1), 1.0)

    def features(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(actor features, critic features)``, each ``[B, feature_dim]``."""
        x = obs.expand(self.n_trunks, *obs.shape)
        for layer in self.trunk:  # the op itself: a module call costs as much as the matmul here
            x = self.hidden_layer(x, layer.weight, layer.bias)
        return x[0], x[-1]

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.v_head(self.features(obs)[1]).squeeze(-1)

    def evaluate(self, obs: torch.Tensor, action: torch.Tensor):
        """``(log_prob, entropy, value, critic features)`` of ``action`` under the current policy."""
        pi, v = self.features(obs)
        log_prob, entropy = self.pi_head.log_prob_entropy(pi, action)
        return log_prob, entropy, self.v_head(v).squeeze(-1), v


class PPOPolicy(NormalizedActor, Module, Weights):
    """The ``policy`` module, a feed-forward :class:`~rlblocks.module.Actor`: normalises
    observations and samples actions.

    ``act(obs, state)`` (training) samples ``a ~ pi(.|s)`` and returns, as ``extras``, the
    normalised observation ``"obs"`` and the raw sample ``"action"`` for the ``rollout`` module
    (log-probs and values are computed by the update, in one batched pass over the rollout).
    Gaussian samples are clipped to [-1, 1] only in the returned action (sent to the env); the raw
    sample is what the update scores. ``act(obs, state, explore=False)`` (evaluation) returns the
    mode if ``deterministic``, else a sample, and no extras. The state is ``()``.
    Shapes: ``obs [N, obs_dim]`` (CPU) → ``[N, act_dim]`` or ``[N]``.

    On CPU, training-time acting of a Gaussian policy runs in NumPy
    (:class:`~rlblocks.nets.numpy_actor.NumpyGaussianActor`: same maths and same torch RNG draw,
    at under half the per-call cost); ``numpy_acting=False`` keeps it in torch. Acting reads the
    normaliser's statistics through ``self.normalizer`` (set in ``setup``), not through the agent.
    """

    name = "policy"
    requires = ("normalizer",)

    def __init__(self, net: nn.Module, device: torch.device, numpy_acting: bool = True):
        super().__init__()
        self.net, self.device = net.to(device), device
        self.discrete = net.pi_head.discrete
        self.numpy_acting = numpy_acting and device.type == "cpu" and not self.discrete
        self._numpy_actor: NumpyGaussianActor | None = None

    @torch.no_grad()
    def act(self, obs: torch.Tensor, state=(), explore: bool = True, deterministic: bool = False, env_steps: int = 0):
        if explore and self.numpy_acting:
            return self._act_numpy(obs, state)
        x = self.normalizer(obs.to(self.device))
        pi = self.net.features(x)[0]
        if explore:
            action = self.net.pi_head.sample_action(pi)
            extras = {"obs": x, "action": action}
        else:
            action = self.net.pi_head.mode(pi) if deterministic else self.net.pi_head.sample_action(pi)
            extras = {}
        return self.env_action(action), state, extras

    def env_action(self, action: torch.Tensor) -> torch.Tensor:
        """The action sent to the env: on CPU, clipped to [-1, 1] if Gaussian."""
        return (action if self.discrete else action.clamp(-1.0, 1.0)).cpu()

    def _act_numpy(self, obs: torch.Tensor, state):
        actor = self._numpy_actor
        if actor is None or actor.stale():  # built lazily: FlatParameters re-points the parameters in setup
            normalizer = self.normalizer
            actor = self._numpy_actor = NumpyGaussianActor(
                self.net, self.net.activation_name, normalizer.rms if normalizer.enabled else None)
        x, action = actor(obs.numpy())
        extras = {"obs": torch.from_numpy(x), "action": torch.from_numpy(action)}
        clipped = np.maximum(action, -1.0)  # np.clip costs 3x two ufuncs at this size
        return torch.from_numpy(np.minimum(clipped, 1.0, out=clipped)), state, extras

    @torch.no_grad()
    def value(self, normalized_obs: torch.Tensor) -> torch.Tensor:
        return self.net.value(normalized_obs)

    def state_dict(self):
        return {"net": self.net.state_dict()}

    def load_state_dict(self, state):
        self.net.load_state_dict(state["net"])


class Rollout(Module, ArrayCheckpoint):
    """The ``rollout`` module: stores each vector step in a :class:`RolloutBuffer`.

    The normalised observation and the raw action come from the actor's ``extras``. Rewards pass
    through the ``return_normalizer`` module (the identity when ``normalize_reward=false``). Where an episode is truncated, its final
    observation is kept (normalised now) for the GAE bootstrap ``V(final obs)``.
    Saved as ``rollout.npz`` (a run resumed mid-rollout continues it exactly).
    """

    name = "rollout"
    requires = ("policy", "normalizer", "return_normalizer")

    def __init__(self, buffer: RolloutBuffer):
        super().__init__()
        self.buffer = buffer

    def process_experience(self, exp) -> None:
        agent, buf = self.agent, self.buffer
        extras = exp["extras"]
        obs, action = extras["obs"], extras["action"]
        reward = agent.return_normalizer.scale(exp["reward"])
        truncated = exp["truncated"]
        any_truncated = bool(truncated.numpy().any())  # exp holds CPU tensors; NumPy's any is half torch's cost
        next_obs = None
        if buf.next_obs is not None or any_truncated:
            # Normalised with the statistics of this step, as the observations the policy saw.
            next_obs = agent.normalizer(exp["next_obs"].to(buf.device))
        buf.add(obs, action, reward, exp["terminated"], truncated,  # add() copies across devices
                final_obs=next_obs if any_truncated else None, next_obs=next_obs)

    def save(self, path) -> None:
        self.buffer.save(path)

    def load(self, path) -> None:
        self.buffer.load(path)


class PPO(Module, MetricsSource, UpdateCounter):
    """The ``algo`` module: when the rollout is full, ``n_epochs`` passes of clipped-surrogate updates.

    Args:
        cfg: the resolved :class:`PPOConfig`.
        total_steps: env steps of the whole run, the horizon of the learning-rate annealing.

    Auxiliary-loss modules (:class:`~rlblocks.algos.auxiliary.AuxiliaryLoss`) join the optimiser;
    each gets ``prepare(rollout)`` once per rollout and adds ``loss(...)`` to every minibatch's loss.

    A NaN or Inf policy, value or entropy loss stops the run after the round, before any checkpoint,
    with :class:`~rlblocks.errors.NonFiniteError` naming it (:func:`~rlblocks.finite.check_finite`).

    Metrics (means since the logger's last row): the losses of Eq. 9, entropy, approximate KL
    ``½ E[(log pi_old - log pi)^2]``, the fraction of clipped ratios, explained variance of the
    rollout's values and the learning rate.
    """

    name = "algo"
    requires = ("policy", "rollout", "normalizer", "env")
    metric_names = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "explained_variance", "lr")

    def __init__(self, cfg: PPOConfig, total_steps: int):
        super().__init__()
        self.cfg, self.total_steps = cfg, total_steps
        self.updates = 0  # gradient steps
        self.rollouts = 0
        self.metrics = MetricSums(self.metric_names)

    def update_count(self) -> int:
        return self.updates

    def setup(self) -> None:
        self.aux_losses = self.agent.modules_of(AuxiliaryLoss)  # e.g. MERL's heads
        params = list(self.agent.policy.net.parameters()) + auxiliary_parameters(self.aux_losses)
        # One flat tensor: zeroing, the global-norm clip and Adam are one op each (nets/flat.py).
        self.flat = FlatParameters(params)
        fused = self.agent.device.type in ("cpu", "cuda")
        self.optimizer = torch.optim.Adam([self.flat.param], lr=self.cfg.lr, eps=self.cfg.adam_eps, fused=fused)

    def optimize(self) -> None:
        buf = self.agent.rollout.buffer
        if not buf.full:
            return
        # Linear annealing as baselines: 1 at the first update, 1/n_updates at the last.
        steps_before = self.agent.env_steps - buf.size
        frac = max(0.0, 1.0 - steps_before / self.total_steps) if self.total_steps > 0 else 1.0
        self.score_rollout(buf)
        for aux in self.aux_losses:
            aux.prepare(buf)
        self.update(buf, frac)
        buf.reset()

    @torch.no_grad()
    def score_rollout(self, buf: RolloutBuffer) -> None:
        """Fill ``log pi_old(a|s)``, ``V(s)`` and the truncation bootstraps of the whole rollout in
        one batched pass, then GAE. The policy is unchanged since collection, so these are the
        values at collection time; computing them here halves the per-step cost of acting."""
        net = self.agent.policy.net
        log_prob, _, value, _ = net.evaluate(buf.flat("obs"), buf.flat("action"))
        buf.flat("log_prob").copy_(log_prob)
        buf.flat("value").copy_(value)
        buf.final_value.zero_()
        if buf.truncated.any():
            buf.final_value[buf.truncated] = net.value(buf.final_obs[buf.truncated])
        last_value = net.value(self.agent.normalizer(self.agent.env.obs.to(buf.device)))
        buf.compute_returns(last_value, self.cfg.gamma, self.cfg.gae_lambda)

    def update(self, buf: RolloutBuffer, frac: float) -> None:
        """Schulman et al. 2017, Alg. 1: ``n_epochs`` passes of ``n_minibatches`` Adam steps on Eq. 9."""
        cfg, net = self.cfg, self.agent.policy.net
        lr = cfg.lr * frac if cfg.anneal_lr else cfg.lr
        clip = cfg.clip_range * frac if cfg.anneal_clip_range else cfg.clip_range
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        n = cfg.n_epochs * cfg.n_minibatches
        losses = torch.empty(n, 3, device=buf.device)  # policy, value, entropy of each step
        log_ratios = torch.empty(n, buf.size // cfg.n_minibatches, device=buf.device)
        k = 0
        for _ in range(cfg.n_epochs):
            for b in self.minibatches(buf):
                log_prob, entropy, value, v_features = self.evaluate(net, b)

                # Eq. 9 (as a loss to minimise): -L^CLIP (Eq. 7, r_t = pi(a|s) / pi_old(a|s)) + c1 L^VF,
                # L^VF = (V(s) - V_targ)^2 with V_targ the GAE return, clipped as in ppo2: the new value
                # may move at most eps from the old one before the loss stops it. One autograd node.
                loss, policy_loss, value_loss, log_ratio = clipped_ppo_loss(
                    log_prob, value, b.log_prob, b.value, b.advantage, b.ret, clip, cfg.vf_coef, cfg.clip_value_loss)
                entropy = entropy.mean()
                if cfg.ent_coef:  # - c2 S[pi]; baselines' MuJoCo default is 0: no entropy graph to differentiate
                    loss = loss - cfg.ent_coef * entropy
                if self.aux_losses:  # terms on the critic's features, e.g. MERL's heads
                    aux_inputs = AuxInputs(v_features, b.ret, b.value, None, b.index)
                    loss = add_auxiliary_losses(loss, self.aux_losses, aux_inputs)
                self.flat.zero_grad()
                loss.backward()
                self.flat.clip_grad_norm_(cfg.max_grad_norm)
                self.flat.adam_step(self.optimizer)

                with torch.no_grad():  # one write per step; the statistics are taken once per update
                    torch.stack((policy_loss, value_loss, entropy), out=losses[k])
                    log_ratios[k] = log_ratio
                k += 1
        self.updates += n
        self.rollouts += 1
        check_finite(("policy_loss", "value_loss", "entropy"), losses.sum(0),
                     f"in update round {self.rollouts} (env step {self.agent.env_steps})")
        with torch.no_grad():
            approx_kl = 0.5 * log_ratios.square().mean()
            clip_fraction = ((log_ratios.exp() - 1.0).abs() > clip).float().mean()
            self.metrics.add(torch.cat([losses.mean(0), torch.stack([approx_kl, clip_fraction,
                                        explained_variance(buf.value, buf.ret)]),
                                        torch.tensor([lr], device=buf.device)]))

    def minibatches(self, buf: RolloutBuffer):
        """One epoch of minibatches: shuffled single steps (the sequence variant: sequences)."""
        return buf.minibatches(self.cfg.n_minibatches, normalize_advantage=self.cfg.normalize_advantage)

    @staticmethod
    def evaluate(net, batch):
        """``(log_prob, entropy, value, critic features)`` of a minibatch's steps, each ``[B]``
        (features ``[B, H]``), under the current parameters."""
        return net.evaluate(batch.obs, batch.action)

    def pop_metrics(self) -> dict[str, float]:
        """Mean of each metric over the rollouts since the last call (NaN before the first)."""
        return self.metrics.pop()

    def state_dict(self):
        return {"updates": self.updates, "rollouts": self.rollouts, "optimizer": self.optimizer.state_dict(),
                "metrics": self.metrics.state_dict()}

    def load_state_dict(self, state):
        self.updates, self.rollouts = int(state["updates"]), int(state["rollouts"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.metrics.load_state_dict(state.get("metrics"))

