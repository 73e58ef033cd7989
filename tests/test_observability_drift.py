"""Page-Hinkley drift detector: exact batching, detection delay and false-alarm rate.

All statistical tests run many seeds at once on the batch axis with fixed seeds; each
tolerance is derived in the comment next to it from the maths in ``policies/drift.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from scipy.stats import binom

from policies.drift import (
    DEFAULT_DELTA,
    DEFAULT_THRESHOLD,
    DOCUMENTED_FALSE_ALARM,
    DOCUMENTED_HORIZON,
    PageHinkley,
    bernoulli_tilt_factor,
    expected_delay,
    false_alarm_arl,
    false_alarm_probability,
    harmonic_difference,
    threshold_for,
)

DELTA = 0.05  # tolerated change
LAMBDA = 20.0  # threshold; small so that false alarms are frequent enough to be measured
SIGMA = 0.5  # sd of a Bernoulli(0.5) reward


def test_harmonic_difference_matches_direct_sums() -> None:
    for n, k in [(0, 1), (0, 40), (1, 1), (7, 13), (1000, 7), (123456, 1000)]:
        direct = math.fsum(1.0 / (n + i) for i in range(1, k + 1))
        assert float(harmonic_difference(n, k)) == pytest.approx(
            direct, rel=1e-12
        )  # series truncation ~1e-14
    # Huge N, tiny k: the log1p form keeps relative precision (psi differences lose ~8 digits).
    assert float(harmonic_difference(1e12, 2)) == pytest.approx(2e-12, rel=1e-9)


def test_a_batch_equals_its_observations_fed_one_by_one() -> None:
    """The batch update is exact for k equal observations (the stated approximation's premise)."""
    rng = np.random.default_rng(7)
    one_by_one = PageHinkley(3, delta=DELTA, threshold=1e9, sigma=1.0, warmup=0)
    batched = PageHinkley(3, delta=DELTA, threshold=1e9, sigma=1.0, warmup=0)
    for _ in range(30):
        k = rng.integers(0, 6, size=3)
        value = rng.random(3)
        for i in range(int(k.max())):
            step = (k > i).astype(float)
            one_by_one.update(step, step * value)
        batched.update(k, k * value)
        np.testing.assert_allclose(
            batched.statistic_up, one_by_one.statistic_up, rtol=1e-10, atol=1e-10
        )
        np.testing.assert_allclose(
            batched.statistic_down, one_by_one.statistic_down, rtol=1e-10, atol=1e-10
        )
        np.testing.assert_allclose(batched.mean, one_by_one.mean, rtol=1e-12)


def test_zero_increments_change_nothing_and_negative_ones_are_rejected() -> None:
    d = PageHinkley(2, delta=DELTA, threshold=LAMBDA, sigma=1.0)
    d.update([5, 5], [4.0, 1.0])
    before = (d.statistic.copy(), d.mean.copy(), d.n.copy())
    d.update([0, 0], [1e-15, 0.0])  # float noise on the sum of an unchanged arm
    np.testing.assert_array_equal(d.statistic, before[0])
    np.testing.assert_array_equal(d.mean, before[1])
    np.testing.assert_array_equal(d.n, before[2])
    with pytest.raises(ValueError, match="reset"):
        d.update([-1, 0], [0.0, 0.0])


def test_warmup_direction_and_reset() -> None:
    """The first ``warmup`` observations only estimate mean and scale; no evidence, no alarm."""
    d = PageHinkley(2, delta=0.0, threshold=1.0, warmup=50, sigma=1.0)
    d.update([10, 10], [0.0, 0.0])
    alarms = d.update([10, 10], [10.0, 0.0])  # arm 0 jumps from 0 to 1 within the warm-up
    assert d.statistic.tolist() == [0.0, 0.0]
    assert not alarms.any() and not d.detected.any()
    d.update([30, 30], [30.0, 0.0])  # ends the warm-up (a straddling batch only warms up)
    assert not d.detected.any()
    # 50 observations at mean 0.8, then ten 1s: PH_up = 50 * 0.2 * (H_60 - H_50) = 1.8
    d.update([10, 10], [10.0, 0.0])
    assert d.detected.tolist() == [True, False]
    assert d.direction.tolist() == [1, 0]
    d.reset(0)
    assert not d.detected.any()
    assert d.n.tolist() == [0.0, 60.0]


def _run_change(
    batch: int, seeds: int = 2000, pre: int = 1000, post: int = 1000
) -> tuple[np.ndarray, int]:
    """Bernoulli 0.5 for ``pre`` observations, then 0.3; returns delays and pre-change alarms."""
    rng = np.random.default_rng(20240611 + batch)
    d = PageHinkley(1, delta=DELTA, threshold=LAMBDA, sigma=1.0, warmup=0, batch_shape=(seeds,))
    pre_alarm = np.zeros(seeds, dtype=bool)
    delay = np.full(seeds, -1.0)
    seen = 0
    while seen < pre + post:
        p = 0.5 if seen < pre else 0.3
        alarm = d.update(float(batch), rng.binomial(batch, p, (seeds, 1)).astype(float))[:, 0]
        seen += batch
        if seen <= pre:
            pre_alarm |= alarm
            d.reset(where=alarm[:, None])
        else:
            delay[alarm & (delay < 0)] = seen - pre
    # A seed with a false alarm before the change restarted with fewer pre-change observations,
    # which changes its expected delay; the delay statistic uses the other seeds.
    return delay[~pre_alarm], int(pre_alarm.sum())


@pytest.mark.parametrize("batch", [1, 10])
def test_detects_a_drop_from_0_5_to_0_3_within_the_predicted_delay(batch: int) -> None:
    delays, _ = _run_change(batch)
    assert (delays > 0).all(), "every seed must detect the change within 1000 observations"
    mean = float(delays.mean())
    se = float(delays.std(ddof=1)) / math.sqrt(delays.size)
    # Fluid limit with the running mean of N=1000 pre-change observations absorbing the new
    # level: change*N*ln(1+D/N) - delta*D = lambda, D = 146.4 (vs lambda/(change-delta) = 133
    # if the mean were frozen). Upper bound: +1 in lambda for the overshoot at the crossing
    # (a step is at most 0.45 < 1), + one batch because alarms are checked at batch ends,
    # + 3 standard errors. Lower bound: the statistic starts from its stationary level, whose
    # mean is about sigma^2 / (2 delta) = 2.5 (diffusion approximation); allowing twice that
    # head start gives lambda - 5, minus 3 standard errors.
    upper = expected_delay(0.2, DELTA, LAMBDA + 1.0, prior_n=1000) + batch + 3 * se
    lower = expected_delay(0.2, DELTA, LAMBDA - 2 * SIGMA**2 / (2 * DELTA), prior_n=1000) - 3 * se
    assert lower <= mean <= upper, (lower, mean, upper)
    assert expected_delay(0.2, DELTA, LAMBDA) == pytest.approx(LAMBDA / 0.15)


@pytest.mark.parametrize("batch", [1, 10])
def test_false_alarm_rate_on_stationary_streams(batch: int) -> None:
    seeds, arms, length = 500, 2, 10_000
    rng = np.random.default_rng(99 + batch)
    d = PageHinkley(arms, delta=DELTA, threshold=LAMBDA, sigma=1.0, warmup=0, batch_shape=(seeds,))
    alarms = 0
    for _ in range(length // batch):
        fired = d.update(float(batch), rng.binomial(batch, 0.5, (seeds, arms)).astype(float))
        alarms += int(fired.sum())
        d.reset(where=fired)  # renewal: count every alarm, not only the first per stream
    observations = seeds * arms * length
    rate_per_10k = alarms / observations * 1e4
    # Siegmund: two-sided ARL(delta=0.05, lambda=20, sigma=0.5) = 93,900 observations, i.e.
    # 0.107 false alarms per 10,000 observations, 106.5 expected alarms here (Poisson, sd 10.3).
    expected = observations / false_alarm_arl(DELTA, LAMBDA, SIGMA)
    # Stated bound: at most 0.2 false alarms per 10,000 observations. Binomial/Poisson margin:
    # at the bound we would expect 200 alarms with sd 14, so 200 + 3 sd = 242.4 can only be
    # exceeded by chance with probability ~0.1% if the true rate were at the bound.
    bound = 0.2 * observations / 1e4
    assert alarms <= bound + 3 * math.sqrt(bound), rate_per_10k
    if batch == 1:
        # Every observation is checked: the rate must match the theory (its approximation
        # error is a few percent at delta/sigma = 0.1; allow 15%) within 3 Poisson sd.
        assert abs(alarms - expected) <= 0.15 * expected + 3 * math.sqrt(expected), (
            alarms,
            expected,
        )
    else:
        # Checking every 10th observation can only miss crossings, never add any.
        assert alarms <= expected + 3 * math.sqrt(expected), (alarms, expected)


# ---- The service's detector: standardised, scale-free, with a documented false-alarm level ----


def _stationary_alarms(
    detector: PageHinkley, draw: Callable[[np.random.Generator], np.ndarray], seed: int
) -> np.ndarray:
    """Feed DOCUMENTED_HORIZON rewards one at a time (every reward is checked: the worst case;
    batches can only miss crossings); returns which streams alarmed."""
    rng = np.random.default_rng(seed)
    for _ in range(DOCUMENTED_HORIZON):
        x = draw(rng)
        detector.update(1.0, x, x * x)
    return detector.detected


def _assert_at_most_documented_level(alarmed: np.ndarray) -> None:
    """Per stream type (last axis) and overall: the alarm count must not exceed the 99.9%
    binomial quantile at the documented probability. If the true probability were at the
    level, a test would fail by chance with probability <= 0.1%; the old raw-unit detector
    alarms on every Gaussian(200, 20) stream, far beyond it."""
    streams = alarmed.shape[0]
    for arm in range(alarmed.shape[-1]):
        count = int(alarmed[:, arm].sum())
        assert count <= binom.ppf(0.999, streams, DOCUMENTED_FALSE_ALARM), (arm, count)
    total = int(alarmed.sum())
    assert total <= binom.ppf(0.999, alarmed.size, DOCUMENTED_FALSE_ALARM), total


def test_false_alarm_level_on_gaussian_streams_of_any_scale() -> None:
    seeds = 250
    means = np.array([200.0, -3e-3, 0.0])
    sds = np.array([20.0, 1e-3, 1.0])  # the reported case, a tiny scale, the unit scale
    detector = PageHinkley(3, batch_shape=(seeds,))
    alarmed = _stationary_alarms(
        detector, lambda rng: rng.normal(means, sds, (seeds, 3)), seed=20250101
    )
    _assert_at_most_documented_level(alarmed)
    # Siegmund predicts false_alarm_probability(...) = 0.52% per stream at the defaults.
    assert false_alarm_probability(DOCUMENTED_HORIZON, DEFAULT_DELTA, DEFAULT_THRESHOLD) < 0.006


def test_false_alarm_level_on_bernoulli_streams_of_any_rate() -> None:
    seeds = 250
    p = np.array([0.5, 0.1, 0.02, 0.002])
    detector = PageHinkley(4, bounds=(0.0, 1.0), batch_shape=(seeds,))
    alarmed = _stationary_alarms(
        detector, lambda rng: (rng.random((seeds, 4)) < p).astype(float), seed=20250102
    )
    _assert_at_most_documented_level(alarmed)


def test_without_the_tilt_correction_rare_successes_alarm_too_often() -> None:
    """The Bernoulli correction is what holds the level: Gaussian-scaled steps on a
    Bernoulli(0.02) stream (known sd) alarm on about 40% of streams within 10^4 rewards."""
    seeds, p = 200, 0.02
    detector = PageHinkley(1, sigma=math.sqrt(p * (1 - p)), batch_shape=(seeds,))
    alarmed = _stationary_alarms(
        detector, lambda rng: (rng.random((seeds, 1)) < p).astype(float), seed=5
    )
    assert int(alarmed.sum()) > binom.ppf(0.999, seeds, DOCUMENTED_FALSE_ALARM)
    assert float(bernoulli_tilt_factor(p, DEFAULT_DELTA)) == pytest.approx(0.5176, abs=1e-3)
    assert float(bernoulli_tilt_factor(0.5, DEFAULT_DELTA)) == 1.0  # lighter tail: capped


def test_scale_free_the_same_stream_in_other_units_gives_the_same_statistic() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(0.0, 1.0, 500)
    a = PageHinkley(1, threshold=1e9)
    b = PageHinkley(1, threshold=1e9)
    for value in x:
        a.update(1.0, [value], [value * value])
        b.update(1.0, [200.0 + 20.0 * value], [(200.0 + 20.0 * value) ** 2])
    np.testing.assert_allclose(a.statistic, b.statistic, rtol=1e-6)
    assert float(a.statistic[0]) > 0.0


def test_detects_half_a_standard_deviation_within_the_predicted_delay() -> None:
    """Gaussian(200, 20) for 2000 rewards, then 210: a change of 0.5 sd."""
    seeds, pre, post = 400, 2000, 1000
    rng = np.random.default_rng(11)
    d = PageHinkley(1, batch_shape=(seeds,))
    delay = np.full(seeds, -1.0)
    pre_alarm = np.zeros(seeds, dtype=bool)
    for t in range(pre + post):
        x = rng.normal(200.0 if t < pre else 210.0, 20.0, (seeds, 1))
        alarm = d.update(1.0, x, x * x)[:, 0]
        if t < pre:
            pre_alarm |= alarm
        else:
            delay[alarm & (delay < 0)] = t + 1 - pre
    delays = delay[~pre_alarm]
    assert (delays > 0).all(), "every seed detects a 0.5 sd change within 1000 rewards"
    mean = float(delays.mean())
    se = float(delays.std(ddof=1)) / math.sqrt(delays.size)
    # Fluid limit in sd units (change 0.5, slack 0.25, running mean of 2000 absorbing the
    # level): about 105 rewards. Bounds as in the Bernoulli delay test: +1 for the overshoot;
    # a head start of twice the stationary mean level 1 / (2 delta) = 2; 3 standard errors;
    # and 5% for the estimated sd (its sampling error at n = 2000 is 1.6%, and 100
    # post-change rewards inflate it by 0.6%).
    upper = 1.05 * expected_delay(0.5, DEFAULT_DELTA, DEFAULT_THRESHOLD + 1, prior_n=pre) + 3 * se
    lower = 0.95 * expected_delay(0.5, DEFAULT_DELTA, DEFAULT_THRESHOLD - 4, prior_n=pre) - 3 * se
    assert lower <= mean <= upper, (lower, mean, upper)


def test_detects_a_bernoulli_rise_from_0_1_to_0_25() -> None:
    seeds, pre, post = 400, 2000, 2000
    rng = np.random.default_rng(12)
    d = PageHinkley(1, bounds=(0.0, 1.0), batch_shape=(seeds,))
    for t in range(pre + post):
        x = (rng.random((seeds, 1)) < (0.1 if t < pre else 0.25)).astype(float)
        d.update(1.0, x, x)
    # A 0.5 sd change; fluid delay about (25 / 0.73) / (0.5 - 0.25) ~ 140 rewards (the tilt
    # factor of p = 0.1 is 0.73), so 2000 rewards leave a wide margin.
    assert int(d.detected.sum()) == seeds


def test_threshold_for_inverts_the_false_alarm_probability() -> None:
    h = threshold_for(0.005, DOCUMENTED_HORIZON, DEFAULT_DELTA)
    assert false_alarm_probability(DOCUMENTED_HORIZON, DEFAULT_DELTA, h) == pytest.approx(0.005)
    assert pytest.approx(h, abs=0.1) == DEFAULT_THRESHOLD
