"""PPO: config checks, policy heads, action clipping, return normalisation, checkpointed and frozen
normaliser statistics, exact resume mid-rollout, and CartPole learning."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rlblocks.algos.ppo import PPOConfig
from rlblocks.checkpoint import latest_checkpoint, load_checkpoint
from rlblocks.components.evaluator import evaluate
from rlblocks.components.return_normalizer import ReturnNormalizer
from rlblocks.errors import ConfigError
from rlblocks.nets.distributions import CategoricalHead, DiagGaussianHead
from rlblocks.registry import RunOptions, build_agent, get_algo
from rlblocks.run import load_run_agent, resolve_config, resume_run, train

SMALL = {"n_steps": "64", "n_minibatches": "4", "n_epochs": "2"}  # fast Pendulum settings


def _agent(algo: str, env_id: str, overrides=None, total: int = 100_000, seed: int = 0):
    spec = get_algo(algo)
    cfg = resolve_config(spec, env_id, overrides=overrides)
    opts = RunOptions(None, total, eval_every=0, checkpoint_every=0, progress=False, tensorboard=False)
    return build_agent(spec, env_id, cfg, seed, torch.device("cpu"), opts)


# ----------------------------------------------------------------------------- config
def test_defaults_are_baselines_mujoco_set():
    cfg = PPOConfig()
    assert (cfg.n_steps, cfg.n_minibatches, cfg.n_epochs, cfg.gae_lambda, cfg.gamma) == (2048, 32, 10, 0.95, 0.99)
    assert (cfg.lr, cfg.anneal_lr, cfg.clip_range, cfg.ent_coef, cfg.vf_coef) == (3e-4, True, 0.2, 0.0, 0.5)
    assert (cfg.max_grad_norm, cfg.adam_eps, cfg.hidden_sizes, cfg.activation) == (0.5, 1e-5, [64, 64], "tanh")
    assert cfg.normalize_obs and cfg.normalize_reward and not cfg.shared_network
    cfg.validate()


def test_minibatch_divisibility_error_names_the_keys():
    with pytest.raises(ConfigError) as err:
        PPOConfig(n_steps=100, num_envs=3, n_minibatches=32).validate()
    msg = str(err.value)
    assert "n_steps" in msg and "num_envs" in msg and "n_minibatches=32" in msg and "300" in msg
    PPOConfig(n_steps=64, num_envs=3, n_minibatches=32).validate()  # 192 = 32 × 6


def test_bad_values_via_resolve_config():
    with pytest.raises(ConfigError, match="n_minibatches"):
        resolve_config(get_algo("ppo"), "Pendulum-v1", overrides={"n_minibatches": "7"})
    with pytest.raises(ConfigError, match="clip_range"):
        resolve_config(get_algo("ppo"), "Pendulum-v1", overrides={"clip_range": "0"})


# ----------------------------------------------------------------------------- heads
def test_gaussian_head_matches_torch_distributions_and_init():
    torch.manual_seed(0)
    head = DiagGaussianHead(8, 3)
    assert torch.equal(head.log_std.detach(), torch.zeros(3))
    assert torch.allclose(head.mean.weight.norm(dim=1), torch.full((3,), 0.01), atol=1e-6)  # orthogonal, gain 0.01
    with torch.no_grad():
        head.log_std.copy_(torch.tensor([-0.5, 0.0, 0.7]))
    f = torch.randn(5, 8)
    action, log_prob = head.sample(f)
    ref = torch.distributions.Normal(head(f), head.log_std.exp())
    assert torch.allclose(log_prob, ref.log_prob(action).sum(-1), atol=1e-5)
    lp, ent = head.log_prob_entropy(f, action)
    assert torch.allclose(lp, log_prob, atol=1e-5)
    assert torch.allclose(ent, ref.entropy().sum(-1), atol=1e-5)
    assert torch.equal(head.mode(f), head(f))


def test_gaussian_log_prob_gradients_match_autograd():
    from rlblocks.nets.distributions import gaussian_log_prob

    torch.manual_seed(0)
    mean = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    log_std = torch.tensor([-0.5, 0.1, 0.8], dtype=torch.float64, requires_grad=True)
    action = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gaussian_log_prob, (mean, log_std, action))
    ref = torch.distributions.Normal(mean, log_std.exp()).log_prob(action).sum(-1)
    torch.testing.assert_close(gaussian_log_prob(mean, log_std, action), ref)


def _clipped_ppo_loss_autograd(log_prob, value, old_log_prob, old_value, adv, ret, clip, vf_coef, clip_value):
    """Eq. 7 and ppo2's clipped value loss written with autograd, the reference for the fused node."""
    ratio = (log_prob - old_log_prob).exp()
    policy_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1.0 - clip, 1.0 + clip)).mean()
    value_loss = (value - ret).square()
    if clip_value:
        v_clipped = old_value + (value - old_value).clamp(-clip, clip)
        value_loss = torch.max(value_loss, (v_clipped - ret).square())
    value_loss = 0.5 * value_loss.mean()
    return policy_loss + vf_coef * value_loss, policy_loss, value_loss


@pytest.mark.parametrize("clip_value", [True, False])
def test_clipped_ppo_loss_matches_autograd_in_value_and_gradient(clip_value):
    from rlblocks.algos.ppo_loss import clipped_ppo_loss

    torch.manual_seed(0)
    n = 4000
    old_log_prob, old_value = torch.randn(n), torch.randn(n)
    # ratios and value changes on both sides of the clip range, advantages of both signs
    log_prob = (old_log_prob + 0.4 * torch.randn(n)).requires_grad_()
    value = (old_value + 0.4 * torch.randn(n)).requires_grad_()
    adv, ret = torch.randn(n), old_value + torch.randn(n)
    args = (old_log_prob, old_value, adv, ret, 0.2, 0.5, clip_value)
    loss, policy_loss, value_loss, log_ratio = clipped_ppo_loss(log_prob, value, *args)
    ref_loss, ref_policy, ref_value = _clipped_ppo_loss_autograd(log_prob, value, *args)
    ratio = log_ratio.exp()
    assert ((ratio > 1.2) & (adv > 0)).any() and ((ratio < 0.8) & (adv < 0)).any()  # both clip branches bind
    if clip_value:
        assert ((value - old_value).abs() > 0.2).float().mean() > 0.3
    torch.testing.assert_close(torch.stack([loss, policy_loss, value_loss]), torch.stack([ref_loss, ref_policy, ref_value]))
    torch.testing.assert_close(log_ratio, (log_prob - old_log_prob).detach())
    grads = torch.autograd.grad(3.0 * loss, (log_prob, value))
    ref_grads = torch.autograd.grad(3.0 * ref_loss, (log_prob, value))
    for got, want in zip(grads, ref_grads):
        assert got.abs().sum() > 0
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-9)


def test_categorical_head_matches_torch_distributions():
    torch.manual_seed(0)
    head = CategoricalHead(8, 4)
    f = torch.randn(6, 8) * 50  # make the distribution far from uniform
    action, log_prob = head.sample(f)
    assert action.dtype == torch.int64 and action.shape == (6,)
    ref = torch.distributions.Categorical(logits=head(f))
    assert torch.allclose(log_prob, ref.log_prob(action), atol=1e-5)
    lp, ent = head.log_prob_entropy(f, action)
    assert torch.allclose(lp, log_prob, atol=1e-5) and torch.allclose(ent, ref.entropy(), atol=1e-5)
    assert torch.equal(head.mode(f), head(f).argmax(-1))


def test_gaussian_actions_are_clipped_for_the_env_but_stored_raw():
    agent = _agent("ppo", "Pendulum-v1", SMALL)
    try:
        with torch.no_grad():
            agent.policy.net.pi_head.log_std.fill_(1.5)  # std 4.5: most samples leave [-1, 1]
        agent.train(32)
        stored = agent.rollout.buffer.action[:32]
        assert stored.abs().max() > 1.0
        exp, _ = agent.env.step()
        assert exp["action"].abs().max() <= 1.0
        assert torch.equal(exp["action"], exp["extras"]["action"].clamp(-1, 1))
    finally:
        agent.env.close()


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_numpy_acting_equals_torch_acting(activation, one_thread):
    """The CPU acting path (NumPy on views of the parameters) gives the torch path's sample, from
    the same torch RNG draw, after updates (Adam, FlatParameters) and after load_state_dict."""
    agent = _agent("ppo", "Pendulum-v1", {**SMALL, "num_envs": "3", "activation": activation})
    policy = agent.policy
    try:
        assert policy.numpy_acting
        agent.train(3 * 64 * 2)  # two rollouts: two updates, moving normaliser statistics
        assert agent.algo.updates == 2 * 2 * 4

        def both(obs):
            torch.manual_seed(7)
            a_np, _, extras = policy.act(obs, ())
            x_np, raw_np = extras["obs"], extras["action"]
            policy.numpy_acting = False
            torch.manual_seed(7)
            a_t, _, extras = policy.act(obs, ())
            x_t, raw_t = extras["obs"], extras["action"]
            policy.numpy_acting = True
            return (a_np, x_np, raw_np), (a_t, x_t, raw_t)

        obs = agent.env.obs * 3.0  # some features beyond the normaliser's clip
        for ours, theirs in zip(*both(obs)):
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
        state = {k: v.clone() + 0.1 for k, v in policy.net.state_dict().items()}
        policy.load_state_dict({"net": state})
        ours, theirs = both(obs)
        torch.testing.assert_close(ours[2], theirs[2], rtol=1e-5, atol=1e-6)
    finally:
        agent.env.close()


def test_batched_scoring_equals_per_step_scoring_with_truncation_bootstrap(one_thread):
    """PPO.score_rollout computes log pi_old and V for the whole rollout after collection; they
    must equal what the collecting policy gives row by row, and V(final obs) is read exactly
    where an episode was truncated (Pendulum: 200-step time limit, 2 envs × 256 steps)."""
    agent = _agent("ppo", "Pendulum-v1", {"n_steps": "256", "n_minibatches": "4", "n_epochs": "1", "num_envs": "2"})
    seen = {}

    def capture(buf, frac):
        net = agent.policy.net
        with torch.no_grad():
            for name in ("log_prob", "value", "final_value", "advantage", "ret"):
                seen[name] = getattr(buf, name).clone()
            rows = [net.evaluate(buf.obs[t], buf.action[t]) for t in range(buf.n_steps)]
            seen["row_log_prob"] = torch.stack([r[0] for r in rows])
            seen["row_value"] = torch.stack([r[2] for r in rows])
            seen["trunc_value"] = net.value(buf.final_obs[buf.truncated])
        seen["truncated"] = buf.truncated.clone()

    agent.algo.update = capture
    try:
        agent.train(512)
    finally:
        agent.env.close()
    torch.testing.assert_close(seen["log_prob"], seen["row_log_prob"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(seen["value"], seen["row_value"], rtol=1e-5, atol=1e-5)
    trunc = seen["truncated"]
    assert trunc.sum() == 2  # each env's first episode ends at step 200
    torch.testing.assert_close(seen["final_value"][trunc], seen["trunc_value"])
    assert torch.all(seen["final_value"][~trunc] == 0)
    torch.testing.assert_close(seen["ret"], seen["advantage"] + seen["value"])


def test_shared_network_option_trains_one_trunk(one_thread):
    agent = _agent("ppo", "Pendulum-v1", {**SMALL, "shared_network": "true"})
    try:
        net = agent.policy.net
        assert net.n_trunks == 1
        n_params = sum(p.numel() for p in net.parameters())
        assert n_params == (3 * 64 + 64) + (64 * 64 + 64) + (64 + 1 + 1) + (64 + 1)  # trunk, pi head, log-std, v head
        before = [p.detach().clone() for p in net.trunk.parameters()]
        agent.train(64)
        assert agent.algo.updates == 2 * 4
        assert all(not torch.equal(a, p) for a, p in zip(before, net.trunk.parameters()))
    finally:
        agent.env.close()


# ----------------------------------------------------------------------------- return normaliser
def test_return_normalizer_has_vecnormalize_semantics():
    gamma = 0.9
    rn = ReturnNormalizer(num_envs=2, gamma=gamma, enabled=True, clip=10.0)
    rewards = np.array([[1.0, -2.0], [3.0, 0.5], [-1.0, 4.0], [2.0, 2.0]])
    dones = np.array([[False, False], [True, False], [False, False], [False, True]])
    ret, seen = np.zeros(2), []
    for r, d in zip(rewards, dones):
        exp = {"reward": torch.tensor(r, dtype=torch.float32), "terminated": torch.tensor(d),
               "truncated": torch.zeros(2, dtype=torch.bool)}
        rn.process_experience(exp)
        ret = ret * gamma + r
        seen.append(ret.copy())
        ret[d] = 0.0
        all_ret = np.concatenate(seen)
        count = 1e-4 + all_ret.size
        # running stats start at mean 0, var 1, count 1e-4 (baselines' RunningMeanStd)
        mean = all_ret.sum() / count
        var = (1e-4 * 1.0 + ((all_ret - all_ret.mean()) ** 2).sum() + all_ret.mean() ** 2 * 1e-4 * all_ret.size / count) / count
        assert rn.mean == pytest.approx(mean, rel=1e-6)
        assert rn.var == pytest.approx(var, rel=1e-6)
        scaled = rn.scale(exp["reward"])
        assert torch.allclose(scaled, torch.tensor(np.clip(r / math.sqrt(var + 1e-8), -10, 10), dtype=torch.float32))
    assert rn.scale(torch.tensor([1e6, -1e6])).tolist() == [10.0, -10.0]
    off = ReturnNormalizer(2, gamma, enabled=False)
    assert torch.equal(off.scale(torch.tensor([5.0, 6.0])), torch.tensor([5.0, 6.0]))


# ----------------------------------------------------------------------------- checkpoints
def _norm_stats(agent):
    rms = agent.normalizer.rms
    rn = agent.return_normalizer
    return [rms.mean.clone(), rms.var.clone(), rms.count.clone(), torch.tensor([rn.mean, rn.var, rn.count], dtype=torch.float64)]


def test_normalizer_statistics_survive_checkpoint_and_freeze_in_eval(tmp_path, one_thread):
    run = train("ppo", "Pendulum-v1", steps=256, seed=3, run_dir=str(tmp_path / "run"), overrides=dict(SMALL),
                eval_every=0, checkpoint_every=0, device="cpu", progress=False)
    saved = load_checkpoint(latest_checkpoint(run))["modules"]
    assert float(saved["normalizer"]["count"]) > 256  # updated from every training transition
    assert float(saved["return_normalizer"]["stats"][1]) != 1.0

    agent, _ = load_run_agent(run, for_training=False, device="cpu")
    try:
        before = _norm_stats(agent)
        assert torch.equal(before[0], saved["normalizer"]["mean"]) and torch.equal(before[1], saved["normalizer"]["var"])
        assert torch.equal(before[3], saved["return_normalizer"]["stats"])
        returns = evaluate(agent, "Pendulum-v1", 2, seed=0)
        assert len(returns) == 2
        after = _norm_stats(agent)
        assert all(torch.equal(a, b) for a, b in zip(before, after)), "evaluation changed normaliser statistics"
    finally:
        agent.env.close()


def test_resume_mid_rollout_continues_exactly(tmp_path, one_thread):
    # n_steps 64: a checkpoint at 96 steps holds a half-full rollout. The first update (at 64
    # steps) anneals with frac = 1 in both runs, so the 96-step session's horizon does not matter.
    kw = {"seed": 1, "overrides": dict(SMALL), "eval_every": 0, "checkpoint_every": 0, "device": "cpu",
          "progress": False}
    straight = train("ppo-merl", "Pendulum-v1", steps=192, run_dir=str(tmp_path / "a"), **kw)
    split = train("ppo-merl", "Pendulum-v1", steps=96, run_dir=str(tmp_path / "b"), **kw)
    assert (split / "checkpoints" / "step_0000000096" / "rollout.npz").exists()
    resume_run(split, steps=192, device="cpu", progress=False)
    a = load_checkpoint(latest_checkpoint(straight))["modules"]
    b = load_checkpoint(latest_checkpoint(split))["modules"]
    def assert_same(x, y, where):
        if isinstance(x, dict):
            assert x.keys() == y.keys(), where
            for k in x:
                assert_same(x[k], y[k], f"{where}.{k}")
        elif isinstance(x, torch.Tensor):
            assert torch.equal(x, y), f"{where} differs after resume"
        else:
            assert x == y, f"{where} differs after resume"

    for module in ("policy", "aux", "normalizer"):
        assert_same(a[module], b[module], module)
    assert torch.equal(a["return_normalizer"]["stats"], b["return_normalizer"]["stats"])
    assert a["algo"]["updates"] == b["algo"]["updates"] == 3 * 2 * 4


# ----------------------------------------------------------------------------- learning
def _steps_to_reach(seed: int, budget: int = 100_000, threshold: float = 475.0, every: int = 2500):
    """Train PPO with the CartPole preset; evaluate (10 greedy episodes) every ``every`` steps and
    stop at the first score >= ``threshold``."""
    agent = _agent("ppo", "CartPole-v1", total=budget, seed=seed)
    scores = []
    try:
        for steps in range(every, budget + 1, every):
            agent.train(steps)
            score = float(np.mean(evaluate(agent, "CartPole-v1", 10, seed=10_000 + seed)))
            scores.append((steps, round(score, 1)))
            if score >= threshold:
                return steps, scores
    finally:
        agent.env.close()
    return None, scores


@pytest.mark.parametrize("seed", [0, 1])
def test_ppo_solves_cartpole_within_100k_steps(seed, one_thread):
    reached, scores = _steps_to_reach(seed)
    assert reached is not None, f"PPO seed {seed} never reached 475 on CartPole-v1 within 100k steps: {scores}"
