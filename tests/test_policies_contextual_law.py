"""The live law of ``lin_ts`` and ``logistic_ts`` (``policies.lin_ts.normal_argmax_law_one``)
against independent results, and the live draw against that law.

References: the exact two-arm law P(X_a > X_b) = Phi((m_a - m_b) / sqrt(s_a^2 + s_b^2))
computed with scipy's ``ndtr``, and adaptive QUADPACK to 1e-13 with breakpoints at every arm's
mean and +-3, +-6 scales. Tolerances from the maths: arms out of the race carry less than
2e-12 each, so the closed form for two contenders among five is within 6e-12 of the whole
law; the equal-panel quadrature is within 1e-10 of QUADPACK (the 2e-12 cut per arm, and a
Gauss-Legendre error measured below 2e-11); the quantile-panel quadrature keeps the 1e-9 of
``tests/test_policies_contextual.py``. Draws: chi-square at level 1e-6 and 4.5 binomial
sigmas per arm (``test_policies_laws``).
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from scipy import integrate, special
from scipy import stats as sps

from policies import ContextualStats, create_policy
from policies.contextual import pick_from_law
from policies.lin_ts import (
    _EQUAL_PANELS,
    _EQUAL_WIDTH,
    _Z_HIGH,
    _Z_LOW,
    normal_argmax_law,
    normal_argmax_law_one,
    normal_argmax_one,
)

from .test_policies_contextual import one_row_and_batched_laws
from .test_policies_laws import _check_counts

DRAWS = 40_000


def _quadpack(loc: list[float], scale: list[float]) -> np.ndarray:
    """P(arm a's draw is the largest) for every arm, each by adaptive quadrature."""
    m, s = np.array(loc), np.array(scale)
    law = []
    for a in range(len(m)):
        low, high = m[a] - 9 * s[a], m[a] + 9 * s[a]  # outside: mass below 3e-19
        others = np.array([j for j in range(len(m)) if j != a])

        def integrand(t: float, a: int = a, j: np.ndarray = others) -> float:
            return float(sps.norm.pdf(t, m[a], s[a]) * special.ndtr((t - m[j]) / s[j]).prod())

        points = np.concatenate([m + c * s for c in (-6.0, -3.0, 0.0, 3.0, 6.0)])
        reference, _ = integrate.quad(
            integrand,
            low,
            high,
            points=sorted(set(np.clip(points, low, high))),
            epsabs=1e-15,
            epsrel=1e-13,
            limit=5000,
        )
        law.append(reference)
    return np.array(law)


def _contenders(loc: list[float], scale: list[float]) -> list[int]:
    """The arms in the race (their 1 - 1e-12 quantile above the largest 1e-12 quantile)."""
    low = max(m + s * _Z_LOW for m, s in zip(loc, scale, strict=True))
    return [k for k in range(len(loc)) if loc[k] + scale[k] * _Z_HIGH >= low]


def _equal_panels(loc: list[float], scale: list[float]) -> bool:
    """True when the contenders' law takes equal panels (comparable scales)."""
    arms = _contenders(loc, scale)
    low = max(loc[k] + scale[k] * _Z_LOW for k in arms)
    high = max(loc[k] + scale[k] * _Z_HIGH for k in arms)
    return (high - low) / (_EQUAL_WIDTH * min(scale[k] for k in arms)) <= _EQUAL_PANELS


def _two_of_five(rng: np.random.Generator) -> tuple[list[float], list[float]]:
    """Two contenders (near ties to clear leads, scale ratios up to 3e4) and three arms below
    the race, each with its own scale."""
    scale = np.exp(rng.uniform(math.log(1e-3), math.log(30.0), 2))
    gap = rng.normal(0.0, float(rng.choice([1e-6, 0.1, 1.0, 3.0]))) * math.hypot(*scale)
    loc = [float(rng.normal(0.0, 10.0))]
    loc.append(loc[0] + gap)
    low = max(m + s * _Z_LOW for m, s in zip(loc, scale, strict=True))
    out = np.exp(rng.uniform(math.log(1e-3), math.log(30.0), 3))
    below = low - out * _Z_HIGH - rng.exponential(1.0, 3) * out - 1e-9 * abs(low)
    order = rng.permutation(5)  # the contenders anywhere among the five
    means = np.concatenate([loc, below])[order]
    scales = np.concatenate([scale, out])[order]
    return means.tolist(), scales.tolist()


@pytest.mark.slow
def test_two_contenders_take_the_exact_closed_form() -> None:
    """Two contenders among five: the pruned arms get exactly 0 and the two the exact
    two-arm law (to erfc's rounding), which is within 1e-9 of the general routine and within
    1e-11 of QUADPACK over all five arms (the pruned ones carry < 2e-12 each)."""
    rng = np.random.default_rng(21)
    for case in range(300):
        loc, scale = _two_of_five(rng)
        arms = _contenders(loc, scale)
        assert len(arms) == 2
        a, b = arms
        law = np.array(normal_argmax_law_one(loc, scale, range(5)))
        exact = special.ndtr((loc[a] - loc[b]) / math.hypot(scale[a], scale[b]))
        assert law[a] == pytest.approx(exact, rel=1e-13, abs=1e-300)
        assert law[b] == pytest.approx(
            special.ndtr(-(loc[a] - loc[b]) / math.hypot(scale[a], scale[b])), rel=1e-13, abs=1e-300
        )
        assert abs(law.sum() - 1.0) < 1e-15
        assert all(law[j] == 0.0 for j in range(5) if j not in arms)
        general = normal_argmax_law(
            np.array([loc]), np.array([scale]), np.ones((1, 5), dtype=bool)
        )[0]
        np.testing.assert_allclose(law, general, rtol=0, atol=1e-9)
        if case < 10:
            np.testing.assert_allclose(law, _quadpack(loc, scale), rtol=0, atol=1e-11)


@pytest.mark.slow
def test_contenders_law_is_within_1e_10_of_quadpack_on_equal_panels() -> None:
    """Three to eight contenders of comparable scales, near ties included (means within a
    few hundredths of scales whose spread is 10%, 6-8 arms: where the general routine's
    quantile panels err by up to 2.4e-9): every probability within 1e-10 of QUADPACK."""
    rng = np.random.default_rng(22)
    for case in range(12):
        arms = int(rng.integers(3, 9))
        spread = [0.01, 0.3, 1.0][case % 3]
        loc = rng.normal(0.0, spread, arms).tolist()
        scale = np.exp(rng.normal(-1.0, 0.3, arms)).tolist()
        assert len(_contenders(loc, scale)) == arms and _equal_panels(loc, scale)
        law = normal_argmax_law_one(loc, scale, range(arms))
        np.testing.assert_allclose(law, _quadpack(loc, scale), rtol=0, atol=1e-10)


def test_contenders_law_keeps_1e_9_on_quantile_panels() -> None:
    """Three to six contenders whose scales differ a thousandfold (a narrow arm inside a
    wide one: equal panels would need too many, so the quantile panels resolve it)."""
    rng = np.random.default_rng(23)
    checked = 0
    while checked < 12:
        arms = int(rng.integers(3, 7))
        loc = rng.normal(0.0, 1.0, arms).tolist()
        scale = np.exp(rng.uniform(math.log(1e-3), math.log(3.0), arms)).tolist()
        if len(_contenders(loc, scale)) < 3 or _equal_panels(loc, scale):
            continue
        law = normal_argmax_law_one(loc, scale, range(arms))
        np.testing.assert_allclose(law, _quadpack(loc, scale), rtol=0, atol=1e-9)
        checked += 1


def test_one_contender_gets_everything_and_the_degenerate_rows_tie() -> None:
    assert normal_argmax_law_one([0.0, 50.0, 100.0], [1.0, 1.0, 1.0], [0, 1, 2]) == [0, 0, 1]
    assert normal_argmax_law_one([0.0, 50.0, 100.0], [1.0, 1.0, 1.0], [0, 1]) == [0, 1, 0]
    assert normal_argmax_law_one([0.0, 1.0], [1.0, 1.0], [0]) == [1.0, 0.0]
    assert normal_argmax_law_one([0.3, 0.3, 0.1], [0.0, 0.0, 0.0], [0, 1, 2]) == [0.5, 0.5, 0]


def _two_contender_state(name: str) -> tuple[ContextualStats, list[float]]:
    """Five arms, d = 2, x = (1, 0): arm k's mean n m_k / (lambda + n) and width
    1 / sqrt(lambda + n) with n = 10^4, so arms 0 and 1 (m 0.5 and 0.505) are close and
    arms 2-4 (0.1, 0.0, 0.2) sixty widths below."""
    n = 10_000.0
    m = np.array([0.5, 0.505, 0.1, 0.0, 0.2])
    gram = np.zeros((5, 2, 2))
    gram[:, 0, 0] = gram[:, 1, 1] = n
    b = np.zeros((5, 2))
    b[:, 0] = n * m
    return ContextualStats(np.full(5, n), gram, b), [1.0, 0.0]


@pytest.mark.parametrize("name", ["lin_ts", "logistic_ts"])
def test_live_draws_follow_the_closed_form_law(name: str) -> None:
    """Where two of five arms contend, the live law (the closed form) is the law of the
    policy's own draws: select_one (one normal per arm, the argmax), the vectorised select,
    and the Route's draw from the law (pick_from_law), 40,000 each."""
    policy = create_policy(name, {}, contextual=True)
    stats, x = _two_contender_state(name)
    model = policy.prepare(stats)
    eligible = list(range(5))
    law, means = policy.law_one(model, x, eligible)
    probs = np.array(law)
    assert probs[2:].tolist() == [0.0, 0.0, 0.0] and 0.2 < probs[0] < 0.45
    assert abs(probs.sum() - 1.0) < 1e-15 and means[1] > means[0]
    np.testing.assert_allclose(probs, policy.probabilities(stats, x), rtol=0, atol=1e-12)
    rng = random.Random(31)
    live = np.bincount(
        [policy.select_one(model, x, rng, eligible)[0] for _ in range(DRAWS)], None, 5
    )
    _check_counts(live, probs)
    rows = np.broadcast_to(np.array(x), (DRAWS, 2))
    vector = np.bincount(policy.select(stats, rows, np.random.default_rng(32)).arms, None, 5)
    _check_counts(vector, probs)
    routed = np.bincount(
        [pick_from_law(law, eligible, rng.random()) for _ in range(DRAWS)], None, 5
    )
    _check_counts(routed, probs)


def test_normal_draws_follow_the_law_with_a_huge_scale_ratio() -> None:
    """Two contenders whose scales differ ten-thousandfold, three arms pruned: the scalar
    sampler's counts against the closed form."""
    loc, scale = [0.0, 0.01, -80.0, -90.0, -100.0], [1e-4, 1.0, 1.0, 1.0, 10.0]
    law = normal_argmax_law_one(loc, scale, range(5))
    assert law[2:] == [0.0, 0.0, 0.0] and 0.4 < law[0] < 0.6
    rng = random.Random(33)
    counts = np.bincount(
        [normal_argmax_one(loc, scale, range(5), rng) for _ in range(DRAWS)], None, 5
    )
    _check_counts(counts, np.array(law))


def test_live_scores_and_eligible_lists() -> None:
    """``scores_one`` equals ``scores``; ``law_one`` takes the eligible arms as a set (in any
    order, repeated or not) and refuses an empty or out-of-range list."""
    policy = create_policy("lin_ts", {}, contextual=True)
    stats, x = _two_contender_state("lin_ts")
    model = policy.prepare(stats)
    vector = np.array(x)
    means, widths = model.scores(vector)
    one_means, one_widths = model.scores_one(vector)
    assert one_means == means.tolist()
    np.testing.assert_allclose(one_widths, widths, rtol=1e-14)
    assert policy.law_one(model, x, (1, 0, 1)) == policy.law_one(model, x, [0, 1])
    with pytest.raises(ValueError, match="eligible"):
        policy.law_one(model, x, [])
    with pytest.raises(IndexError, match="eligible"):
        policy.law_one(model, x, [0, 5])


@pytest.mark.slow
def test_where_the_one_row_and_general_laws_differ_the_one_row_law_is_right() -> None:
    """The rows of ``test_one_row_law_agrees_with_the_general_quadrature`` (same seed and
    draws) on which the live law and the general routine differ by more than 1e-9: the live
    law is within 1e-10 of QUADPACK there, and the general routine within 3e-9."""
    differing = 0
    for loc, scale, mask, one, batched in one_row_and_batched_laws():
        if np.abs(one - batched).max() <= 1e-9:
            continue
        differing += 1
        exact = np.zeros(len(loc))
        exact[mask] = _quadpack(loc[mask].tolist(), scale[mask].tolist())
        np.testing.assert_allclose(one, exact, rtol=0, atol=1e-10)
        np.testing.assert_allclose(batched, exact, rtol=0, atol=3e-9)
    assert differing == 4
