"""Networks: batched ensembles against per-member plain computations, the squashed Gaussian's
log-probability against torch.distributions, Polyak averaging and running mean/std."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, TransformedDistribution
from torch.distributions.transforms import TanhTransform

from rlblocks.nets import (
    DeterministicActor,
    EnsembleLinear,
    EnsembleMLP,
    QEnsemble,
    RunningMeanStd,
    SquashedGaussianActor,
    mlp,
    polyak_update,
    target_copy,
)


def member_mlp(net: EnsembleMLP, e: int, x: torch.Tensor, layer_norm: bool = False) -> torch.Tensor:
    """Member ``e`` of an ensemble computed as a plain MLP: ``relu(x W_e + b_e)`` per layer."""
    h = x
    for i, layer in enumerate(net.layers):
        h = h @ layer.weight[e] + layer.bias[e, 0]
        if i < len(net.layers) - 1:
            if layer_norm:
                h = F.layer_norm(h, h.shape[-1:])
            h = torch.relu(h)
    return h


# ---------------------------------------------------------------------------- EnsembleLinear
@pytest.mark.parametrize("out_features", [5, 1])  # 1 = the multiply-and-sum fast path
def test_ensemble_linear_equals_per_member_matmul(out_features):
    torch.manual_seed(0)
    layer = EnsembleLinear(3, 4, out_features)
    assert layer.weight.shape == (3, 4, out_features) and layer.bias.shape == (3, 1, out_features)
    bound = 1 / 4 ** 0.5
    assert layer.weight.abs().max() <= bound and layer.bias.abs().max() <= bound
    x = torch.randn(3, 7, 4)
    y = layer(x)
    assert y.shape == (3, 7, out_features)
    for e in range(3):
        torch.testing.assert_close(y[e], x[e] @ layer.weight[e] + layer.bias[e], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(y[e], F.linear(x[e], layer.weight[e].T, layer.bias[e, 0]), rtol=1e-6, atol=1e-6)


def test_ensemble_linear_fast_path_equals_baddbmm_with_gradients():
    torch.manual_seed(1)
    layer = EnsembleLinear(4, 6, 1)
    x = torch.randn(4, 9, 6, requires_grad=True)
    y = layer(x)
    gy = torch.randn_like(y)
    gx, gw, gb = torch.autograd.grad(y, (x, layer.weight, layer.bias), gy)

    x2 = x.detach().clone().requires_grad_(True)
    w2, b2 = layer.weight.detach().clone().requires_grad_(True), layer.bias.detach().clone().requires_grad_(True)
    ref = torch.baddbmm(b2, x2, w2)
    rgx, rgw, rgb = torch.autograd.grad(ref, (x2, w2, b2), gy)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gx, rgx, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gw, rgw, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gb, rgb, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- EnsembleMLP / QEnsemble
@pytest.mark.parametrize("layer_norm", [False, True])
def test_ensemble_mlp_equals_per_member_mlps(layer_norm):
    torch.manual_seed(2)
    net = EnsembleMLP(3, 5, [8, 6], 2, layer_norm=layer_norm)
    x = torch.randn(11, 5)  # shared input
    y = net(x)
    assert y.shape == (3, 11, 2)
    for e in range(3):
        torch.testing.assert_close(y[e], member_mlp(net, e, x, layer_norm), rtol=1e-5, atol=1e-6)
    xe = torch.randn(3, 11, 5)  # one input per member
    ye = net(xe)
    for e in range(3):
        torch.testing.assert_close(ye[e], member_mlp(net, e, xe[e], layer_norm), rtol=1e-5, atol=1e-6)


def test_ensemble_members_are_independent():
    torch.manual_seed(3)
    net = EnsembleMLP(2, 3, [4], 1)
    x = torch.randn(5, 3)
    net(x)[0].sum().backward()
    for layer in net.layers:
        assert layer.weight.grad[0].abs().sum() > 0
        assert torch.all(layer.weight.grad[1] == 0) and torch.all(layer.bias.grad[1] == 0)


def test_q_ensemble_equals_per_member_computation():
    torch.manual_seed(4)
    q = QEnsemble(obs_dim=3, act_dim=2, hidden_sizes=[16, 16], ensemble_size=3)
    assert q.ensemble_size == 3
    obs, act = torch.randn(10, 3), torch.randn(10, 2)
    out = q(obs, act)
    assert out.shape == (3, 10)
    sa = torch.cat([obs, act], -1)
    for e in range(3):
        torch.testing.assert_close(out[e], member_mlp(q.net, e, sa)[:, 0], rtol=1e-5, atol=1e-6)


def test_q_ensemble_members_slice():
    torch.manual_seed(5)
    q = QEnsemble(3, 2, [16, 16], ensemble_size=3)
    obs, act = torch.randn(6, 3), torch.randn(6, 2)
    full = q(obs, act)
    first = q(obs, act, members=slice(0, 1))
    assert first.shape == (1, 6)
    torch.testing.assert_close(first[0], full[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(q(obs, act, members=slice(1, 3)), full[1:], rtol=0, atol=1e-6)
    # gradients of member 0 only
    first.sum().backward()
    w = q.net.layers[0].weight.grad
    assert w[0].abs().sum() > 0 and torch.all(w[1:] == 0)


def test_detach_params_gives_input_gradients_only():
    torch.manual_seed(6)
    q = QEnsemble(3, 2, [16, 16], ensemble_size=2)
    obs = torch.randn(8, 3)
    act = torch.randn(8, 2, requires_grad=True)
    out = q(obs, act, detach_params=True)
    torch.testing.assert_close(out, q(obs, act), rtol=0, atol=0)
    out.sum().backward()
    g_detached = act.grad
    assert all(p.grad is None for p in q.parameters()), "detach_params=True built parameter gradients"
    act2 = act.detach().clone().requires_grad_(True)
    q(obs, act2).sum().backward()
    torch.testing.assert_close(g_detached, act2.grad, rtol=1e-6, atol=1e-7)
    assert g_detached.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in q.parameters())
    # detach_params with a member slice (TD3's actor loss on Q_1)
    q.zero_grad(set_to_none=True)
    act3 = act.detach().clone().requires_grad_(True)
    q(obs, act3, detach_params=True, members=slice(0, 1)).sum().backward()
    assert all(p.grad is None for p in q.parameters())
    act4 = act.detach().clone().requires_grad_(True)
    q(obs, act4)[0].sum().backward()
    torch.testing.assert_close(act3.grad, act4.grad, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------- actors
def test_squashed_gaussian_log_prob_matches_torch_distributions():
    torch.manual_seed(7)
    actor = SquashedGaussianActor(4, 3, [32, 32]).double()
    with torch.no_grad():  # spread the means and stds so the squashing matters
        actor.net[-1].weight.mul_(8.0)
        actor.net[-1].bias.mul_(4.0)
    obs = torch.randn(64, 4, dtype=torch.float64)

    torch.manual_seed(99)
    action, log_prob = actor.sample(obs)
    torch.manual_seed(99)
    mean, log_std = actor(obs)
    eps = torch.randn_like(mean)  # the same noise sample() drew
    u = mean + log_std.exp() * eps
    assert action.shape == (64, 3) and log_prob.shape == (64,)
    torch.testing.assert_close(action, torch.tanh(u))
    assert action.abs().max() < 1

    tanh = TanhTransform(cache_size=1)
    dist = TransformedDistribution(Normal(mean, log_std.exp()), [tanh])
    y = tanh(u)  # cached, so log_prob uses u itself instead of atanh(y)
    expected = dist.log_prob(y).sum(-1)
    torch.testing.assert_close(log_prob, expected, rtol=1e-7, atol=1e-7)
    # also the textbook formula with log(1 - tanh^2) (SAC paper, Eq. 26), away from saturation
    ok = u.abs().max(-1).values < 5
    assert ok.sum() > 10
    textbook = Normal(mean, log_std.exp()).log_prob(u).sum(-1) - torch.log(1 - torch.tanh(u) ** 2).sum(-1)
    torch.testing.assert_close(log_prob[ok], textbook[ok], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(actor.mode(obs), torch.tanh(mean))


def test_squashed_gaussian_log_std_is_clamped_and_sample_is_reparameterised():
    torch.manual_seed(8)
    actor = SquashedGaussianActor(2, 1, [8])
    with torch.no_grad():
        actor.net[-1].bias.copy_(torch.tensor([0.0, 50.0]))  # log_std far above LOG_STD_MAX
    _, log_std = actor(torch.zeros(3, 2))
    assert torch.all(log_std == 2.0)
    action, log_prob = actor.sample(torch.randn(5, 2))
    (action.sum() + log_prob.sum()).backward()
    assert actor.net[0].weight.grad.abs().sum() > 0


def test_deterministic_actor_and_mlp():
    torch.manual_seed(9)
    net = mlp(3, [5, 4], 2)
    assert [type(m).__name__ for m in net] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert [m.out_features for m in net if isinstance(m, torch.nn.Linear)] == [5, 4, 2]
    actor = DeterministicActor(3, 2, [5, 4])
    x = torch.randn(6, 3)
    torch.testing.assert_close(actor(x), torch.tanh(actor.net(x)))


# ---------------------------------------------------------------------------- target networks
def test_polyak_update_and_target_copy():
    torch.manual_seed(10)
    net = QEnsemble(3, 1, [8], 2)
    target = target_copy(net)
    assert all(not p.requires_grad for p in target.parameters())
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    before = [p.clone() for p in target.parameters()]
    online = list(net.parameters())
    polyak_update(list(target.parameters()), online, 0.1)
    for t, b, p in zip(target.parameters(), before, online):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * p.detach(), rtol=1e-6, atol=1e-7)
        assert not torch.equal(t, b)
    polyak_update(list(target.parameters()), online, 1.0)
    for t, p in zip(target.parameters(), online):
        torch.testing.assert_close(t, p.detach(), rtol=0, atol=1e-7)


# ---------------------------------------------------------------------------- RunningMeanStd
def test_running_mean_std_matches_numpy():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 4)) * [1, 10, 0.1, 1] for n in (50, 1, 300, 17)]
    rms = RunningMeanStd((4,))
    for b in batches:
        rms.update(torch.as_tensor(b, dtype=torch.float32))
    data = np.concatenate([b.astype(np.float32).astype(np.float64) for b in batches])
    assert rms.mean.dtype == torch.float64
    # exact: the initial (mean 0, var 1, count 1e-4) acts as a pseudo-sample of weight 1e-4
    c0, n = 1e-4, len(data)
    mean = data.sum(0) / (n + c0)
    var = (c0 * 1.0 + (data ** 2).sum(0)) / (n + c0) - mean ** 2
    np.testing.assert_allclose(rms.mean.numpy(), mean, rtol=1e-10)
    np.testing.assert_allclose(rms.var.numpy(), var, rtol=1e-8)
    assert float(rms.count) == pytest.approx(n + c0)
    # and, to within the pseudo-count, numpy's plain statistics
    np.testing.assert_allclose(rms.mean.numpy(), data.mean(0), rtol=1e-5)
    np.testing.assert_allclose(rms.var.numpy(), data.var(0), rtol=1e-5)

    x = torch.as_tensor(batches[0], dtype=torch.float32)
    expected = np.clip((batches[0] - mean) / np.sqrt(var + 1e-8), -10, 10)
    np.testing.assert_allclose(rms(x).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_running_mean_std_clip_frozen_and_state_dict():
    rms = RunningMeanStd((2,), clip=0.5)
    rms.update(torch.tensor([[0.0, 0.0], [2.0, 4.0]]))
    out = rms(torch.tensor([[100.0, -100.0]]))
    assert out.tolist() == [[0.5, -0.5]]

    snapshot = {k: v.clone() for k, v in rms.state_dict().items()}
    assert set(snapshot) == {"mean", "var", "count"}
    rms.frozen = True
    rms.update(torch.randn(10, 2) * 50)
    for k, v in rms.state_dict().items():
        assert torch.equal(v, snapshot[k]), f"frozen statistics changed: {k}"

    other = RunningMeanStd((2,), clip=0.5)
    other.load_state_dict(snapshot)
    for k, v in other.state_dict().items():
        assert torch.equal(v, snapshot[k])
    x = torch.randn(4, 2)
    torch.testing.assert_close(other(x), rms(x), rtol=0, atol=0)
    # the restored one keeps updating exactly like the original would
    rms.frozen = False
    batch = torch.randn(7, 2)
    rms.update(batch)
    other.update(batch)
    for k in snapshot:
        assert torch.equal(rms.state_dict()[k], other.state_dict()[k])


def test_tanh_layer_matches_autograd_tanh_baddbmm_in_value_and_gradient():
    from rlblocks.nets.activations import tanh_layer

    torch.manual_seed(0)
    # below and above the size where the fused sigmoid path is taken; x shared (expanded) or per member
    for rows, in_dim, expand in [(3, 4, True), (512, 17, True), (512, 64, False)]:
        obs = torch.randn(rows, in_dim) * 3
        x = obs.expand(2, rows, in_dim) if expand else torch.randn(2, rows, in_dim, requires_grad=True)
        w = (torch.randn(2, in_dim, 64) / in_dim ** 0.5).requires_grad_()
        b = torch.randn(2, 1, 64).requires_grad_()
        g = torch.randn(2, rows, 64)
        inputs = [w, b] if expand else [x, w, b]
        y_fast, y_ref = tanh_layer(x, w, b), torch.tanh(torch.baddbmm(b, x, w))
        torch.testing.assert_close(y_fast, y_ref, rtol=0, atol=5e-7)
        for got, want in zip(torch.autograd.grad(y_fast, inputs, g), torch.autograd.grad(y_ref, inputs, g)):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)  # sums over 512 rows of ~1e-7 differences
    big = torch.full((2, 512, 64), 50.0)
    eye = torch.eye(64).expand(2, 64, 64)
    assert tanh_layer(big, eye, torch.zeros(2, 1, 64)).eq(1.0).all()  # saturates exactly, no overflow
    assert tanh_layer(-big, eye, torch.zeros(2, 1, 64)).eq(-1.0).all()


def test_running_mean_std_torch_formula_matches_numpy_path():
    """The CPU update runs in NumPy; off CPU the same Chan update runs in torch (``_combine``).
    CI has no GPU, so the torch formula is checked here against the NumPy path directly."""
    from rlblocks.nets.normalizer import RunningMeanStd

    torch.manual_seed(0)
    numpy_path, torch_path = RunningMeanStd((5,)), RunningMeanStd((5,))
    for n in [8, 8, 1, 3, 8]:
        x = torch.randn(n, 5) * 2 + 1
        numpy_path.update(x)
        x64 = x.double()
        torch_path._combine(x64.mean(0), x64.var(0, unbiased=False), n, torch_path.mean, torch_path.var, torch_path.count)
        torch_path._refresh()
    for name in ("mean", "var", "count", "_mean32", "_inv_std32"):
        torch.testing.assert_close(getattr(torch_path, name), getattr(numpy_path, name))
    assert numpy_path.count.item() == pytest.approx(28 + 1e-4)
