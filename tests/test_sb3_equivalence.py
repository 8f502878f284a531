"""Update-level equivalence with Stable-Baselines3 (SAC, TD3, DDPG, PPO).

Each test builds an rlblocks agent and an SB3 model with the same hyperparameters, copies
rlblocks' initial weights into SB3 (the layouts differ: rlblocks' critic ensemble stores
``[E, in, out]`` weights for all members at once, SB3 has one ``nn.Linear`` per critic with
``[out, in]``), feeds both the same minibatches and the same noise draws, runs a few updates
on each and compares every parameter, every target parameter, Adam's ``exp_avg``,
``exp_avg_sq`` and ``step`` and Adam's hyperparameters (learning rate, betas, epsilon, weight
decay), and SAC's entropy temperature.

How the noise is shared (stated per test):

* SAC: the two libraries draw the reparameterisation noise in a different order (SB3:
  current states, then next states; rlblocks: next states, then current states). The tests
  patch the draw functions (``torch.distributions.normal._standard_normal`` in SB3,
  ``torch.randn_like`` in rlblocks) to hand each side the same ``eps`` for the same rows,
  and check that every prepared draw was consumed.
* TD3/DDPG: both draw one ``[B, act_dim]`` standard normal per update for target policy
  smoothing from torch's global generator (SB3: ``normal_(0, sigma)``, rlblocks:
  ``sigma * randn_like``): torch is seeded identically before each update.
* PPO: the minibatch order comes from rlblocks' ``torch.randperm`` (seeded), and SB3's
  rollout buffer is replaced by one yielding the same minibatches in the same order.

Deliberate differences, each stated and checked where it occurs:

* SAC's tanh correction: rlblocks uses the exact ``log(1 - tanh(u)^2) = 2 (log 2 - u -
  softplus(-2u))`` (Haarnoja et al. 2018, arXiv 1801.01290, Eq. 21; softlearning's
  ``SquashBijector``), SB3 ``log(1 - tanh(u)^2 + 1e-6)`` (the first SAC code, haarnoja/sac,
  ``EPS = 1e-6``). The update tests give SB3 the exact form; ``test_sac_tanh_correction``
  checks that this is the only difference in the log-probability.
* PPO follows OpenAI baselines ``ppo2`` where SB3 differs: advantages standardised with the
  population std (``np.std``), SB3 uses the Bessel-corrected ``torch.std``; ``L^VF`` carries
  baselines' factor ½ (SB3 has none, so SB3's ``vf_coef`` is rlblocks' halved); the value
  clip is baselines' ``max(unclipped, clipped)`` error, SB3's ``clip_range_vf`` takes the
  clipped error alone; the learning rate anneals from the first update's ``frac = 1``
  (SB3's schedule is evaluated one rollout later). The direct test runs SB3 with those
  choices configured away; a hand-written baselines reference, itself checked against SB3's
  ``train()`` with SB3's rules, covers the rest.

Tolerances: float32 with differently ordered kernels (batched ``baddbmm`` vs ``nn.Linear``,
fused vs for-each Adam, rlblocks' sigmoid-form tanh in PPO). Three checks per tensor
(:func:`assert_equivalent`): its value (``atol=1e-6, rtol=1e-5``; the largest difference seen
is 4 % of that); its change since the common start, as a whole (relative ``1e-4`` of the
change's norm plus 2 float32 ulps of the value; 20 % of that seen), which is what catches a
Polyak rate or step size off by 1e-3; and Adam's moments per element (``rtol=2e-4`` with a
floor of ``1e-6`` of the tensor's largest element; 50 % seen, in PPO). Each of these changes
to rlblocks or to the setup failed the tests when they were written (checked by hand): the SB3
log-prob epsilon left in; Polyak tau × 1.001; alpha × 1.0001; critic-loss scale 0.5001;
target entropy × 1.001; log-std bound 0 instead of 2; Adam eps 1e-7 or weight decay 1e-6;
target-noise clip 0.45; no clamp of the smoothed target action; the policy delay off by one;
Q_2 for Q_1 in TD3's actor loss; a Bessel std for the advantages; the value-clip rule inverted;
ratio ties sent to the clipped branch; the Gaussian entropy × 1.001.
``test_tolerances_catch_a_small_perturbation`` keeps one such check in the suite.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import NamedTuple

import gymnasium as gym
import pytest
import torch
import torch.nn.functional as F
from stable_baselines3 import DDPG as SB3DDPG
from stable_baselines3 import PPO as SB3PPO
from stable_baselines3 import SAC as SB3SAC
from stable_baselines3 import TD3 as SB3TD3
from stable_baselines3.common.distributions import SquashedDiagGaussianDistribution
from stable_baselines3.common.logger import configure
from stable_baselines3.common.type_aliases import ReplayBufferSamples, RolloutBufferSamples

from rlblocks.algos.ddpg import DDPGConfig
from rlblocks.algos.ppo import PPOConfig
from rlblocks.algos.sac import SACConfig
from rlblocks.algos.td3 import TD3Config
from rlblocks.buffers.replay import Batch
from rlblocks.registry import RunOptions, build_agent, get_algo

ATOL, RTOL = 1e-6, 1e-5  # parameters and targets
DELTA_RTOL, DELTA_ULPS = 1e-4, 2  # the change of each tensor over the updates (see assert_equivalent)
# Adam's exp_avg / exp_avg_sq: relative per element, with a floor relative to the tensor's largest
# element (a gradient element that is a sum of cancelling terms has a larger relative rounding error).
MOMENT_RTOL, MOMENT_FLOOR = 2e-4, 1e-6
N_UPDATES = 3  # > policy_delay (TD3) and several Polyak steps
HIDDEN = [32, 32]
BATCH = 64


def _has_mujoco() -> bool:
    try:
        import mujoco  # noqa: F401
    except ImportError:
        return False
    return True


# Pendulum (1 action dim) and HalfCheetah, the README's main job (6 dims: sums over action dims).
CONTINUOUS_ENVS = ["Pendulum-v1", pytest.param("HalfCheetah-v5", marks=pytest.mark.skipif(
    not _has_mujoco(), reason="HalfCheetah needs mujoco"))]


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------- weight links
class Link(NamedTuple):
    """One SB3 tensor and where it lives in rlblocks: ``view(rl_key)`` is it in SB3's layout.

    ``rl_key`` is the tensor rlblocks' optimizer keys its state by (the parameter itself, or
    PPO's flat parameter), so ``view`` maps the Adam moments the same way.
    """

    name: str
    rl_key: torch.Tensor
    view: Callable[[torch.Tensor], torch.Tensor]
    sb3: torch.Tensor


def _same(t):
    return t


def linear_links(name, rl: torch.nn.Linear, sb3: torch.nn.Linear, rows: slice = slice(None)) -> list[Link]:
    """``nn.Linear`` ↔ ``nn.Linear`` (``rows`` of rlblocks' output: SAC's mean/log-std halves)."""
    return [Link(f"{name}.weight", rl.weight, lambda t: t[rows], sb3.weight),
            Link(f"{name}.bias", rl.bias, lambda t: t[rows], sb3.bias)]


def member_links(name, layer, e: int, sb3: torch.nn.Linear) -> list[Link]:
    """Member ``e`` of an :class:`EnsembleLinear` (``[E, in, out]``, ``[E, 1, out]``) ↔ ``nn.Linear``."""
    return [Link(f"{name}.weight", layer.weight, lambda t: t[e].T, sb3.weight),
            Link(f"{name}.bias", layer.bias, lambda t: t[e, 0], sb3.bias)]


def sb3_linears(seq) -> list[torch.nn.Linear]:
    return [m for m in seq if isinstance(m, torch.nn.Linear)]


def critic_links(prefix, rl_q, sb3_critic) -> list[Link]:
    links = []
    for e, q_net in enumerate(sb3_critic.q_networks):
        for i, (layer, lin) in enumerate(zip(rl_q.net.layers, sb3_linears(q_net), strict=True)):
            links += member_links(f"{prefix}{e}.{i}", layer, e, lin)
    return links


def copy_into_sb3(links: list[Link]) -> dict[str, torch.Tensor]:
    """rlblocks' values into SB3; returns them (SB3 layout, by link name): the common start."""
    with torch.no_grad():
        for link in links:
            assert link.sb3.shape == link.view(link.rl_key).shape, link.name
            link.sb3.copy_(link.view(link.rl_key))
    return {link.name: link.sb3.detach().clone() for link in links}


def _state_of(optimizers, param):
    for opt in optimizers:
        for group in opt.param_groups:
            if any(p is param for p in group["params"]):
                return opt.state.get(param, {}), group
    raise AssertionError("parameter not in any optimizer")


def assert_equivalent(links, rl_opts, sb3_opts, start: dict[str, torch.Tensor], moments: bool = True) -> None:
    """Every linked tensor equal, and so is its change since ``start`` (relative to its size: a
    Polyak or learning-rate error of 1e-3 shows there long before it reaches ``ATOL``); with
    ``moments`` also the Adam state and hyperparameters."""
    for link in links:
        ours, theirs = link.view(link.rl_key).detach(), link.sb3.detach()
        torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=RTOL, msg=lambda m, name=link.name: f"{name}: {m}")
        # The change since the start, as a whole (a few elements of an Adam step may cancel and lose
        # relative precision; a wrong Polyak rate or step size moves them all): relative error at
        # most DELTA_RTOL, plus the float32 resolution of the values themselves (a few ulps).
        change, their_change = ours - start[link.name], theirs - start[link.name]
        allowed = DELTA_RTOL * their_change.norm() + DELTA_ULPS * torch.finfo(torch.float32).eps * theirs.norm()
        err = (change - their_change).norm()
        assert err <= allowed, f"{link.name}: its change differs by {err:.3g} (norm), allowed {allowed:.3g}"
        if not moments:
            continue
        (rl_state, rl_group), (sb3_state, sb3_group) = _state_of(rl_opts, link.rl_key), _state_of(sb3_opts, link.sb3)
        for key in ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize"):
            assert rl_group[key] == sb3_group[key], f"{link.name}: Adam {key} {rl_group[key]} vs {sb3_group[key]}"
        assert float(rl_state["step"]) == float(sb3_state["step"]), f"{link.name}: Adam step"
        for key in ("exp_avg", "exp_avg_sq"):
            theirs = sb3_state[key]
            torch.testing.assert_close(link.view(rl_state[key]), theirs, rtol=MOMENT_RTOL,
                                       atol=MOMENT_FLOOR * float(theirs.abs().max()),
                                       msg=lambda m, key=key, name=link.name: f"{name} {key}: {m}")


# ----------------------------------------------------------------------------- builders
def _opts() -> RunOptions:
    return RunOptions(run_dir=None, total_steps=100_000, eval_every=0, checkpoint_every=0, progress=False,
                      tensorboard=False)


def rl_agent(algo: str, env_id: str, cfg, seed: int = 0):
    return build_agent(get_algo(algo), env_id, cfg, seed, torch.device("cpu"), _opts())


def sb3_model(cls, env_id: str, **kwargs):
    model = cls("MlpPolicy", gym.make(env_id), device="cpu", seed=0, verbose=0, **kwargs)
    model.set_logger(configure(None, []))
    return model


def close(agent, model) -> None:
    agent.env.close()
    model.get_env().close()


def random_batches(obs_dim: int, act_dim: int, gamma: float, n: int, seed: int = 1):
    """``n`` minibatches as rlblocks ``Batch`` and SB3 ``ReplayBufferSamples`` (same values),
    with a fifth of the transitions terminal (no bootstrap)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        obs, next_obs = torch.randn(BATCH, obs_dim, generator=g), torch.randn(BATCH, obs_dim, generator=g)
        action = torch.rand(BATCH, act_dim, generator=g) * 2 - 1
        reward = torch.randn(BATCH, generator=g)
        done = (torch.rand(BATCH, generator=g) < 0.2).float()
        rl = Batch(obs, action, reward, next_obs, gamma * (1.0 - done))
        sb3 = ReplayBufferSamples(obs, action, next_obs, done.unsqueeze(1), reward.unsqueeze(1))
        out.append((rl, sb3))
    return out


def feed_replay(model, samples) -> None:
    model.replay_buffer.sample = lambda batch_size, env=None: samples


# ----------------------------------------------------------------------------- SAC
def exact_squashed_log_prob(self, actions, gaussian_actions=None):
    """SB3's ``SquashedDiagGaussianDistribution.log_prob`` with rlblocks' exact tanh correction."""
    u = gaussian_actions
    log_prob = self.distribution.log_prob(u).sum(dim=1)
    return log_prob - (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(dim=1)


class NoiseFeed:
    """Hands out prepared standard-normal draws in a fixed order; checks shapes and that all are used."""

    def __init__(self, draws):
        self.draws = list(draws)

    def __call__(self, shape):
        assert self.draws, "more noise draws than prepared"
        eps = self.draws.pop(0)
        assert tuple(shape) == tuple(eps.shape), f"noise of shape {tuple(shape)}, prepared {tuple(eps.shape)}"
        return eps.clone()


def sac_pair(env_id: str, lr: float = 1e-3, init_alpha: float = 0.5, tau: float = 0.2, gamma: float = 0.99):
    cfg = SACConfig(hidden_sizes=HIDDEN, batch_size=BATCH, buffer_size=1000, learning_starts=0, tau=tau, gamma=gamma,
                    actor_lr=lr, critic_lr=lr, alpha_lr=lr, init_alpha=init_alpha)
    agent = rl_agent("sac", env_id, cfg)
    model = sb3_model(SB3SAC, env_id, learning_rate=lr, buffer_size=1000, learning_starts=0, batch_size=BATCH,
                      tau=tau, gamma=gamma, ent_coef=f"auto_{init_alpha}", policy_kwargs={"net_arch": HIDDEN})
    act_dim = agent.policy.act_dim
    actor, sb3_actor = agent.policy.actor, model.actor
    rl_lin = [m for m in actor.net if isinstance(m, torch.nn.Linear)]
    links = []
    for i, (a, b) in enumerate(zip(rl_lin[:-1], sb3_linears(sb3_actor.latent_pi), strict=True)):
        links += linear_links(f"actor.{i}", a, b)
    links += linear_links("actor.mu", rl_lin[-1], sb3_actor.mu, slice(0, act_dim))
    links += linear_links("actor.log_std", rl_lin[-1], sb3_actor.log_std, slice(act_dim, 2 * act_dim))
    links += critic_links("critic.q", agent.critic.q, model.critic)
    targets = critic_links("critic_target.q", agent.critic.q_target, model.critic_target)
    alpha = Link("log_alpha", agent.algo.log_alpha, lambda t: t.reshape(1), model.log_ent_coef)
    start = copy_into_sb3(links + targets + [alpha])
    return agent, model, links, targets, alpha, start


def run_sac_updates(agent, model, monkeypatch, n: int = N_UPDATES, after_each: Callable[[], None] | None = None):
    """``n`` updates on each side, same minibatches and noise; ``after_each()`` after every one."""
    obs_dim, act_dim = agent.env.obs_space.shape[0], agent.policy.act_dim
    g = torch.Generator().manual_seed(2)
    for rl_batch, sb3_batch in random_batches(obs_dim, act_dim, agent.config.gamma, n):
        eps_obs, eps_next = torch.randn(BATCH, act_dim, generator=g), torch.randn(BATCH, act_dim, generator=g)
        rl_noise, sb3_noise = NoiseFeed([eps_next, eps_obs]), NoiseFeed([eps_obs, eps_next])
        with monkeypatch.context() as m:
            m.setattr(torch, "randn_like", lambda t, feed=rl_noise: feed(t.shape))
            agent.algo.update(rl_batch)
        with monkeypatch.context() as m:
            m.setattr(torch.distributions.normal, "_standard_normal",
                      lambda shape, dtype, device, feed=sb3_noise: feed(shape))
            feed_replay(model, sb3_batch)
            model.train(gradient_steps=1, batch_size=BATCH)
        assert not rl_noise.draws and not sb3_noise.draws, "a prepared noise draw was not used"
        if after_each is not None:
            after_each()


@pytest.mark.parametrize("env_id", CONTINUOUS_ENVS)
def test_sac_update_matches_sb3(env_id, monkeypatch):
    """SAC (sequential_update=true, the default): after each of 3 updates every actor, critic and
    target-critic parameter, the temperature ``log alpha`` and the Adam states agree with SB3's.

    Same semantics checked this way: SB3 steps alpha first, then the critic, then the actor, and
    uses ``alpha = exp(log_alpha)`` from before its step in the target and the actor loss; rlblocks
    steps the critic, then actor and alpha together, with the same pre-step alpha. Both take the
    alpha loss from the log-prob of the actions the actor loss uses (the actor is unchanged by
    the critic step), the actor loss against the updated critic, the critic loss ``½ Σ_i MSE``, and
    Polyak with tau after the actor step. Deliberate difference: SB3 is given the exact tanh
    correction (see ``test_sac_tanh_correction``)."""
    monkeypatch.setattr(SquashedDiagGaussianDistribution, "log_prob", exact_squashed_log_prob)
    agent, model, links, targets, alpha, start = sac_pair(env_id)
    opts = [agent.algo.optimizer]
    sb3_opts = [model.actor.optimizer, model.critic.optimizer, model.ent_coef_optimizer]

    def check():
        assert_equivalent(links + [alpha], opts, sb3_opts, start)
        assert_equivalent(targets, opts, sb3_opts, start, moments=False)

    try:
        run_sac_updates(agent, model, monkeypatch, after_each=check)
        assert all(not torch.equal(start[link.name], link.sb3) for link in links), "a parameter did not move"
        assert float(agent.algo.log_alpha.detach()) != math.log(0.5)
    finally:
        close(agent, model)


def test_sac_tanh_correction():
    """The deliberate difference in SAC: rlblocks' log pi(a|s) is the exact change of variables,
    SB3's adds 1e-6 inside the log.

    * rlblocks' log-prob equals a float64 evaluation of the exact formula written another way
      (``log(1 - tanh^2 u) = -2 log cosh u``), saturated actions included.
    * Per action dimension, SB3's correction is the exact one plus ``log(1 + 1e-6 / (1 - tanh^2 u))``
      while the action is not saturated (|u| ≤ 3: at most ~4e-4), so SB3's log-prob is lower by
      at least 1e-6 per dimension, more than the update tests' tolerance allows.
    * Once tanh saturates in float32 (|u| ≳ 9) SB3's correction is the constant ``log(1e-6)``: its
      gradient in u vanishes, where the exact one keeps pulling u back with slope ``-2 sign(u)``.
      (The actor loss ``α log π`` then no longer penalises pushing u further into saturation.)
    """
    from rlblocks.nets.actors import SquashedGaussianActor

    torch.manual_seed(0)
    actor = SquashedGaussianActor(5, 6, [16])
    obs = torch.randn(256, 5) * 3
    eps = torch.randn(256, 6)
    mean, log_std = actor(obs)
    u = mean + log_std.exp() * eps
    with pytest.MonkeyPatch.context() as m:
        m.setattr(torch, "randn_like", lambda t: eps.clone())
        _, ours = actor.sample(obs)
    u64 = u.double()
    log_sech2 = -2.0 * (u64.abs() + torch.log1p(torch.exp(-2.0 * u64.abs())) - math.log(2.0))  # log(1 - tanh^2)
    exact = (-0.5 * eps.double() ** 2 - log_std.double() - 0.5 * math.log(2 * math.pi)).sum(-1) - log_sech2.sum(-1)
    torch.testing.assert_close(ours.double(), exact, atol=2e-5, rtol=1e-5)

    # Per dimension: rlblocks' correction (as in actors.py) and SB3's, on float32 u.
    u = torch.linspace(-12.0, 12.0, 2401, requires_grad=True)
    ours_corr = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
    sb3_corr = torch.log(1 - torch.tanh(u) ** 2 + 1e-6)
    u64 = u.detach().double()
    exact_corr = -2.0 * (u64.abs() + torch.log1p(torch.exp(-2.0 * u64.abs())) - math.log(2.0))
    torch.testing.assert_close(ours_corr.detach().double(), exact_corr, atol=1e-5, rtol=1e-6)
    moderate = u64.abs() <= 3
    gap = torch.log1p(1e-6 / (1 - torch.tanh(u64) ** 2))
    torch.testing.assert_close(sb3_corr.detach().double()[moderate], (exact_corr + gap)[moderate], atol=2e-5, rtol=0)
    assert (sb3_corr - ours_corr).detach()[moderate].min() > 5e-7  # float32 log(1 + 1e-6) at u = 0 is ~9.5e-7
    saturated = u64.abs() >= 9.5
    assert torch.all(sb3_corr.detach()[saturated] == torch.log(torch.tensor(1e-6)))
    grad_ours, grad_sb3 = torch.autograd.grad(ours_corr.sum(), u)[0], torch.autograd.grad(sb3_corr.sum(), u)[0]
    torch.testing.assert_close(grad_ours[saturated], -2.0 * u.detach()[saturated].sign())
    assert torch.all(grad_sb3[saturated] == 0)


# ----------------------------------------------------------------------------- TD3 / DDPG
def deterministic_pair(algo: str, env_id: str, lr: float = 1e-3, tau: float = 0.2, gamma: float = 0.99):
    common = {"hidden_sizes": HIDDEN, "batch_size": BATCH, "buffer_size": 1000, "learning_starts": 0, "tau": tau,
              "gamma": gamma, "actor_lr": lr, "critic_lr": lr}
    sb3_common = {"learning_rate": lr, "buffer_size": 1000, "learning_starts": 0, "batch_size": BATCH, "tau": tau,
                  "gamma": gamma, "policy_kwargs": {"net_arch": HIDDEN}}
    if algo == "td3":
        agent = rl_agent("td3", env_id, TD3Config(**common))
        model = sb3_model(SB3TD3, env_id, policy_delay=2, target_policy_noise=0.2, target_noise_clip=0.5, **sb3_common)
    else:
        agent = rl_agent("ddpg", env_id, DDPGConfig(**common))
        model = sb3_model(SB3DDPG, env_id, **sb3_common)
    with torch.no_grad():  # a steeper actor: some target actions + smoothing noise leave [-1, 1] (the clamp acts)
        for actor in (agent.policy.actor, agent.policy.actor_target):
            actor.net[-1].weight.mul_(8.0)
    links, targets = [], []
    for prefix, rl_actor, sb3_actor, out in (("actor", agent.policy.actor, model.actor, links),
                                             ("actor_target", agent.policy.actor_target, model.actor_target, targets)):
        rl_lin = [m for m in rl_actor.net if isinstance(m, torch.nn.Linear)]
        for i, (a, b) in enumerate(zip(rl_lin, sb3_linears(sb3_actor.mu), strict=True)):
            out += linear_links(f"{prefix}.{i}", a, b)
    links += critic_links("critic.q", agent.critic.q, model.critic)
    targets += critic_links("critic_target.q", agent.critic.q_target, model.critic_target)
    start = copy_into_sb3(links + targets)
    return agent, model, links, targets, start


@pytest.mark.parametrize("env_id", CONTINUOUS_ENVS)
@pytest.mark.parametrize("algo", ["td3", "ddpg"])
def test_deterministic_update_matches_sb3(algo, env_id):
    """TD3 (and DDPG, its configuration with one critic, no smoothing, no delay): after each of 3
    updates the actor, the critics, both target networks and the Adam states agree with SB3's
    (after TD3's first update: the critic alone moved, the targets did not).

    Checked this way: critic loss ``Σ_i MSE`` (no ½), target ``r + γ(1-d) min_i Q'_i(s', clip(μ'(s')
    + clip(σε, ±c), ±1))``, actor loss ``-Q_1(s, μ(s))``, actor and targets updated on updates 2, 4, ...
    (``policy_delay=2``), Polyak of critic and actor targets after the actor step. The smoothing
    noise is the same draw: torch is seeded identically before each update."""
    agent, model, links, targets, start = deterministic_pair(algo, env_id)
    obs_dim, act_dim = agent.env.obs_space.shape[0], agent.policy.act_dim
    opts = [agent.algo.actor_opt, agent.algo.critic_opt]
    sb3_opts = [model.actor.optimizer, model.critic.optimizer]
    try:
        for k, (rl_batch, sb3_batch) in enumerate(random_batches(obs_dim, act_dim, agent.config.gamma, N_UPDATES)):
            if algo == "td3":  # premise: the smoothed target action is clamped somewhere
                torch.manual_seed(100 + k)
                with torch.no_grad():
                    next_action = agent.policy.actor_target(rl_batch.next_obs)
                    noise = (torch.randn_like(next_action) * 0.2).clamp(-0.5, 0.5)
                    assert ((next_action + noise).abs() > 1).any()
            torch.manual_seed(100 + k)
            agent.algo.update(rl_batch)
            agent.algo.updates += 1  # what optimize() does after each update
            torch.manual_seed(100 + k)
            feed_replay(model, sb3_batch)
            model.train(gradient_steps=1, batch_size=BATCH)
            if algo == "td3" and k == 0:  # no actor step yet (policy_delay = 2)
                assert all(torch.equal(start[link.name], link.sb3) for link in links if link.name.startswith("actor"))
                assert_equivalent(links, [agent.algo.critic_opt], [model.critic.optimizer], start, moments=False)
            else:
                assert_equivalent(links, opts, sb3_opts, start)
            assert_equivalent(targets, opts, sb3_opts, start, moments=False)
        steps = float(_state_of(opts, links[0].rl_key)[0]["step"])
        assert steps == (1 if algo == "td3" else N_UPDATES)  # delayed actor steps
    finally:
        close(agent, model)


def test_target_smoothing_noise_is_the_same_draw():
    """The premise of the TD3 test: SB3's ``normal_(0, σ)`` and rlblocks' ``σ · randn_like`` give the
    same numbers from the same seed (exactly for tensors of 16 or more elements)."""
    torch.manual_seed(3)
    ours = torch.randn_like(torch.empty(BATCH, 6)) * 0.2
    torch.manual_seed(3)
    theirs = torch.empty(BATCH, 6).normal_(0, 0.2)
    assert torch.equal(ours, theirs)


# ----------------------------------------------------------------------------- PPO
PPO_ENVS = ["Pendulum-v1", "CartPole-v1",
            pytest.param("HalfCheetah-v5", marks=pytest.mark.skipif(not _has_mujoco(), reason="needs mujoco"))]
N_STEPS, N_ENVS, N_MINIBATCHES, N_EPOCHS = 128, 4, 2, 2  # 256-row minibatches: rlblocks' fused-tanh path


def ppo_pair(env_id: str, clip_value_loss: bool, vf_coef: float, ent_coef: float = 0.01, lr: float = 3e-4):
    cfg = PPOConfig(num_envs=N_ENVS, n_steps=N_STEPS, n_minibatches=N_MINIBATCHES, n_epochs=N_EPOCHS, lr=lr,
                    ent_coef=ent_coef, vf_coef=vf_coef, clip_value_loss=clip_value_loss, normalize_obs=False,
                    normalize_reward=False)
    agent = rl_agent("ppo", env_id, cfg)
    # SB3 runs one env: its rollout is n_steps × num_envs rows of rlblocks' (the buffer is replaced anyway).
    model = sb3_model(SB3PPO, env_id, n_steps=N_STEPS * N_ENVS, batch_size=N_STEPS * N_ENVS // N_MINIBATCHES,
                      n_epochs=N_EPOCHS, learning_rate=lr, ent_coef=ent_coef, max_grad_norm=0.5,
                      policy_kwargs={"net_arch": {"pi": [64, 64], "vf": [64, 64]}, "activation_fn": torch.nn.Tanh})
    net, flat = agent.policy.net, agent.algo.flat
    base = flat.param.data_ptr()

    def flat_view(p, post):
        start, n, shape = (p.data_ptr() - base) // p.element_size(), p.numel(), p.shape
        return lambda t: post(t.detach()[start:start + n].view(shape))

    links = []
    mlp = model.policy.mlp_extractor
    for e, sb3_net in ((0, mlp.policy_net), (1, mlp.value_net)):
        for i, (layer, lin) in enumerate(zip(net.trunk, sb3_linears(sb3_net), strict=True)):
            links += [Link(f"trunk{e}.{i}.weight", flat.param, flat_view(layer.weight, lambda t, e=e: t[e].T),
                           lin.weight),
                      Link(f"trunk{e}.{i}.bias", flat.param, flat_view(layer.bias, lambda t, e=e: t[e, 0]), lin.bias)]
    head = net.pi_head.logits if net.pi_head.discrete else net.pi_head.mean
    for name, rl_lin, sb3_lin in (("pi_head", head, model.policy.action_net), ("v_head", net.v_head,
                                                                                model.policy.value_net)):
        links += [Link(f"{name}.weight", flat.param, flat_view(rl_lin.weight, _same), sb3_lin.weight),
                  Link(f"{name}.bias", flat.param, flat_view(rl_lin.bias, _same), sb3_lin.bias)]
    if not net.pi_head.discrete:
        links.append(Link("log_std", flat.param, flat_view(net.pi_head.log_std, _same), model.policy.log_std))
    assert len(links) == len(list(model.policy.parameters()))
    start = copy_into_sb3(links)
    return agent, model, links, start


def fill_rollout(agent, seed: int = 4):
    """A random rollout in rlblocks' buffer: old log-probs and values near the current ones (so
    some ratios and value changes fall outside the clip range), advantages with a non-zero mean."""
    buf, net = agent.rollout.buffer, agent.policy.net
    g = torch.Generator().manual_seed(seed)
    obs_dim = buf.obs.shape[-1]
    buf.obs.copy_(torch.randn(N_STEPS, N_ENVS, obs_dim, generator=g))
    if net.pi_head.discrete:
        buf.action.copy_(torch.randint(0, net.pi_head.logits.out_features, (N_STEPS, N_ENVS), generator=g))
    else:
        buf.action.copy_(torch.randn(N_STEPS, N_ENVS, buf.action.shape[-1], generator=g))
    with torch.no_grad():
        log_prob, _, value, _ = net.evaluate(buf.flat("obs"), buf.flat("action"))
    buf.flat("log_prob").copy_(log_prob + 0.3 * torch.randn(buf.size, generator=g))
    buf.flat("value").copy_(value + 0.5 * torch.randn(buf.size, generator=g))
    buf.flat("advantage").copy_(2.0 * torch.randn(buf.size, generator=g) + 0.5)
    buf.flat("ret").copy_(buf.flat("value") + 2.0 * buf.flat("advantage"))  # large value errors: the norm clip acts
    buf.pos = N_STEPS
    return buf


def rollout_minibatches(buf, perms, discrete: bool, normalize) -> list[list[RolloutBufferSamples]]:
    """rlblocks' rollout cut as rlblocks cuts it (``perms``, one per epoch), as SB3 samples;
    ``normalize(adv)`` is applied per minibatch."""
    size = buf.size // N_MINIBATCHES
    action = buf.flat("action").float()
    action = action.unsqueeze(1) if discrete else action
    epochs = []
    for perm in perms:
        mbs = []
        for k in range(N_MINIBATCHES):
            idx = perm[k * size:(k + 1) * size]
            mbs.append(RolloutBufferSamples(buf.flat("obs")[idx], action[idx], buf.flat("value")[idx],
                                            buf.flat("log_prob")[idx], normalize(buf.flat("advantage")[idx]),
                                            buf.flat("ret")[idx]))
        epochs.append(mbs)
    return epochs


def baselines_normalize(adv):
    """OpenAI baselines ppo2: ``(A - mean) / (np.std(A) + 1e-8)``, population std."""
    return (adv - adv.mean()) / (adv.std(unbiased=False) + 1e-8)


def sb3_normalize(adv):
    """SB3 PPO: ``(A - mean) / (torch.std(A) + 1e-8)``, Bessel-corrected std."""
    return (adv - adv.mean()) / (adv.std() + 1e-8)


def rl_ppo_update(agent, buf, seed: int = 5):
    """One rlblocks PPO update (frac = 1); returns the per-epoch permutations it drew."""
    torch.manual_seed(seed)
    perms = [torch.randperm(buf.size) for _ in range(N_EPOCHS)]
    torch.manual_seed(seed)
    agent.algo.update(buf, 1.0)
    return perms


def record_grad_norms(monkeypatch) -> list[float]:
    """Wrap ``clip_grad_norm_`` (SB3's and the reference's) to record the norms before clipping."""
    norms, original = [], torch.nn.utils.clip_grad_norm_

    def clip(params, max_norm, *args, **kwargs):
        norm = original(params, max_norm, *args, **kwargs)
        norms.append(float(norm))
        return norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    return norms


@pytest.mark.parametrize("env_id", PPO_ENVS)
def test_ppo_update_matches_sb3(env_id, monkeypatch):
    """PPO, one update of 2 epochs × 2 minibatches (4 Adam steps) with rlblocks' minibatch order:
    every parameter and the Adam state agree with SB3's ``train()``.

    Checked this way: clipped surrogate ``-min(A r, A clip(r, 1±0.2))``, entropy bonus 0.01, the
    global gradient-norm clip at 0.5 (active: asserted), Adam with eps 1e-5. The baselines choices
    are configured away, as stated: SB3 gets the advantages already standardised per minibatch with
    baselines' population std (``normalize_advantage=False``), and ``vf_coef=0.5`` against rlblocks'
    1.0 because rlblocks' ``L^VF`` has baselines' ½; both without value clipping."""
    agent, model, links, start = ppo_pair(env_id, clip_value_loss=False, vf_coef=1.0)
    model.vf_coef, model.normalize_advantage, model.clip_range_vf = 0.5, False, None
    try:
        discrete = agent.policy.net.pi_head.discrete
        buf = fill_rollout(agent)
        perms = rl_ppo_update(agent, buf)
        epochs = iter(rollout_minibatches(buf, perms, discrete, baselines_normalize))
        model.rollout_buffer.get = lambda batch_size: iter(next(epochs))
        norms = record_grad_norms(monkeypatch)
        model.train()
        assert len(norms) == N_EPOCHS * N_MINIBATCHES and max(norms) > 0.5  # the clip acted
        assert_equivalent(links, [agent.algo.optimizer], [model.policy.optimizer], start)
    finally:
        close(agent, model)


def reference_ppo_update(policy, epochs, clip: float, ent_coef: float, vf_coef: float, discrete: bool,
                         rules: str) -> None:
    """A hand-written PPO update on an SB3 policy, under ``rules``:

    * ``"baselines"``: OpenAI baselines ``ppo2/model.py``: ``vf_loss = .5 * mean(max((V - R)^2,
      (V_clip - R)^2))``, ``V_clip = V_old + clip(V - V_old, ±eps)``; advantages per minibatch with
      the population std.
    * ``"sb3"``: SB3 ``ppo/ppo.py`` with ``clip_range_vf = clip``: ``mse(R, V_clip)``, Bessel std.
    """
    normalize = baselines_normalize if rules == "baselines" else sb3_normalize
    for minibatches in epochs:
        for mb in minibatches:
            actions = mb.actions.long().flatten() if discrete else mb.actions
            values, log_prob, entropy = policy.evaluate_actions(mb.observations, actions)
            values = values.flatten()
            adv = normalize(mb.advantages)
            ratio = torch.exp(log_prob - mb.old_log_prob)
            policy_loss = -torch.min(adv * ratio, adv * ratio.clamp(1 - clip, 1 + clip)).mean()
            v_clip = mb.old_values + (values - mb.old_values).clamp(-clip, clip)
            if rules == "baselines":
                value_loss = 0.5 * torch.max((values - mb.returns) ** 2, (v_clip - mb.returns) ** 2).mean()
            else:
                value_loss = F.mse_loss(mb.returns, v_clip)
            loss = policy_loss - ent_coef * entropy.mean() + vf_coef * value_loss
            policy.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 0.5)
            policy.optimizer.step()


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_ppo_clipped_value_loss_matches_baselines_reference(env_id, monkeypatch):
    """rlblocks' default PPO loss (value clipping, per-minibatch advantage standardisation) against
    the hand-written baselines ``ppo2`` reference on a copy of the SB3 policy. The reference itself
    is first checked against SB3's ``train()`` with SB3's rules (``clip_range_vf=0.2``, Bessel std),
    so the only untested lines are the two baselines rules it swaps in."""
    agent, model, links, start = ppo_pair(env_id, clip_value_loss=True, vf_coef=0.5)
    model.clip_range_vf = lambda _: 0.2
    try:
        discrete = agent.policy.net.pi_head.discrete
        buf = fill_rollout(agent)
        reference = copy.deepcopy(model.policy)
        perms = rl_ppo_update(agent, buf)
        raw = rollout_minibatches(buf, perms, discrete, _same)

        # 1. the reference with SB3's rules is SB3's train().
        sb3_ref = copy.deepcopy(reference)
        reference_ppo_update(sb3_ref, raw, 0.2, 0.01, 0.5, discrete, rules="sb3")
        epochs = iter(raw)
        model.rollout_buffer.get = lambda batch_size: iter(next(epochs))
        model.train()
        for p, q in zip(sb3_ref.parameters(), model.policy.parameters(), strict=True):
            torch.testing.assert_close(p, q, atol=ATOL, rtol=RTOL)

        # 2. rlblocks is the reference with baselines' rules; the rules do differ here.
        norms = record_grad_norms(monkeypatch)
        reference_ppo_update(reference, raw, 0.2, 0.01, 0.5, discrete, rules="baselines")
        assert max(norms) > 0.5
        name_of = {id(p): name for name, p in model.policy.named_parameters()}
        ref_params = dict(reference.named_parameters())
        ref_links = [link._replace(sb3=ref_params[name_of[id(link.sb3)]]) for link in links]
        assert_equivalent(ref_links, [agent.algo.optimizer], [reference.optimizer], start)
        assert max((p - q).abs().max() for p, q in zip(reference.parameters(), model.policy.parameters())) > 1e-5
    finally:
        close(agent, model)


def test_ppo_learning_rate_annealing_is_baselines():
    """Deliberate: the learning rate (and clip range) anneal with baselines' ``frac = 1 - (update - 1)
    / n_updates``, 1 at the first update; SB3's linear schedules read ``progress_remaining = 1 -
    num_timesteps / total`` after the rollout is collected, one rollout further on."""
    total = 4 * N_STEPS * N_ENVS
    cfg = PPOConfig(num_envs=N_ENVS, n_steps=N_STEPS, n_minibatches=N_MINIBATCHES, n_epochs=1)
    agent = build_agent(get_algo("ppo"), "Pendulum-v1", cfg, 0, torch.device("cpu"),
                        RunOptions(None, total, eval_every=0, checkpoint_every=0, progress=False, tensorboard=False))
    model = sb3_model(SB3PPO, "Pendulum-v1", n_steps=N_STEPS)
    try:
        fracs = []
        agent.algo.update = lambda buf, frac: fracs.append(frac)
        buf = agent.rollout.buffer
        sb3_progress = []
        for k in range(1, 5):
            buf.pos = N_STEPS
            agent.env_steps = k * buf.size
            agent.algo.optimize()
            model._update_current_progress_remaining(k * buf.size, total)
            sb3_progress.append(model._current_progress_remaining)
        assert fracs == [1.0, 0.75, 0.5, 0.25]  # baselines ppo2: lrnow = lr * (1 - (update - 1) / nupdates)
        assert sb3_progress == [0.75, 0.5, 0.25, 0.0]
    finally:
        close(agent, model)


def test_tolerances_catch_a_small_perturbation(monkeypatch):
    """The comparisons can fail: SAC on Pendulum with one actor weight moved by 1e-5 in SB3 before
    the updates does not pass ``assert_equivalent``."""
    monkeypatch.setattr(SquashedDiagGaussianDistribution, "log_prob", exact_squashed_log_prob)
    agent, model, links, _, alpha, start = sac_pair("Pendulum-v1")
    try:
        with torch.no_grad():
            model.actor.latent_pi[0].weight[0, 0] += 1e-5
        run_sac_updates(agent, model, monkeypatch)
        with pytest.raises(AssertionError):
            assert_equivalent(links + [alpha], [agent.algo.optimizer],
                              [model.actor.optimizer, model.critic.optimizer, model.ent_coef_optimizer], start)
    finally:
        close(agent, model)
