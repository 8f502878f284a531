"""Summary statistics over seeds (rlblocks.aggregate): IQM and mean with percentile-bootstrap
intervals, against values computed by hand and by enumerating every resample."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from rlblocks.aggregate import Estimate, interval_estimate, iqm


def test_iqm_is_the_mean_of_the_middle_half():
    assert iqm(np.arange(1, 9)) == 4.5  # mean of 3, 4, 5, 6
    assert iqm([5, 1, 4, 2, 3]) == 3.0  # int(0.25 * 5) = 1 cut from each end: mean of 2, 3, 4
    assert iqm([1, 2, 3, 100]) == 2.5  # the outlier is cut
    assert iqm([7.0]) == 7.0
    assert math.isnan(iqm([]))


def test_two_runs_interval_spans_them():
    # Resampled pairs of [0, 10] have IQM (= mean for 2 runs) 0, 5 or 10 with probabilities 1/4, 1/2,
    # 1/4: the 2.5% and 97.5% quantiles are the two runs themselves.
    assert interval_estimate([0.0, 10.0], "iqm") == Estimate(5.0, 0.0, 10.0)
    assert interval_estimate([10.0, 0.0], "mean") == Estimate(5.0, 0.0, 10.0)


def test_four_runs_interval_hand_computed():
    x = [1.0, 2.0, 4.0, 8.0]
    # IQM of 4 runs = mean of the middle two; of the data (2 + 4) / 2 = 3. A resample's IQM is the
    # minimum 1 when at least three of its four draws are 1: (1 + 4·3) / 256 = 5.1% > 2.5%, so the
    # lower bound is 1; by symmetry the upper bound is 8.
    assert interval_estimate(x, "iqm") == Estimate(3.0, 1.0, 8.0)
    # Mean 3.75. P(resample mean <= 1.25) = (1 + 4) / 256 = 2.0% and P(<= 1.5) adds the 6 orders of
    # (1, 1, 2, 2): 4.3% > 2.5%, so low = 1.5. P(sum >= 28) = (1 + 4) / 256 = 2.0%, P(sum >= 26) adds the
    # 4 orders of (8, 8, 8, 2): 3.5% > 2.5%, so high = 26 / 4 = 6.5.
    assert interval_estimate(x, "mean") == Estimate(3.75, 1.5, 6.5)


def _exact_interval(x, statistic, confidence=0.95):
    """Quantiles of the statistic over all ``n^n`` equally likely resamples (the bootstrap's limit)."""
    values = np.sort([float(iqm(c)) if statistic == "iqm" else float(np.mean(c))
                      for c in itertools.product(x, repeat=len(x))])
    cdf = np.arange(1, values.size + 1) / values.size
    tail = (1 - confidence) / 2
    return values[np.searchsorted(cdf, tail)], values[np.searchsorted(cdf, 1 - tail)]


@pytest.mark.parametrize("statistic", ["iqm", "mean"])
@pytest.mark.parametrize("x", [[0.0, 1.0, 3.0, 10.0], [0.0, 2.0, 3.0, 7.0, 50.0]])
def test_interval_matches_enumeration_of_all_resamples(x, statistic):
    # For these arrays no step of the exact CDF lies within 0.002 of 2.5% or 97.5%; with 200k
    # resamples (standard error of the quantile's level 0.00035) any seed lands on the exact values.
    low, high = _exact_interval(x, statistic)
    est = interval_estimate(x, statistic, n_resamples=200_000)
    assert (est.low, est.high) == (low, high)


@pytest.mark.parametrize("statistic", ["iqm", "mean"])
def test_interval_contains_the_estimate_and_is_seeded(statistic):
    x = np.random.default_rng(3).normal(100.0, 30.0, size=10)
    est = interval_estimate(x, statistic)
    assert est.low < est.value < est.high
    assert est.value == pytest.approx(iqm(x) if statistic == "iqm" else x.mean())
    assert interval_estimate(x, statistic) == est  # the same table every time
    other = interval_estimate(x, statistic, seed=1)
    assert other.value == est.value and (other.low, other.high) != (est.low, est.high)
    wider = interval_estimate(x, statistic, confidence=0.99)
    assert wider.low <= est.low and wider.high >= est.high


def test_degenerate_and_bad_input():
    one = interval_estimate([3.0])
    assert one.value == 3.0 and math.isnan(one.low) and math.isnan(one.high)
    assert interval_estimate([2.0, 2.0, 2.0]) == Estimate(2.0, 2.0, 2.0)
    with pytest.raises(ValueError, match="finite"):
        interval_estimate([1.0, float("nan")])
    with pytest.raises(ValueError, match="median"):
        interval_estimate([1.0, 2.0], "median")
