"""Model-based value expansion: hand-computed STEVE/MVE targets, horizon 0 = TD(0), the world model
fits a linear system, and a run with a world model resumes exactly."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_determinism import PENDULUM, assert_same_run, final_state, train

from rlblocks import run
from rlblocks.algos.sac import SACConfig
from rlblocks.algos.targets import TDTarget
from rlblocks.algos.value_expansion import MVETarget, STEVECovTarget, STEVETarget, TDLambdaTarget
from rlblocks.buffers.replay import Batch
from rlblocks.errors import ConfigError
from rlblocks.models import WorldModel
from rlblocks.registry import RunOptions, build_agent, get_algo

GAMMA, H = 0.9, 3
DELTA = (1.0, 2.0)  # dynamics member m: s' = s + DELTA[m]
CUT = 2.5  # termination members: p = sigmoid(100 (s' - CUT)): terminal once s' > 2.5


def tiny_world_model() -> WorldModel:
    """Two members of each kind, linear (no hidden layer), identity normalisation, set by hand."""
    wm = WorldModel(1, 1, 2, [], [])
    with torch.no_grad():
        for p in wm.parameters():
            p.zero_()
        for m, d in enumerate(DELTA):
            wm.dynamics.layers[0].bias[m] = d
        wm.reward.layers[0].weight[0, 2, 0] = 1.0  # reward member 0: r = s'
        wm.reward.layers[0].bias[1] = 2.0  # reward member 1: r = 2
        wm.termination.layers[0].weight[:, 2, 0] = 100.0
        wm.termination.layers[0].bias[:] = -100.0 * CUT
        for mom in (wm.sa_moments, wm.sas_moments, wm.delta_moments, wm.reward_moments):
            mom.count.fill_(1.0)
            mom.m2.fill_(1.0)
    return wm


class StubAlgo:
    """``target_value``: two Q members ``V_q(s) = (q + 1) s`` at the action ``a = s / 2``."""

    def target_value(self, obs, with_action=False):
        v = torch.stack([obs[:, 0], 2.0 * obs[:, 0]])
        return (v, 0.5 * obs) if with_action else v

    def clip_target(self, y):
        return y


def stub_target(cls, horizon=H, q_samples="members", **extra):
    cfg = SimpleNamespace(horizon=horizon, gamma=GAMMA, q_samples=q_samples, td_lambda=0.25, **extra)
    target = cls(cfg)
    target.agent = SimpleNamespace(algo=StubAlgo(), world_model=SimpleNamespace(model=tiny_world_model()))
    return target


BATCH = Batch(torch.zeros(2, 1), torch.zeros(2, 1), torch.tensor([0.5, -1.0]), torch.tensor([[1.0], [1.0]]),
              torch.tensor([GAMMA, 0.0]))  # second example: a real termination (discount 0)


def hand_candidates(reward: float, discount: float, s1: float) -> list[list[float]]:
    """T[j] = the 8 samples (reward member, Q member, dynamics member) of horizon j, in plain Python."""
    sig = lambda z: 1.0 / (1.0 + math.exp(-z))
    out = [[] for _ in range(H + 1)]
    for r_m, q, m in itertools.product(range(2), range(2), range(2)):
        x, c, partial = s1, 1.0, 0.0
        for j in range(H + 1):
            out[j].append(reward + discount * (partial + GAMMA ** j * c * (q + 1) * x))
            x_next = x + DELTA[m]
            r_hat = x_next if r_m == 0 else 2.0
            partial += GAMMA ** j * c * r_hat
            c *= 1.0 - sig(100.0 * (x_next - CUT))
            x = x_next
    return out


def test_steve_target_equals_hand_computed_inverse_variance_mean():
    target = stub_target(STEVETarget)
    _, y = target(BATCH)
    T = hand_candidates(0.5, GAMMA, 1.0)
    mu = [sum(t) / len(t) for t in T]
    var = [sum((v - m) ** 2 for v in t) / len(t) for t, m in zip(T, mu)]
    w = [1.0 / (v + 1e-8) for v in var]
    expected = sum(wi * mi for wi, mi in zip(w, mu)) / sum(w)
    # the hand numbers show what is being tested: member 1 terminates on its first imagined step
    assert T[1][1] == pytest.approx(0.5 + GAMMA * (3.0 + GAMMA * 0.0))  # r_m 0, q 0, m 1: r̂_0 = 3, then c_1 = 0
    assert y[0].item() == pytest.approx(expected, rel=1e-5)
    assert y[1].item() == pytest.approx(-1.0)  # real termination: every horizon is r
    metrics = target.pop_metrics()
    assert metrics["model_usage"] == pytest.approx(1.0 - metrics["w_0"])
    assert sum(metrics[f"w_{j}"] for j in range(H + 1)) == pytest.approx(1.0)


def test_steve_cov_and_td_lambda_hand_computed():
    T = np.array(hand_candidates(0.5, GAMMA, 1.0))  # [H+1, N]
    mu = T.mean(1)
    cov = (T - mu[:, None]) @ (T - mu[:, None]).T / T.shape[1]
    cov += (1e-6 * np.diag(cov).mean() + 1e-8) * np.eye(H + 1)
    w = np.linalg.solve(cov, np.ones(H + 1))
    _, y = stub_target(STEVECovTarget)(BATCH)
    assert y[0].item() == pytest.approx(float(w @ mu / w.sum()), rel=1e-3)
    lam = 0.25
    _, y = stub_target(TDLambdaTarget)(BATCH)
    assert y[0].item() == pytest.approx(sum((1 - lam) * lam ** j * mu[j] for j in range(H)) + lam ** H * mu[H], rel=1e-5)


def test_mve_td_k_rows_hand_computed():
    """MVE: member 0 only (s' = s + 1, r̂ = s'); q_samples=min gives V = s; the critic batch has the
    real row and H imagined rows, each with its own (H - k)-step target."""
    b_q, y = stub_target(MVETarget, q_samples="min")(Batch(*(x[:1] for x in BATCH)))
    xs = [1.0, 2.0, 3.0, 4.0]  # x_0 = s' ... x_3; termination once s' > 2.5: p_1 = 1
    G3 = xs[3]
    G2 = xs[3] + GAMMA * 0.0 * G3  # step 2 -> 3 terminal (x_3 = 4 > 2.5)
    G1 = xs[2] + GAMMA * 0.0 * G2  # step 1 -> 2 terminal (x_2 = 3 > 2.5)
    G0 = xs[1] + GAMMA * 1.0 * G1
    assert y.tolist() == pytest.approx([0.5 + GAMMA * G0, G0, G1, G2], rel=1e-5)
    assert b_q.obs[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert b_q.action[:, 0].tolist() == [0.0, 0.5, 1.0, 1.5]


def _agent(algo: str, **overrides):
    cfg = get_algo(algo).config_cls(hidden_sizes=[16, 16], learning_starts=10, buffer_size=200, batch_size=8,
                                    wm_pretrain_updates=0, **overrides)
    cfg.check()
    return build_agent(get_algo(algo), "Pendulum-v1", cfg, 0, torch.device("cpu"),
                       RunOptions(progress=False, tensorboard=False))


@pytest.mark.parametrize("algo", ["sac", "td3", "ddpg"])
def test_horizon_zero_equals_td0_target(algo, one_thread):
    agent = _agent(algo, target="steve", horizon=0)
    td = TDTarget()
    td.agent = agent
    b = Batch(torch.randn(8, 3), torch.rand(8, 1) * 2 - 1, torch.randn(8), torch.randn(8, 3),
              torch.tensor([0.99, 0.0] * 4))
    with torch.no_grad():
        torch.manual_seed(1)
        _, y_steve = agent.target(b)
        torch.manual_seed(1)
        _, y_td = td(b)
    assert torch.equal(y_steve, y_td)


def test_world_model_fits_a_linear_system(one_thread):
    torch.manual_seed(0)
    A = torch.tensor([[0.9, 0.2, 0.0], [-0.1, 0.8, 0.3], [0.0, 0.1, 0.95]])
    Bm = torch.tensor([[0.5, 0.0], [0.0, 1.0], [0.3, -0.2]])
    c = torch.tensor([1.0, -2.0, 0.5, 0.3, 0.7, 0.0, 0.0, 0.0])
    wm = WorldModel(3, 2, 2, [64, 64], [64])
    opt = torch.optim.Adam(wm.parameters(), lr=3e-3)

    def data(n):
        s, a = torch.randn(2, n, 3), torch.rand(2, n, 2) * 2 - 1
        s1 = s @ A.T + a @ Bm.T
        return s, a, torch.cat([s, a, s1], -1) @ c, s1, torch.zeros(2, n)

    for _ in range(1500):
        loss, _ = wm.loss(*data(128))
        opt.zero_grad()
        loss.backward()
        opt.step()
    s, a, r, s1, _ = data(500)
    with torch.no_grad():
        pred = wm.step(s, a)
        r_hat = wm.predict_reward(s.flatten(0, 1), a.flatten(0, 1), s1.flatten(0, 1)).view(2, 2, 500)
        p = wm.termination_prob(s.flatten(0, 1), a.flatten(0, 1), s1.flatten(0, 1))
    delta = s1 - s
    assert ((pred - s1).square().mean() / delta.square().mean()).item() < 0.01  # < 1% of the delta's power
    rel_r = (r_hat - r[None]).square().mean() / r.var()
    assert rel_r.item() < 0.01 and p.max().item() < 0.01


def test_mve_at_horizon_zero_is_a_config_error():
    with pytest.raises(ConfigError, match="mve needs horizon"):
        SACConfig(target="mve", horizon=0).check()


def test_resume_with_world_model_is_exact(tmp_path, one_thread):
    config = {**PENDULUM, "target": "steve", "horizon": "2", "wm_pretrain_updates": "20", "wm_batch_size": "16",
              "wm_dynamics_hidden": "32,32", "wm_reward_hidden": "16", "hidden_sizes": "16,16"}
    full = train("td3", "Pendulum-v1", tmp_path / "full", 800, config)
    part = train("td3", "Pendulum-v1", tmp_path / "part", 400, config)
    state, _ = final_state(part, 400)
    assert state["modules"]["world_model"]["updates"] == 20 + 201
    run.resume_run(part, 800, device="cpu", progress=False)
    assert_same_run(full, part, 800)


def test_toy_demo_reproduces_the_papers_ordering(tmp_path, capsys):
    """Noisy model: STEVE's Q error below MVE's (whose model bias never goes away) and no worse
    than Q-learning's (Buckman et al. 2018, Fig. 1)."""
    from rlblocks.cli import main

    assert main(["toy-demo", "--out", str(tmp_path), "--steps", "4000", "--trials", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    final = {name: float(v) for name, v in (line.split() for line in lines[:5])}
    assert list(final) == ["q_learning", "mve_oracle", "mve_noisy", "steve_oracle", "steve_noisy"]
    assert final["steve_noisy"] < final["mve_noisy"]
    assert final["steve_noisy"] <= final["q_learning"]
    assert final["mve_oracle"] < final["q_learning"]  # an exact model only helps
    header = (tmp_path / "toy_demo.csv").read_text().splitlines()[0]
    assert header == "update,q_learning,mve_oracle,mve_noisy,steve_oracle,steve_noisy"
