"""Aggregate scores over seeds: point estimates with bootstrap confidence intervals.

What the RL community now reports (Agarwal et al. 2021, "Deep Reinforcement Learning at the Edge of
the Statistical Precipice", NeurIPS; their library ``rliable``): the interquartile mean (IQM, the
mean of the middle 50% of runs) and the mean, each with a 95% percentile-bootstrap interval over
runs. rliable's IQM is ``scipy.stats.trim_mean(x, 0.25)`` and its intervals are percentile
bootstraps; here both come from SciPy directly (``trim_mean``, ``bootstrap(method="percentile")``).
rliable resamples runs within each task ("stratified"); a summary row is one env × algorithm, a
single task, where that is the plain bootstrap over seeds done here.

SciPy is imported when a function is called: it is an optional dependency (the ``plot`` extra).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

#: Interval coverage (rliable's default: 95%).
CONFIDENCE = 0.95
#: Bootstrap resamples (rliable's ``get_interval_estimates`` default). A few ms for tens of seeds.
N_RESAMPLES = 50_000
#: Seed of the resampling, so a table is the same each time it is written.
SEED = 0


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its confidence interval ``[low, high]`` (NaN bounds for fewer than 2 runs)."""

    value: float
    low: float
    high: float


def iqm(scores: Sequence[float] | np.ndarray, axis: int = -1) -> float | np.ndarray:
    """Interquartile mean along ``axis``: the mean after cutting ``int(0.25 n)`` runs from each end
    (``scipy.stats.trim_mean(x, 0.25)``, as rliable); NaN for no runs."""
    from scipy.stats import trim_mean

    x = np.asarray(scores, dtype=float)
    if x.shape[axis] == 0:
        return float("nan")
    out = trim_mean(x, 0.25, axis=axis)
    return float(out) if np.ndim(out) == 0 else out


def _mean(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(scores, axis=axis)


STATISTICS: dict[str, Callable] = {"iqm": iqm, "mean": _mean}


def interval_estimate(scores: Sequence[float] | np.ndarray, statistic: str = "iqm", confidence: float = CONFIDENCE,
                      n_resamples: int = N_RESAMPLES, seed: int = SEED) -> Estimate:
    """``statistic`` (``"iqm"`` or ``"mean"``) of ``scores`` (one per run) with its percentile-bootstrap
    interval: the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the statistic over
    ``n_resamples`` resamples of the runs with replacement (``scipy.stats.bootstrap``), drawn from a
    generator seeded with ``seed``.

    Raises:
        ValueError: an unknown ``statistic``, or non-finite scores.
    """
    from scipy.stats import bootstrap

    if statistic not in STATISTICS:
        raise ValueError(f"statistic {statistic!r} is not one of {', '.join(STATISTICS)}")
    x = np.asarray(scores, dtype=float).reshape(-1)
    if not np.all(np.isfinite(x)):
        raise ValueError("scores must be finite")
    fn = STATISTICS[statistic]
    value = float(fn(x)) if x.size else math.nan
    if x.size < 2:  # one run has no spread to resample
        return Estimate(value, math.nan, math.nan)
    res = bootstrap((x,), fn, n_resamples=n_resamples, vectorized=True, confidence_level=confidence,
                    method="percentile", rng=np.random.default_rng(seed))
    return Estimate(value, float(res.confidence_interval.low), float(res.confidence_interval.high))
