"""MERL auxiliary heads: VE and FS targets on hand-built batches, and FS pairs never cross an episode end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlblocks.algos.auxiliary import AuxInputs
from rlblocks.algos.merl import MERLConfig, MERLHeads, cosine_distance, future_obs_targets
from rlblocks.errors import ConfigError
from rlblocks.metrics import explained_variance


def test_explained_variance_hand_computed():
    returns = torch.tensor([1.0, 2.0, 3.0, 4.0])
    old_values = torch.tensor([1.0, 2.0, 3.0, 3.0])
    # Var[R - V] = Var([0, 0, 0, 1]) = 3/16; Var[R] = 5/4 (population variances)
    assert explained_variance(old_values, returns).item() == pytest.approx(1 - (3 / 16) / (5 / 4))
    assert explained_variance(returns, returns).item() == pytest.approx(1.0)
    assert explained_variance(torch.zeros(4), returns).item() == pytest.approx(0.0)
    # an ensemble of predictions [E, B] against one target [B]: one value per member
    both = explained_variance(torch.stack([old_values, returns]), returns)
    assert both.shape == (2,) and both.tolist() == pytest.approx([1 - (3 / 16) / (5 / 4), 1.0])
    # PPO's [T, N] values and returns: variances over every element
    grid = explained_variance(old_values.reshape(2, 2), returns.reshape(2, 2))
    assert grid.shape == () and grid.item() == pytest.approx(1 - (3 / 16) / (5 / 4))
    # constant targets: NaN without a floor (as SB3 logs it), finite with MERL's floor
    flat = torch.ones(4)
    assert explained_variance(old_values, flat).isinf() or explained_variance(old_values, flat).isnan()
    assert explained_variance(flat, flat, min_var=1e-8).item() == pytest.approx(1.0)


def _trajectories(T, N, done_at):
    """``next_obs[t, i] = [episode id, step in episode + 1]``; ``done_at`` = set of (t, i)."""
    terminated = torch.zeros(T, N, dtype=torch.bool)
    next_obs = torch.zeros(T, N, 2)
    for i in range(N):
        episode, k = 0, 0
        for t in range(T):
            k += 1
            next_obs[t, i] = torch.tensor([episode + 100 * i, k])
            if (t, i) in done_at:
                terminated[t, i] = True
                episode, k = episode + 1, 0
    return next_obs, terminated


def test_future_state_targets_hand_built():
    # 2 envs × 5 steps; env 0 ends an episode at t=1, env 1 at t=3 (a truncation).
    next_obs, ended = _trajectories(5, 2, {(1, 0), (3, 1)})
    terminated = ended.clone()
    terminated[3, 1] = False
    truncated = ended & ~terminated

    target, valid = future_obs_targets(next_obs, terminated, truncated, nfs=1)
    assert torch.equal(target, next_obs)  # one step ahead = the true next obs (final obs at an end)
    assert valid.all()

    target, valid = future_obs_targets(next_obs, terminated, truncated, nfs=2)
    # s_{t+2} = next_obs[t+1]: invalid where the episode ended at t, and for the last step.
    expected_valid = torch.tensor([[True, True], [False, True], [True, True], [True, False], [False, False]])
    assert torch.equal(valid, expected_valid)
    assert torch.equal(target[:4], next_obs[1:])
    assert torch.equal(target[0, 0], torch.tensor([0.0, 2.0]))  # same episode, 2 steps later


@pytest.mark.parametrize("nfs", [1, 2, 3, 5])
def test_future_state_pairs_never_cross_an_episode_end(nfs):
    g = torch.Generator().manual_seed(nfs)
    T, N = 40, 3
    done_at = {(t, i) for t in range(T) for i in range(N) if torch.rand((), generator=g) < 0.15}
    next_obs, terminated = _trajectories(T, N, done_at)
    truncated = torch.zeros_like(terminated)
    target, valid = future_obs_targets(next_obs, terminated, truncated, nfs)
    obs_episode = torch.zeros(T, N)  # the episode s_t belongs to
    for i in range(N):
        episode = 100 * i
        for t in range(T):
            obs_episode[t, i] = episode
            if terminated[t, i]:
                episode += 1
    n_valid = 0
    for t in range(T):
        for i in range(N):
            if valid[t, i]:
                n_valid += 1
                assert target[t, i, 0] == obs_episode[t, i], "a future-state pair crosses an episode end"
                assert torch.equal(target[t, i], next_obs[t + nfs - 1, i])
            else:  # masked only when needed: the pair would cross an end or leave the rollout
                crosses = bool(terminated[t:t + nfs - 1, i].any()) or t + nfs - 1 >= T
                assert crosses
    assert n_valid > 0


def test_cosine_distance_masks_rows():
    pred = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    target = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, -1.0]])
    assert cosine_distance(pred, target, torch.tensor([True, True, True])).item() == pytest.approx((0 + 1 + 2) / 3)
    assert cosine_distance(pred, target, torch.tensor([True, False, False])).item() == pytest.approx(0.0)
    assert cosine_distance(pred, target, torch.zeros(3, dtype=torch.bool)).item() == 0.0


def test_heads_loss_on_a_hand_built_batch():
    torch.manual_seed(0)
    cfg = MERLConfig(n_steps=2, num_envs=2, n_minibatches=1)
    heads = MERLHeads(feature_dim=3, obs_dim=2, ve_coef=cfg.ve_coef, fs_coef=cfg.fs_coef, nfs=cfg.nfs)

    class Buf:  # the two fields prepare() reads, plus shape
        size = 4
        next_obs = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [2.0, 0.0]]])
        terminated = torch.tensor([[True, False], [False, False]])
        truncated = torch.zeros(2, 2, dtype=torch.bool)

    heads.prepare(Buf)
    features = torch.randn(4, 3, requires_grad=True)
    ret, old_v = torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([1.0, 2.0, 3.0, 3.0])
    index = torch.tensor([3, 0, 2, 1])
    loss = heads.loss(AuxInputs(features, ret, old_v, None, index))  # as PPO calls it: rollout rows
    ve = 1 - (3 / 16) / (5 / 4)
    ve_loss = (heads.heads.ve(features).squeeze(-1) - ve).square().mean()
    fs_target = Buf.next_obs.view(4, 2)[index]
    fs_loss = (1 - torch.cosine_similarity(heads.heads.fs(features), fs_target, dim=-1)).mean()
    assert loss.item() == pytest.approx(0.5 * ve_loss.item() + 0.01 * fs_loss.item(), rel=1e-5)
    loss.backward()
    assert all(p.grad is not None for p in heads.parameters())
    metrics = heads.pop_metrics()
    assert metrics["ve_loss"] == pytest.approx(ve_loss.item(), rel=1e-5)
    assert metrics["fs_loss"] == pytest.approx(fs_loss.item(), rel=1e-5)


def test_nfs_longer_than_rollout_is_a_config_error():
    with pytest.raises(ConfigError, match="nfs"):
        MERLConfig(n_steps=4, n_minibatches=2, nfs=5).validate()


def test_ppo_merl_agent_updates_heads(one_thread):
    from rlblocks.registry import RunOptions, build_agent, get_algo
    from rlblocks.run import resolve_config

    spec = get_algo("ppo-merl")
    # log_every: no progress row in these 128 steps, so the logger does not take the metrics first
    cfg = resolve_config(spec, "Pendulum-v1", overrides={"n_steps": "64", "n_minibatches": "4", "n_epochs": "2",
                                                         "log_every": "1000"})
    opts = RunOptions(None, 128, eval_every=0, checkpoint_every=0, progress=False, tensorboard=False)
    agent = build_agent(spec, "Pendulum-v1", cfg, 0, torch.device("cpu"), opts)
    try:
        before = [p.detach().clone() for p in agent.aux.parameters()]
        agent.train(128)
        assert agent.algo.updates == 2 * 2 * 4
        assert all(not torch.equal(a, p) for a, p in zip(before, agent.aux.parameters()))
        assert agent.rollout.buffer.next_obs is not None
        metrics = agent.aux.pop_metrics()
        assert all(np.isfinite(v) for v in metrics.values()), metrics
    finally:
        agent.env.close()


# ----------------------------------------------------------------------------- on DDPG/TD3/SAC critics
def test_off_policy_critic_merl_loss_on_a_hand_built_batch():
    """Critic.td_loss with a MERLHeads module beside it: Q loss + 0.5 L_VE + 0.01 L_FS, per member of
    a 2-critic ensemble, VE target from the TD target and the detached Q, FS target the next observation."""
    from rlblocks.agent import Agent
    from rlblocks.algos.off_policy import Critic, OffPolicyConfig
    from rlblocks.buffers.replay import Batch

    torch.manual_seed(0)
    cfg = OffPolicyConfig(hidden_sizes=[8, 8], num_critics=2, merl=True)
    critic = Critic(obs_dim=3, act_dim=2, cfg=cfg, device=torch.device("cpu"))
    merl = MERLHeads(8, 3, cfg.ve_coef, cfg.fs_coef, ensemble_size=2)
    Agent([critic, merl], cfg, torch.device("cpu"))  # setup: the critic finds the auxiliary loss
    assert critic.trainable_parameters()[-4:] == merl.parameters()
    B = 6
    b = Batch(obs=torch.randn(B, 3), action=torch.randn(B, 2), reward=torch.zeros(B), discount=torch.zeros(B),
              next_obs=torch.randn(B, 3))
    target = torch.randn(B)
    loss, q_values = critic.td_loss(b, target, scale=0.5)

    with torch.no_grad():
        x = torch.cat([b.obs, b.action], -1)
        layers = critic.q.net.layers
        h = torch.relu(torch.relu(x @ layers[0].weight + layers[0].bias) @ layers[1].weight + layers[1].bias)  # [2, B, 8]
        q = (h @ layers[2].weight + layers[2].bias).squeeze(-1)
        expected = 0.5 * ((q - target) ** 2).mean(1).sum()
        aux = merl.heads
        for e in range(2):
            ve = 1 - torch.var(target - q[e], unbiased=False) / torch.var(target, unbiased=False)
            ve_pred = (h[e] @ aux.ve.weight[e] + aux.ve.bias[e]).squeeze(-1)
            fs_pred = h[e] @ aux.fs.weight[e] + aux.fs.bias[e]
            cos = (fs_pred * b.next_obs).sum(-1) / (fs_pred.norm(dim=-1) * b.next_obs.norm(dim=-1))
            expected = expected + 0.5 * ((ve_pred - ve) ** 2).mean() + 0.01 * (1 - cos).mean()
    torch.testing.assert_close(q_values, q)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert aux.ve.weight.grad.abs().sum() > 0 and aux.fs.weight.grad.abs().sum() > 0
    assert set(merl.pop_metrics()) == {"ve_loss", "fs_loss"}


def test_off_policy_merl_heads_join_the_critic_optimizer(one_thread):
    from rlblocks.registry import RunOptions, build_agent, get_algo
    from rlblocks.run import resolve_config

    for algo in ("sac", "td3"):
        spec = get_algo(algo)
        cfg = resolve_config(spec, "Pendulum-v1", overrides={"merl": "true", "learning_starts": "50", "batch_size": "32"})
        agent = build_agent(spec, "Pendulum-v1", cfg, 0, torch.device("cpu"),
                            RunOptions(None, 200, eval_every=0, checkpoint_every=0, progress=False, tensorboard=False))
        try:
            assert isinstance(agent.aux, MERLHeads) and "aux" not in agent.critic.state_dict()
            stepped = agent.algo.optimizers()["critic" if algo == "td3" else "adam"].param_groups[0]["params"]
            assert all(any(p is q for q in stepped) for p in agent.aux.parameters())
            before = [p.detach().clone() for p in agent.aux.parameters()]
            # Each update's losses by hand from what the critic hands the heads: per member e,
            # L_VE = mean_B (ve_e(h) - VE_e)^2 with VE_e = 1 - Var[y - Q_e] / Var[y], and
            # L_FS = mean_B (1 - cos(fs_e(h), s')) with s' the replayed next observation; summed over e.
            by_hand, loss = [], agent.aux.loss

            def spy(inputs, heads=agent.aux.heads, loss=loss, by_hand=by_hand):
                with torch.no_grad():
                    h, y, q, s1 = inputs.features, inputs.returns, inputs.values, inputs.next_obs
                    ve = 1 - (y - q).var(-1, unbiased=False) / y.var(unbiased=False)  # [E]
                    ve_pred = (h @ heads.ve.weight + heads.ve.bias).squeeze(-1)  # [E, B]
                    fs_pred = h @ heads.fs.weight + heads.fs.bias  # [E, B, D]
                    cos = (fs_pred * s1).sum(-1) / (fs_pred.norm(dim=-1) * s1.norm(dim=-1))
                    by_hand.append((float((ve_pred - ve[:, None]).square().mean(-1).sum()),
                                    float((1 - cos).mean(-1).sum())))
                return loss(inputs)

            agent.aux.loss = spy
            agent.train(100)
            assert all(not torch.equal(a, p) for a, p in zip(before, agent.aux.parameters()))
            assert len(by_hand) == agent.algo.updates == 100 - 50 + 1
            metrics = agent.aux.pop_metrics()  # the means over the updates since the last row
            ve_mean, fs_mean = np.mean(by_hand, axis=0)
            assert metrics["ve_loss"] == pytest.approx(ve_mean, rel=1e-4)
            assert metrics["fs_loss"] == pytest.approx(fs_mean, rel=1e-4)
        finally:
            agent.env.close()
