"""World-model ensembles: dynamics (state delta), reward and termination, each one batched ensemble.

Buckman et al. 2018, "Sample-Efficient Reinforcement Learning with Stochastic Ensemble Value
Expansion", arXiv 1807.01675, Sec. 4 and Appendix: ``M`` dynamics members predicting the state
delta ``s' = s + f_m(s, a)``, reward members ``r_m(s, a, s')`` and termination members (a logit of
``P(terminated | s, a, s')``). Each kind is one :class:`~rlblocks.nets.ensemble.EnsembleMLP`: one
batched matmul per layer for all members.

Inputs and outputs are normalised with running moments (:class:`RunningMoments`, updated from
each training batch on the device): ``(s, a)`` and ``(s, a, s')`` inputs, the delta and the reward
targets. The loss (Buckman et al., Appendix A) is summed over members:

    L = BCE(term_logit, terminated) + 1/2 (r̂ - r)^2 + 1/2 ||Δ̂ - Δ||^2    (normalised units)

(the paper's 1e-4 L2 is the optimiser's weight decay). Member ``e`` trains on its own rows
``[e]`` of a ``[E, B, ...]`` batch, so each example trains one random member.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rlblocks.nets.ensemble import EnsembleMLP


class RunningMoments(nn.Module):
    """Running mean and std of ``[N, dim]`` batches (Chan et al. parallel update), all on device.

    Buffers ``count [], mean [dim], m2 [dim]`` go into the state dict; ``std`` is floored at 1e-6
    (a constant feature, e.g. a reward that never changes, keeps unit scale).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("count", torch.zeros(()))
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("m2", torch.zeros(dim))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        n = x.shape[0]
        mean_b = x.mean(0)
        m2_b = (x - mean_b).square().sum(0)
        total = self.count + n
        delta = mean_b - self.mean
        self.mean += delta * (n / total)
        self.m2 += m2_b + delta.square() * (self.count * n / total)
        self.count.copy_(total)

    @property
    def std(self) -> torch.Tensor:
        return (self.m2 / self.count.clamp(min=1.0)).sqrt().clamp(min=1e-6)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean


class WorldModel(nn.Module):
    """Dynamics, reward and termination ensembles of ``ensemble_size`` members each.

    Shapes: ``obs [.., obs_dim]``, ``action [.., act_dim]`` in the learner's observation space.
    Sizes: ``dynamics_hidden`` (paper: 8 × 512), ``reward_hidden`` (paper: 4 × 128, also the
    termination model's).
    """

    def __init__(self, obs_dim: int, act_dim: int, ensemble_size: int, dynamics_hidden: list[int],
                 reward_hidden: list[int]):
        super().__init__()
        self.obs_dim, self.act_dim, self.ensemble_size = obs_dim, act_dim, ensemble_size
        sa, sas = obs_dim + act_dim, 2 * obs_dim + act_dim
        self.dynamics = EnsembleMLP(ensemble_size, sa, dynamics_hidden, obs_dim)
        self.reward = EnsembleMLP(ensemble_size, sas, reward_hidden, 1)
        self.termination = EnsembleMLP(ensemble_size, sas, reward_hidden, 1)
        self.sa_moments, self.sas_moments = RunningMoments(sa), RunningMoments(sas)
        self.delta_moments, self.reward_moments = RunningMoments(obs_dim), RunningMoments(1)

    # ------------------------------------------------------------------ prediction
    def step(self, obs: torch.Tensor, action: torch.Tensor, members: slice | None = None) -> torch.Tensor:
        """``s' = s + f_m(s, a)``: ``obs [M, B, o], action [M, B, a]`` → ``[M, B, o]``, member ``m``
        on row ``m`` (``members`` selects which, all by default)."""
        x = self.sa_moments.normalize(torch.cat([obs, action], -1))
        return obs + self.delta_moments.denormalize(self.dynamics(x, members=members))

    def _sas(self, obs, action, next_obs) -> torch.Tensor:
        return self.sas_moments.normalize(torch.cat([obs, action, next_obs], -1))

    def predict_reward(self, obs, action, next_obs, members: slice | None = None) -> torch.Tensor:
        """Every selected reward member on every row: ``[N, ..]`` inputs → ``[R, N]``."""
        return self.reward_moments.denormalize(self.reward(self._sas(obs, action, next_obs), members=members)).squeeze(-1)

    def termination_prob(self, obs, action, next_obs) -> torch.Tensor:
        """``P(terminated)`` averaged over the termination members: ``[N, ..]`` inputs → ``[N]``."""
        return torch.sigmoid(self.termination(self._sas(obs, action, next_obs))).mean(0).squeeze(-1)

    # ------------------------------------------------------------------ training
    def loss(self, obs, action, reward, next_obs, terminated) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, [dynamics, reward, termination] losses)`` of one batch, member ``e`` on rows ``[e]``.

        Shapes: ``obs, next_obs [E, B, o]``, ``action [E, B, a]``, ``reward, terminated [E, B]``
        (``terminated`` as 0/1 floats). The moments are updated from the batch first.
        """
        flat = lambda x: x.reshape(-1, x.shape[-1])
        sa, sas, delta = torch.cat([obs, action], -1), torch.cat([obs, action, next_obs], -1), next_obs - obs
        for moments, x in ((self.sa_moments, sa), (self.sas_moments, sas), (self.delta_moments, delta),
                           (self.reward_moments, reward[..., None])):
            moments.update(flat(x))
        # 1/2 ||Δ̂ - Δ||^2 and 1/2 (r̂ - r)^2 in normalised units, BCE of the termination logit
        dyn = 0.5 * (self.dynamics(self.sa_moments.normalize(sa)) - self.delta_moments.normalize(delta)).square().sum(-1).mean()
        x = self.sas_moments.normalize(sas)
        rew = 0.5 * (self.reward(x).squeeze(-1) - self.reward_moments.normalize(reward[..., None]).squeeze(-1)).square().mean()
        term = F.binary_cross_entropy_with_logits(self.termination(x).squeeze(-1), terminated)
        losses = torch.stack([dyn, rew, term]).detach()
        return (dyn + rew + term) * self.ensemble_size, losses
