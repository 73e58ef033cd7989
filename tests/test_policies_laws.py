"""Policies: the sampled laws match ``probabilities``, and the numerics are as exact as claimed.

Statistical checks use fixed seeds and critical values from the null distribution at level
1e-6 (chi-square) or 4.5 binomial sigmas (two-sided p ~ 7e-6 per arm), so a correct
implementation passes with certainty for these seeds while a wrong law of a few percent
fails: with 40,000 draws one sigma on a probability p is sqrt(p(1-p)/40000) <= 0.0025.
"""

from __future__ import annotations

import random
from decimal import Decimal, localcontext

import numpy as np
import pytest
from scipy import integrate, special
from scipy import stats as sps

from policies import POLICY_NAMES, Policy, ScalarStats, Stats, create_policy
from policies.base import PolicyConfigError
from policies.controls import (
    check_floor,
    controlled_probabilities,
    floor_probabilities,
    floor_probabilities_one,
    select_controlled,
    select_one_controlled,
)
from policies.gaussian_thompson import student_t_variate
from policies.kl_ucb import kl_ucb_index, kl_ucb_index_one
from policies.thompson import beta_variate

DRAWS = 40_000
CHI2_LEVEL = 1e-6
SIGMAS = 4.5

# Bernoulli-style states (sum <= n) that leave several arms with real probability; the mask
# makes arm 3 ineligible; arm 4 is unplayed.
BERNOULLI = Stats(
    np.array([10.0, 100.0, 30.0, 5.0, 0.0]),
    np.array([3.0, 50.0, 20.0, 1.0, 0.0]),
    np.array([3.0, 50.0, 20.0, 1.0, 0.0]),
)
# Continuous rewards for Gaussian TS: similar means, different spreads.
CONTINUOUS = Stats(
    np.array([20.0, 5.0, 50.0, 3.0, 8.0]),
    np.array([20.0 * 1.0, 5.0 * 1.3, 50.0 * 1.1, 3.0 * 2.0, 8.0 * 0.9]),
    np.array([20.0 * 2.0, 5.0 * 5.0, 50.0 * 1.3, 3.0 * 5.0, 8.0 * 4.0]),
)
MASK = np.array([True, True, True, False, True])
ELIGIBLE = [0, 1, 2, 4]
# A state with ties in the UCB / greedy index, so tie-breaking is exercised.
TIED = Stats(
    np.array([4.0, 4.0, 8.0, 4.0, 2.0]),
    np.array([2.0, 2.0, 2.0, 2.0, 0.0]),
    np.array([2.0, 2.0, 2.0, 2.0, 0.0]),
)


def _state(name: str) -> Stats:
    return CONTINUOUS if name == "gaussian_thompson" else BERNOULLI


def _check_counts(counts: np.ndarray, probs: np.ndarray) -> None:
    """Chi-square goodness of fit over positive-probability arms; zero-probability arms: 0."""
    total = counts.sum()
    assert counts[probs == 0].sum() == 0
    live = probs > 0
    expected = total * probs[live]
    statistic = float(((counts[live] - expected) ** 2 / expected).sum())
    dof = int(live.sum()) - 1
    if dof > 0:
        assert statistic < sps.chi2.ppf(1 - CHI2_LEVEL, dof), (counts, expected)
    sigma = np.sqrt(total * probs * (1 - probs))
    assert np.all(np.abs(counts - total * probs) <= SIGMAS * sigma + 1e-9), (counts, probs)


def _batch(stats: Stats, runs: int) -> Stats:
    return Stats(
        *(
            np.broadcast_to(x, (runs, stats.n_arms)).copy()
            for x in (stats.n, stats.total, stats.total_sq)
        )
    )


def _vector_counts(policy: Policy, stats: Stats, mask: np.ndarray, seed: int) -> np.ndarray:
    arms = policy.select(_batch(stats, DRAWS), np.random.default_rng(seed), mask).arms
    return np.bincount(arms, minlength=stats.n_arms)


def _scalar_counts(policy: Policy, stats: Stats, eligible: list[int], seed: int) -> np.ndarray:
    rng, row = random.Random(seed), stats.row()
    arms = [policy.select_one(row, rng, eligible)[0] for _ in range(DRAWS)]
    return np.bincount(arms, minlength=stats.n_arms)


@pytest.mark.parametrize("name", POLICY_NAMES)
@pytest.mark.parametrize("tied", [False, True])
def test_select_and_select_one_follow_probabilities(name: str, tied: bool) -> None:
    policy = create_policy(name, {})
    stats = TIED if tied else _state(name)
    probs = policy.probabilities(stats, MASK)
    assert probs[3] == 0.0 and abs(probs.sum() - 1.0) < 1e-12
    vector = _vector_counts(policy, stats, MASK, seed=11)
    scalar = _scalar_counts(policy, stats, ELIGIBLE, seed=12)
    _check_counts(vector, probs)
    _check_counts(scalar, probs)
    # and the two paths against each other (contingency chi-square, same level)
    table = np.array([vector, scalar])[:, (vector + scalar) > 0]
    if table.shape[1] > 1:
        result = sps.chi2_contingency(table, correction=False)
        assert result.statistic < sps.chi2.ppf(1 - CHI2_LEVEL, table.shape[1] - 1)


def _beta_exact(a1: float, b1: float, a2: int, b2: float) -> float:
    """P(X2 > X1), X ~ Beta, a2 integer: the finite sum of Miller (2015), exact to ~1e-14."""
    i = np.arange(a2)
    terms = special.betaln(a1 + i, b1 + b2) - np.log(b2 + i)
    terms -= special.betaln(1 + i, b2) + special.betaln(a1, b1)
    return float(np.exp(terms).sum())


def test_thompson_quadrature_matches_closed_form() -> None:
    # Claimed error: < 1e-9 absolute (QUADRATURE_LEVELS panels, 8 Gauss-Legendre nodes each).
    policy = create_policy("thompson", {})
    rng = np.random.default_rng(5)
    cases = [(1.0, 1.0, 1, 1.0), (2.0, 1.0, 1, 1.0), (30.0, 300.0, 3, 30.0), (1000, 1000, 1, 1)]
    cases += [(1.0, 1.0, 1000, 1000.0), (5.0, 5.0, 6, 5.0), (1.0, 1000.0, 1, 3.0)]
    cases += [
        (
            float(rng.integers(1, 2000)),
            float(rng.integers(1, 2000)),
            int(rng.integers(1, 300)),
            float(rng.integers(1, 2000)),
        )
        for _ in range(60)
    ]
    for a1, b1, a2, b2 in cases:
        n = np.array([a1 + b1 - 2.0, a2 + b2 - 2.0])
        total = np.array([a1 - 1.0, a2 - 1.0])
        got = policy.probabilities(Stats(n, total, total))[1]
        assert abs(got - _beta_exact(a1, b1, a2, b2)) < 1e-9, (a1, b1, a2, b2)


def test_thompson_quadrature_matches_monte_carlo_with_many_arms() -> None:
    policy = create_policy("thompson", {"alpha0": 0.5, "beta0": 2.0})
    stats = Stats(
        np.array([40.0, 400.0, 12.0, 0.0, 2000.0, 90.0]),
        np.array([9.0, 80.0, 3.0, 0.0, 390.0, 21.0]),
        np.zeros(6),
    )
    probs = policy.probabilities(stats)
    a, b = policy.posterior(stats)  # type: ignore[attr-defined]
    samples = 1_000_000
    draws = np.random.default_rng(3).beta(a, b, size=(samples, 6))
    counts = np.bincount(draws.argmax(axis=1), minlength=6)
    sigma = np.sqrt(probs * (1 - probs) / samples)
    assert np.all(np.abs(counts / samples - probs) <= SIGMAS * sigma + 1e-12)


def test_gaussian_quadrature_matches_independent_quadrature_and_symmetry() -> None:
    # Claimed error < 1e-9 (16 nodes per panel); reference: adaptive QUADPACK to 1e-13.
    policy = create_policy("gaussian_thompson", {})
    rng = np.random.default_rng(4)
    for _ in range(12):
        n = rng.choice([0.0, 1.0, 3.0, 20.0, 400.0], size=2)
        means, spreads = rng.normal(1.0, 0.3, 2), rng.uniform(0.1, 3.0, 2)
        two = Stats(n, n * means, n * (means**2 + spreads**2))
        loc, scale, df = policy.posterior(two)  # type: ignore[attr-defined]
        first, second = sps.t(df[0], loc[0], scale[0]), sps.t(df[1], loc[1], scale[1])
        reference, _ = integrate.quad(
            lambda x, f=first, s=second: f.pdf(x) * s.cdf(x),
            -np.inf,
            np.inf,
            points=None,
            epsabs=1e-13,
            epsrel=1e-12,
            limit=1000,
        )
        assert abs(policy.probabilities(two)[0] - reference) < 1e-9, (n, means, spreads)
    same = Stats(np.full(4, 7.0), np.full(4, 3.0), np.full(4, 9.0))
    np.testing.assert_allclose(policy.probabilities(same), 0.25, rtol=0, atol=1e-12)
    untouched = Stats.zeros(3)  # prior only: t with 2 dof, heavy tails
    np.testing.assert_allclose(policy.probabilities(untouched), 1 / 3, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (2.0, 3.0),
        (50.0, 500.0),
        (1.5, 1.2),
        (3000.0, 20.0),
        (0.5, 4.0),
        (1.0, 1.0),
        (1.0001, 900.0),
        (1.0, 30.0),  # a = 1 and b = 1: closed-form inverse CDF
        (1.0, 0.4),
        (7.0, 1.0),
        (0.2, 1.0),
        (0.3, 0.6),
    ],
)
def test_beta_variate_is_beta(a: float, b: float) -> None:
    rng = random.Random(17)
    draws = [beta_variate(rng, a, b) for _ in range(DRAWS)]
    assert sps.kstest(draws, sps.beta(a, b).cdf).pvalue > CHI2_LEVEL


@pytest.mark.parametrize("df", [2.0, 3.5, 30.0, 1000.0])
def test_student_t_variate_is_student_t(df: float) -> None:
    rng = random.Random(19)
    draws = [student_t_variate(rng, df) for _ in range(DRAWS)]
    assert sps.kstest(draws, sps.t(df).cdf).pvalue > CHI2_LEVEL


def _bisection(p: float, bound: float) -> float:
    """Reference index: bisection with kl in 50-digit decimal arithmetic (no cancellation)."""
    with localcontext() as context:
        context.prec = 50
        dp, limit = Decimal(p), Decimal(bound)

        def kl(q: Decimal) -> Decimal:
            first = dp * (dp / q).ln() if dp > 0 else Decimal(0)
            second = (1 - dp) * ((1 - dp) / (1 - q)).ln() if dp < 1 else Decimal(0)
            return first + second

        low, high = dp, Decimal(1)
        for _ in range(120):
            mid = (low + high) / 2
            low, high = (mid, high) if kl(mid) <= limit else (low, mid)
        return float(low)


def test_kl_ucb_index_matches_bisection() -> None:
    means = [0.0, 1e-300, 1e-9, 0.01, 0.3, 0.5, 0.77, 0.99, 1 - 1e-9, 1.0]
    bounds = [0.0, 1e-12, 1e-6, 0.01, 0.3, 2.0, 25.0, 700.0]
    p, d = (np.array(x).ravel() for x in np.meshgrid(means, bounds))
    got = kl_ucb_index(p, d)
    for i in range(len(p)):
        expected = _bisection(p[i], d[i])
        # 1e-9 is the promised accuracy; the reference is exact to 2^-120 in q.
        assert abs(got[i] - expected) < 1e-9, (p[i], d[i], got[i], expected)
        assert abs(kl_ucb_index_one(float(p[i]), float(d[i])) - got[i]) < 1e-12
        assert p[i] <= got[i] <= 1.0


def test_top_two_propensities_closed_form() -> None:
    stats, probs = BERNOULLI, create_policy("thompson", {}).probabilities(BERNOULLI, MASK)
    for share in (0.0, 0.3, 1.0):
        top = create_policy("top_two_thompson", {"leader_probability": share})
        got = top.probabilities(stats, MASK)
        brute = np.zeros(5)
        for i in ELIGIBLE:  # direct transcription of p_i = b P_i + (1-b) sum_j P_j P_i/(1-P_j)
            brute[i] = share * probs[i] + (1 - share) * sum(
                probs[j] * probs[i] / (1 - probs[j]) for j in ELIGIBLE if j != i
            )
        np.testing.assert_allclose(got, brute, rtol=1e-12, atol=1e-15)


def test_top_two_challenger_fallback_keeps_the_law() -> None:
    # Leader nearly certain (P ~ 1 - 1e-9): resampling gives up after MAX_RESAMPLES and the
    # challenger comes from its exact conditional law; frequencies must still match.
    stats = Stats(
        np.array([2000.0, 40.0, 40.0, 20.0]), np.array([1800.0, 20.0, 24.0, 9.0]), np.zeros(4)
    )
    policy = create_policy("top_two_thompson", {"leader_probability": 0.0})
    probs = policy.probabilities(stats)
    assert probs[0] < 1e-6
    rng = np.random.default_rng(23)
    arms = policy.select(_batch(stats, DRAWS), rng).arms
    _check_counts(np.bincount(arms, minlength=4), probs)
    row, scalar_rng = stats.row(), random.Random(29)
    scalar = [policy.select_one(row, scalar_rng, [0, 1, 2, 3])[0] for _ in range(2000)]
    _check_counts(np.bincount(scalar, minlength=4), probs)


def test_floor_and_burn_in() -> None:
    policy = create_policy("ucb1", {})
    stats = Stats(np.array([10.0, 3.0, 8.0, 1.0]), np.array([9.0, 1.0, 2.0, 0.0]), np.zeros(4))
    mask = np.array([True, True, True, False])
    base = policy.probabilities(stats, mask)
    floored = floor_probabilities(base, mask, 0.1)
    np.testing.assert_allclose(floored, np.where(mask, 0.1 + 0.7 * base, 0.0))  # f + (1-Kf)p
    assert base.max() == 1.0  # deterministic policy: the floor is all the exploration
    assert floor_probabilities_one(tuple(base), [0, 1, 2], 0.1) == pytest.approx(floored)
    np.testing.assert_allclose(floor_probabilities(base, mask, 1 / 3), [1 / 3] * 3 + [0])
    for bad in (0.34, -0.01):
        with pytest.raises(PolicyConfigError) as error:
            check_floor(bad, 3)
        assert error.value.field == "exploration_floor"
    law = controlled_probabilities(policy, stats, mask, floor=0.1)
    arms = select_controlled(
        policy, _batch(stats, DRAWS), np.random.default_rng(1), mask, floor=0.1
    ).arms
    _check_counts(np.bincount(arms, minlength=4), law)
    rng, row = random.Random(2), stats.row()
    scalar = [
        select_one_controlled(policy, row, rng, [0, 1, 2], floor=0.1)[0] for _ in range(DRAWS)
    ]
    _check_counts(np.bincount(scalar, minlength=4), law)
    # burn-in: arm 1 has 3 < 5 decisions, so routing is uniform over eligible arms
    law = controlled_probabilities(policy, stats, mask, floor=0.1, burn_in=5)
    np.testing.assert_allclose(law, [1 / 3] * 3 + [0])
    scalar = [
        select_one_controlled(policy, row, rng, [0, 1, 2], burn_in=5)[0] for _ in range(DRAWS)
    ]
    _check_counts(np.bincount(scalar, minlength=4), law)
    done = controlled_probabilities(policy, stats, mask, burn_in=3)  # min decisions = 3
    np.testing.assert_allclose(done, base)


def test_scalar_and_vector_greedy_agree() -> None:
    for name in POLICY_NAMES:
        policy = create_policy(name, {})
        stats = _state(name)
        values = policy.greedy_values(stats)
        row = stats.row()
        assert [policy.greedy_value_one(row, i) for i in range(5)] == list(values)
        assert isinstance(row, ScalarStats)
