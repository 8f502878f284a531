"""Model-based value expansion targets: MVE (TD-k), mean-k, TD(lambda), STEVE, STEVE-cov.

Each is a ``target`` module (:mod:`rlblocks.algos.targets`) that replaces the TD(0) target of any
algorithm exposing ``target_value`` (DDPG, TD3, SAC): the imagined steps use the algorithm's own
bootstrap value, so SAC's soft value and TD3's target smoothing carry into them.

Rollout (Buckman et al. 2018, "Sample-Efficient Reinforcement Learning with Stochastic Ensemble
Value Expansion", arXiv 1807.01675, Sec. 4 and Algorithm 1). For a replayed ``(s, a, r, s',
discount)`` (``r`` and ``discount = gamma^m (1 - terminated)`` of the 1- or n-step return), each
of ``M`` dynamics members rolls ``x_0 = s'`` forward ``H`` steps with ``a_k`` the action of
``target_value(x_k)``; ``R`` reward members score every step, the termination members give
``p_k``. With ``c_0 = 1, c_{k+1} = c_k (1 - p_k)`` the candidate target of horizon ``j`` is

    T_j = r + discount · ( sum_{k<j} gamma^k c_k r̂_k + gamma^j c_j V(x_j) ),   j = 0..H    (Eq. 6)

one sample per (reward, Q, dynamics) member combination: ``T [H+1, N = R·Q·M, B]``. ``T_0`` is the
TD(0) target. ``q_samples=min`` takes the min over the critic members as one Q sample (TD3/SAC's
clipped double Q); ``members`` uses each member as a sample (the paper's DDPG with 4 critics).
"""

from __future__ import annotations

import torch

from rlblocks.algos.targets import Target, TDTarget
from rlblocks.algos.world_model_learner import WorldModelLearner
from rlblocks.buffers.replay import Batch
from rlblocks.errors import ConfigError
from rlblocks.metrics import MetricSums
from rlblocks.module import MetricsSource

VAR_EPS = 1e-8  # Buckman et al.: w_j ∝ 1 / (var_j + 1e-8)


class ExpansionTarget(Target, MetricsSource):
    """Base: the imagined rollout and the candidate targets ``T_j``; subclasses combine them.

    ``members`` selects the world-model members rolled out (all by default; MVE: one).
    Logs ``w_0..w_H`` (the mean weight of each horizon) and ``model_usage = 1 - mean w_0``.
    """

    requires = ("algo", "world_model")
    members: slice | None = None

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.horizon = cfg.horizon
        self.metric_names = (*(f"w_{j}" for j in range(self.horizon + 1)), "model_usage")
        self.metrics = MetricSums(self.metric_names)
        self._discounts = [cfg.gamma ** j for j in range(self.horizon + 1)]

    def imagine(self, b):
        """The rollout, lists over steps: ``values`` H+1 × ``[Q, M·B]``, ``rewards`` H × ``[R, M·B]``,
        ``continues`` H × ``[M·B]`` (``1 - p_k``), ``states`` H+1 × ``[M·B, o]``, ``actions`` H+1 ×
        ``[M·B, a]`` (rows ``m·B + i``: dynamics member ``m``, example ``i``)."""
        algo, wm, H = self.agent.algo, self.agent.world_model.model, self.horizon
        M = wm.ensemble_size if self.members is None else len(range(wm.ensemble_size)[self.members])
        M = M if H > 0 else 1  # horizon 0 is TD(0): no rollout
        B, obs_dim = b.next_obs.shape
        x = b.next_obs.expand(M, B, obs_dim).reshape(M * B, obs_dim)
        values, rewards, continues, states, actions = [], [], [], [x], []
        for k in range(H + 1):
            v, a = algo.target_value(x, with_action=True)  # V(x_k) [Q, M·B] and a_k = pi(x_k)
            values.append(v.min(0, keepdim=True).values if self.cfg.q_samples == "min" else v)
            actions.append(a)
            if k == H:
                break
            x_next = wm.step(x.view(M, B, obs_dim), a.view(M, B, -1), self.members).view(M * B, obs_dim)
            rewards.append(wm.predict_reward(x, a, x_next, self.members))  # r̂_k [R, M·B]
            continues.append(1.0 - wm.termination_prob(x, a, x_next))  # 1 - p_k
            states.append(x_next)
            x = x_next
        return values, rewards, continues, states, actions

    def candidates(self, b, values, rewards, continues) -> torch.Tensor:
        """``T [H+1, N, B]`` of Eq. 6 over all (reward, Q, dynamics) member combinations."""
        B = b.reward.shape[0]
        shape = (rewards[0].shape[0] if rewards else 1, values[0].shape[0], values[0].shape[1] // B, B)  # R, Q, M, B
        partial = torch.zeros((), device=b.reward.device)  # sum_{k<j} gamma^k c_k r̂_k  [R, 1, M, B]
        c = torch.ones((), device=b.reward.device)  # c_j, survival to x_j  [1, 1, M, B]
        out = []
        for j, gj in enumerate(self._discounts):
            v = values[j].view(1, values[j].shape[0], -1, B)  # [1, Q, M, B]
            out.append((b.reward + b.discount * (partial + gj * c * v)).expand(shape).flatten(0, 2))  # [R·Q·M, B]
            if j < self.horizon:
                partial = partial + gj * c * rewards[j].view(rewards[j].shape[0], 1, -1, B)
                c = c * continues[j].view(1, 1, -1, B)
        return torch.stack(out)

    def combine(self, T: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(y [B], w [H+1, B])``: the target from the candidates and the weight of each horizon."""
        raise NotImplementedError

    def __call__(self, b):
        values, rewards, continues, _, _ = self.imagine(b)
        y, w = self.combine(self.candidates(b, values, rewards, continues))
        self._log(w.mean(1))
        return b, self.agent.algo.clip_target(y)

    def _log(self, mean_w: torch.Tensor) -> None:
        """Adds ``w_0..w_H`` (``mean_w [H+1]``) and ``model_usage = 1 - mean w_0`` (no host sync)."""
        self.metrics.add(torch.cat([mean_w, 1.0 - mean_w[:1]]))

    def pop_metrics(self):
        return self.metrics.pop()

    def state_dict(self):
        return {"metrics": self.metrics.state_dict()}

    def load_state_dict(self, state):
        self.metrics.load_state_dict(state.get("metrics"))


class STEVETarget(ExpansionTarget):
    """STEVE (Buckman et al. 2018, Sec. 4, Eq. 7): per example, the inverse-variance weighted mean

        mu_j = mean_n T_j,n    var_j = var_n T_j,n    w_j = (1/(var_j + 1e-8)) / sum_i 1/(var_i + 1e-8)
        y = sum_j w_j mu_j
    """

    def combine(self, T):
        mu, var = T.mean(1), T.var(1, correction=0)  # [H+1, B]
        inv = 1.0 / (var + VAR_EPS)
        w = inv / inv.sum(0)
        return (w * mu).sum(0), w


class STEVECovTarget(ExpansionTarget):
    """STEVE with covariances (Buckman et al. 2018, Sec. 6 "covariance" ablation): the minimum-variance
    unbiased combination of correlated estimates, ``w = Sigma^{-1} 1 / (1^T Sigma^{-1} 1)`` with
    ``Sigma [B, H+1, H+1]`` the sample covariance of ``T_0..T_H`` (ridge ``1e-6 · mean diag + 1e-8``
    keeps it invertible); ``y = sum_j w_j mu_j``. Weights may be negative.
    """

    def combine(self, T):
        mu = T.mean(1)  # [H+1, B]
        d = (T - mu[:, None]).permute(2, 0, 1)  # [B, H+1, N]
        cov = d @ d.transpose(1, 2) / T.shape[1]
        eye = torch.eye(T.shape[0], device=T.device)
        ridge = 1e-6 * cov.diagonal(dim1=1, dim2=2).mean(-1) + VAR_EPS
        ones = torch.ones(T.shape[2], T.shape[0], 1, device=T.device)
        w = torch.linalg.solve(cov + ridge[:, None, None] * eye, ones).squeeze(-1)  # [B, H+1]
        w = (w / w.sum(1, keepdim=True)).T
        return (w * mu).sum(0), w


class MeanKTarget(ExpansionTarget):
    """mean-k (Buckman et al. 2018, Sec. 6 baselines): ``y = 1/(H+1) sum_j mu_j``."""

    def combine(self, T):
        mu = T.mean(1)
        return mu.mean(0), torch.full_like(mu, 1.0 / mu.shape[0])


class TDLambdaTarget(ExpansionTarget):
    """TD(lambda) over the model horizons (Sutton & Barto, Sec. 12.1; Buckman et al. 2018, Sec. 6 with
    lambda = 0.25): ``y = (1 - lambda) sum_{j<H} lambda^j mu_j + lambda^H mu_H``."""

    def __init__(self, cfg):
        super().__init__(cfg)
        lam, H = cfg.td_lambda, cfg.horizon
        self._w = torch.tensor([(1 - lam) * lam ** j for j in range(H)] + [lam ** H])

    def combine(self, T):
        mu = T.mean(1)
        w = self._w.to(mu.device)[:, None].expand_as(mu)
        return (w * mu).sum(0), w


class MVETarget(ExpansionTarget):
    """MVE with the TD-k trick (Feinberg et al. 2018, "Model-Based Value Estimation for Efficient
    Model-Free Reinforcement Learning", arXiv 1803.00101, Sec. 3.1 and Eq. 3): one model (member 0),
    the longest horizon ``y = mu_H``, and the critic also regresses at the imagined states
    ``(x_k, a_k)``, ``k = 0..H-1``, on their own ``H - k``-step targets

        G_H = V(x_H),   G_k = r̂_k + gamma (1 - p_k) G_{k+1}

    so the critic is accurate on the states the expansion queries. The critic batch is ``B`` real
    rows then ``H·B`` imagined ones, ``y`` in the same order; the loss is their mean (Eq. 3's
    ``1/H`` sum).
    """

    members = slice(0, 1)

    def __init__(self, cfg):
        super().__init__(cfg)
        self._last = torch.zeros(self.horizon + 1)
        self._last[-1] = 1.0  # all weight on the longest horizon

    def __call__(self, b):
        values, rewards, continues, states, actions = self.imagine(b)
        g = self.cfg.gamma
        G = values[-1].mean(0)  # G_H = V(x_H)  [B] (M = 1)
        imagined = []
        for k in range(self.horizon - 1, -1, -1):  # G_k = r̂_k + gamma (1 - p_k) G_{k+1}
            G = rewards[k].mean(0) + g * continues[k] * G
            imagined.append(G)
        y = b.reward + b.discount * G  # = mu_H of Eq. 6
        algo = self.agent.algo
        ys = torch.cat([y, *reversed(imagined)])
        discount = torch.cat([b.discount, *(g * c for c in continues)])
        b_q = Batch(torch.cat([b.obs, *states[:-1]]), torch.cat([b.action, *actions[:-1]]), ys.new_zeros(ys.shape),
                    torch.cat(states), discount)
        self._log(self._last.to(y.device))
        return b_q, algo.clip_target(ys)


EXPANSION_TARGETS = {"mve": MVETarget, "mean_k": MeanKTarget, "td_lambda": TDLambdaTarget,
                     "steve": STEVETarget, "steve_cov": STEVECovTarget}


def target_modules(cfg, obs_dim: int, act_dim: int, goal_env: bool, device) -> list:
    """The modules ``target=...`` selects: ``[TDTarget]``, or ``[WorldModelLearner, <expansion target>]``.

    Raises :class:`ConfigError` for an expansion target on a goal env (dict observations)."""
    if cfg.target == "td":
        return [TDTarget()]
    if goal_env:
        raise ConfigError(f"target={cfg.target} needs a flat Box observation; goal envs (dict observations) use target=td")
    return [WorldModelLearner(obs_dim, act_dim, cfg, device), EXPANSION_TARGETS[cfg.target](cfg)]
