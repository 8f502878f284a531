"""``rlblocks toy-demo``: STEVE's 100-state chain (Buckman et al. 2018, arXiv 1807.01675, Sec. 5, Fig. 1).

A chain of states ``0..100`` and a terminal state 101; every step moves right. Reward ``-1`` per
step, ``+100`` on the step into the terminal state, so the true value is ``V(s) = s`` (gamma = 1).
Tabular policy evaluation from uniformly replayed states, the tables initialised to random
integers in ``[0, 101)``. Methods (the paper's):

* ``q_learning``: one table, ``Q(s) <- r + Q(s')``, one update per step.
* ``mve_*``: 8 tables; each step every member updates one random state to the ``H = 5``-step
  model-based target ``r + sum_k r̂_k + mean_q Q_q(x_H)``, averaged over the model rollouts.
* ``steve_*``: the same tables and rollouts, target = the inverse-variance weighted mean of the
  candidates ``T_j = r + sum_{k<j} r̂_k + Q_q(x_j)``, ``j = 0..H`` (Eq. 7), variance over
  (model rollout × Q member) samples.
* ``*_oracle``: the true dynamics (one rollout); ``*_noisy``: 8 rollouts of a model that jumps
  to a uniformly random state with probability 0.1 (rewards as the true step's).

The error after each step is ``mean_s (mean_q Q_q(s) - s)^2``, averaged over trials. All methods
of a trial are vectorised over trials and ensemble members (members update simultaneously; the
paper's script updates them one after another within a step).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from rlblocks.errors import ConfigError

STATES = 101  # nonterminal states 0..100
TERMINAL = STATES  # 101
METHODS = ("q_learning", "mve_oracle", "mve_noisy", "steve_oracle", "steve_noisy")


def true_step(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Next states and rewards of the chain (the terminal state loops with reward 0)."""
    nxt = np.where(s == TERMINAL, TERMINAL, s + 1)
    reward = np.where(s == TERMINAL, 0.0, np.where(s + 1 == TERMINAL, float(STATES - 1), -1.0))
    return nxt, reward


def noisy_step(s: np.ndarray, rng: np.random.Generator, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """The noisy model: the true step, but with probability ``noise`` a jump to a random nonterminal state."""
    nxt, reward = true_step(s)
    jump = (rng.random(s.shape) < noise) & (s != TERMINAL)
    return np.where(jump, rng.integers(0, STATES, s.shape), nxt), reward


def run_method(method: str, steps: int, trials: int, rng: np.random.Generator, horizon: int = 5,
               ensemble: int = 8, noise: float = 0.1) -> np.ndarray:
    """Q error after each step, ``[steps, trials]``."""
    nq = 1 if method == "q_learning" else ensemble
    nm = ensemble if method.endswith("noisy") else 1
    Q = rng.integers(0, STATES, (trials, nq, STATES + 1)).astype(np.float64)
    Q[..., TERMINAL] = 0.0
    ti, mi = np.arange(trials)[:, None], np.arange(nq)[None, :]
    truth = np.arange(STATES, dtype=np.float64)
    errors = np.empty((steps, trials))
    for t in range(steps):
        s = rng.integers(0, STATES, (trials, nq))  # one replayed state per member
        s1, r0 = true_step(s)
        if method == "q_learning":
            target = r0 + Q[ti, mi, s1]
        else:
            Qt = Q.transpose(0, 2, 1)  # [trials, states, nq]: Q of every member at a state
            x = np.repeat(s1[..., None], nm, -1)  # rollouts [trials, nq, nm]
            ret = np.repeat(r0[..., None], nm, -1)
            cands = [ret[..., None] + Qt[ti[..., None], x]]  # T_0 [trials, nq, nm, nq']
            for _ in range(horizon):
                x, r = noisy_step(x, rng, noise) if nm > 1 else true_step(x)
                ret = ret + r
                cands.append(ret[..., None] + Qt[ti[..., None], x])
            T = np.stack(cands).reshape(horizon + 1, trials, nq, nm * nq)  # samples: (rollout, Q member)
            mu = T.mean(-1)
            if method.startswith("mve"):
                target = mu[-1]
            else:  # STEVE, Eq. 7: w_j ∝ 1 / (var_j + 1e-8)
                w = 1.0 / (T.var(-1) + 1e-8)
                target = (w * mu).sum(0) / w.sum(0)
        Q[ti, mi, s] = target
        errors[t] = np.square(Q[..., :STATES].mean(1) - truth).mean(-1)
    return errors


def check_arguments(out: str | Path, steps: int, trials: int, seed: int, every: int) -> None:
    """Raise :class:`~rlblocks.errors.ConfigError` (one line naming the flag and the fix) unless
    ``steps``, ``trials`` and ``every`` are positive integers, ``seed`` is a non-negative one (NumPy's
    seed sequences take no negative entries) and neither ``out`` nor a folder above it is a file."""
    for flag, value, low, fix in (("--steps", steps, 1, "the paper: --steps 10000"),
                                  ("--trials", trials, 1, "the paper: --trials 10"),
                                  ("--seed", seed, 0, "e.g. --seed 0"), ("every", every, 1, "e.g. every=10")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ConfigError(f"toy-demo {flag} {value!r} must be an integer >= {low} ({fix})")
    path = Path(out).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"toy-demo --out {out}: {existing} is a file; give a directory for toy_demo.csv and "
                          "toy_demo.png")


def toy_demo(out: str | Path, steps: int = 10_000, trials: int = 10, seed: int = 0, every: int = 10,
             plot: bool = True) -> dict[str, float]:
    """Run every method; writes ``out/toy_demo.csv`` (update, then the mean error of each method
    every ``every`` updates and after the last) and ``out/toy_demo.png``; returns the final mean
    error per method.

    Raises:
        ConfigError: a bad argument (see :func:`check_arguments`), before ``out`` is created or touched.
    """
    check_arguments(out, steps, trials, seed, every)
    out = Path(out)
    curves = {}
    for i, method in enumerate(METHODS):
        curves[method] = run_method(method, steps, trials, np.random.default_rng([seed, i])).mean(1)
    out.mkdir(parents=True, exist_ok=True)  # after the work: an interrupted demo leaves no empty directory
    rows = [*range(every - 1, steps - 1, every), steps - 1]  # the last update always: the returned errors
    with open(out / "toy_demo.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["update", *METHODS])
        for t in rows:
            writer.writerow([t + 1, *(f"{curves[m][t]:.6g}" for m in METHODS)])
    if plot:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            plot = False
    if plot:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for m in METHODS:
            ax.plot(np.arange(1, steps + 1), curves[m], label=m, linestyle=":" if m.endswith("noisy") else "-")
        ax.set(xlabel="updates", ylabel="Q error (mean squared)", yscale="log", title="STEVE toy chain (100 states)")
        ax.set_ylim(bottom=1e-3)  # exact convergence (error 0) would stretch a log axis
        ax.legend()
        fig.savefig(out / "toy_demo.png", dpi=120, bbox_inches="tight")
        plt.close(fig)
    return {m: float(curves[m][-1]) for m in METHODS}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="toy_demo", help="directory for toy_demo.csv and toy_demo.png")
    p.add_argument("--steps", type=int, default=10_000, help="updates per trial (paper: 10,000)")
    p.add_argument("--trials", type=int, default=10, help="independent trials averaged (paper: 10)")
    p.add_argument("--seed", type=int, default=0)


def cli(args: argparse.Namespace) -> int:
    for method, error in toy_demo(args.out, args.steps, args.trials, args.seed).items():
        print(f"{method} {error:.4g}")
    print(f"csv {Path(args.out) / 'toy_demo.csv'}")
    return 0
