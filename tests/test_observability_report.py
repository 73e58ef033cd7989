"""GetReport maths against closed forms (Beta posteriors, Evan Miller's two-arm sum) and a
large seeded Monte Carlo for the expected loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from policies.base import Stats
from policies.registry import create_policy
from policies.report import (
    BetaModel,
    NormalModel,
    build_report,
    expected_max,
    model_for_policy,
    recommend,
)
from policies.thompson import BetaMarginals


def bernoulli_stats(n: list[float], successes: list[float]) -> Stats:
    n_arr, s_arr = np.asarray(n, dtype=float), np.asarray(successes, dtype=float)
    return Stats(n_arr, s_arr, s_arr)  # 0/1 rewards: sum of squares = sum


def evan_miller_b_beats_a(a_a: int, b_a: int, a_b: int, b_b: int) -> float:
    """P(theta_B > theta_A) for Beta(a_a, b_a), Beta(a_b, b_b), integer a_b (closed form)."""

    def log_beta(x: float, y: float) -> float:
        return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)

    return math.fsum(
        math.exp(
            log_beta(a_a + i, b_a + b_b)
            - math.log(b_b + i)
            - log_beta(1 + i, b_b)
            - log_beta(a_a, b_a)
        )
        for i in range(a_b)
    )


def test_beta_mean_and_interval_are_the_closed_forms() -> None:
    prior = BetaModel(alpha0=2.0, beta0=3.0)
    report = build_report(["A", "B", "C"], bernoulli_stats([0, 40, 1000], [0, 13, 420]), prior)
    for arm, n, s in zip(report.arms, [0, 40, 1000], [0, 13, 420], strict=True):
        a, b = 2.0 + s, 3.0 + n - s
        assert arm.mean == pytest.approx(a / (a + b), rel=1e-15)
        # betaincinv vs scipy.stats.beta.ppf: the same inverse, agreement to rounding.
        assert arm.ci_low == pytest.approx(sps.beta.ppf(0.025, a, b), rel=1e-10)
        assert arm.ci_high == pytest.approx(sps.beta.ppf(0.975, a, b), rel=1e-10)
    assert report.model == "beta-bernoulli"


@pytest.mark.parametrize(
    ("arm_a", "arm_b"),
    [
        ((1, 1), (1, 1)),  # no data: exactly 1/2
        ((13, 29), (17, 25)),
        ((30, 970), (45, 955)),  # 3% vs 4.5% conversion on 1000 each
        ((3, 8), (400, 602)),  # a wide posterior against a narrow one
        ((120, 80), (100, 100)),
    ],
)
def test_two_arm_prob_best_matches_evan_miller(
    arm_a: tuple[int, int], arm_b: tuple[int, int]
) -> None:
    (a_a, b_a), (a_b, b_b) = arm_a, arm_b
    # Stats that give these posteriors under the uniform Beta(1, 1) prior.
    stats = bernoulli_stats([a_a + b_a - 2, a_b + b_b - 2], [a_a - 1, a_b - 1])
    report = build_report(["A", "B"], stats, BetaModel())
    exact = evan_miller_b_beats_a(a_a, b_a, a_b, b_b)
    assert report.arm("B").prob_best == pytest.approx(exact, abs=1e-6)
    assert report.arm("A").prob_best + report.arm("B").prob_best == pytest.approx(1.0, abs=1e-12)


def _mc_loss(draws: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo E[max_eligible - theta_i] and its standard error per arm."""
    best = np.where(mask, draws, -np.inf).max(axis=1, keepdims=True)
    regret = best - draws
    return regret.mean(axis=0), regret.std(axis=0, ddof=1) / math.sqrt(draws.shape[0])


def test_expected_loss_beta_matches_monte_carlo() -> None:
    stats = bernoulli_stats([100, 100, 1000, 60], [10, 14, 105, 20])
    eligible = [True, True, True, False]  # arm D is disabled: not part of the max
    report = build_report(list("ABCD"), stats, BetaModel(), eligible=eligible)
    rng = np.random.default_rng(12345)
    a, b = 1.0 + stats.total, 1.0 + stats.n - stats.total
    draws = rng.beta(a, b, size=(1_000_000, 4))
    mc, se = _mc_loss(draws, np.asarray(eligible))
    for i, arm in enumerate(report.arms):
        # 4 standard errors: a correct quadrature fails this with probability ~6e-5 per arm.
        assert abs(arm.expected_loss - mc[i]) <= 4 * se[i], (
            arm.arm,
            arm.expected_loss,
            mc[i],
            se[i],
        )
    assert report.arm("D").prob_best == 0.0
    assert report.arm("D").expected_loss < 0  # D (33%) would beat every eligible arm


def test_expected_loss_normal_model_matches_monte_carlo() -> None:
    # Continuous rewards (e.g. revenue): n, sum, sum of squares per arm.
    n = np.array([25.0, 40.0, 12.0])
    means = np.array([3.0, 3.4, 2.5])
    variances = np.array([4.0, 1.0, 9.0])
    stats = Stats(n, n * means, n * (variances + means**2))
    model = NormalModel(mu0=0.0, kappa0=0.01, alpha0=1.0, beta0=1.0)
    report = build_report(["A", "B", "C"], stats, model)
    # Independent textbook NIG update (with the within-arm sum of squares).
    kappa = model.kappa0 + n
    loc = (model.kappa0 * model.mu0 + n * means) / kappa
    alpha = model.alpha0 + n / 2
    beta = (
        model.beta0
        + 0.5 * n * variances
        + model.kappa0 * n * (means - model.mu0) ** 2 / (2 * kappa)
    )
    scale = np.sqrt(beta / (alpha * kappa))
    for i, arm in enumerate(report.arms):
        assert arm.mean == pytest.approx(loc[i], rel=1e-12)
        assert arm.ci_low == pytest.approx(
            sps.t.ppf(0.025, 2 * alpha[i], loc[i], scale[i]), rel=1e-9
        )
        assert arm.ci_high == pytest.approx(
            sps.t.ppf(0.975, 2 * alpha[i], loc[i], scale[i]), rel=1e-9
        )
    rng = np.random.default_rng(777)
    draws = loc + scale * rng.standard_t(2 * alpha, size=(1_000_000, 3))
    mc, se = _mc_loss(draws, np.ones(3, dtype=bool))
    for i, arm in enumerate(report.arms):
        # Student-t tails (df 26-82) are light enough that 4 standard errors of the sample mean
        # bound the error; quadrature truncation at q(1e-12) is far below that.
        assert abs(arm.expected_loss - mc[i]) <= 4 * se[i], (
            arm.arm,
            arm.expected_loss,
            mc[i],
            se[i],
        )
    winner = (draws == draws.max(axis=1, keepdims=True)).mean(axis=0)
    for i, arm in enumerate(report.arms):
        # Binomial standard error of the MC frequency; 4 sd.
        sd = math.sqrt(max(winner[i] * (1 - winner[i]), 1e-12) / draws.shape[0])
        assert abs(arm.prob_best - winner[i]) <= 4 * sd


def test_expected_max_of_identical_arms_matches_order_statistics() -> None:
    # Two iid Beta(2, 2): E[max] = 1/2 + E|X - Y|/2, and E|X - Y| = 9/35 in closed form
    # (integral of |x - y| 36 x(1-x) y(1-y) over the unit square), so E[max] = 1/2 + 9/70.
    marginals = BetaMarginals(np.array([2.0, 2.0]), np.array([2.0, 2.0]))
    value = float(expected_max(marginals, np.array([True, True])))
    assert value == pytest.approx(0.5 + 9 / 70, abs=1e-9)


def test_recommendation_rule() -> None:
    clear = build_report(["A", "B"], bernoulli_stats([5000, 5000], [500, 650]), BetaModel())
    assert clear.best_arm == "B"
    assert clear.ready
    assert clear.arm("B").prob_best >= 0.95
    # P(best) is 1 - 1e-9 here; the sentence truncates instead of claiming certainty.
    assert "best with probability 0.999;" in clear.recommendation
    assert clear.recommendation.endswith("ready to pin")

    close = build_report(["A", "B"], bernoulli_stats([200, 200], [20, 24]), BetaModel())
    assert not close.ready
    assert close.recommendation.endswith("keep exploring")

    # Probability high enough but the loss threshold (1% of ~0.13 = 0.0013) is not met...
    summaries = build_report(["A", "B"], bernoulli_stats([800, 800], [80, 110]), BetaModel()).arms
    best, ready, _ = recommend(summaries, prob_threshold=0.95, relative_loss=0.0, absolute_loss=0.0)
    assert best == "B" and not ready
    # ...and a generous absolute loss tolerance makes it ready.
    _, ready, _ = recommend(summaries, prob_threshold=0.95, absolute_loss=0.01)
    assert ready == (summaries[1].prob_best >= 0.95)

    only = build_report(
        ["A", "B"], bernoulli_stats([10, 10], [1, 2]), BetaModel(), eligible=[False, True]
    )
    assert only.best_arm == "B" and not only.ready
    assert "only eligible arm" in only.recommendation


def test_model_for_policy_uses_the_policy_prior() -> None:
    assert model_for_policy(create_policy("thompson", {"alpha0": 2.0, "beta0": 5.0})) == BetaModel(
        2.0, 5.0
    )
    assert model_for_policy(create_policy("kl_ucb", {})) == BetaModel(1.0, 1.0)
    gaussian = create_policy("gaussian_thompson", {"mu0": 10.0, "kappa0": 2.0})
    assert model_for_policy(gaussian) == NormalModel(10.0, 2.0, 1.0, 1.0)
    # UCB1 has unbounded rewards by default, Beta when the experiment bounds them to [0, 1].
    assert isinstance(model_for_policy(create_policy("ucb1", {})), NormalModel)
    assert model_for_policy(create_policy("ucb1", {}), (0.0, 1.0)) == BetaModel()


def test_no_recommendation_before_every_active_arm_has_its_minimum_data() -> None:
    """The reported case: arm a got 200 zeros, arm b was never tried. b's posterior is its
    prior (mean 0.5), so P(b best) is ~1, yet nothing is known about b: no recommendation."""
    from policies.report import MIN_REWARDS_PER_ARM

    report = build_report(["a", "b"], bernoulli_stats([200, 0], [0, 0]), BetaModel())
    assert report.arm("b").prob_best >= 0.95  # the number itself is what the prior says
    assert report.best_arm is None and not report.ready
    assert "ready to pin" not in report.recommendation
    assert "probability" not in report.recommendation
    assert "not enough data" in report.recommendation and "b (0)" in report.recommendation
    # One reward short of the minimum still holds it back; at the minimum the rule applies.
    short = build_report(
        ["a", "b"], bernoulli_stats([200, MIN_REWARDS_PER_ARM - 1], [0, 29]), BetaModel()
    )
    assert short.best_arm is None and not short.ready
    enough = build_report(
        ["a", "b"], bernoulli_stats([200, MIN_REWARDS_PER_ARM], [0, 30]), BetaModel()
    )
    assert enough.best_arm == "b" and enough.ready
    # A larger burn-in raises the minimum; disabled arms do not count.
    assert (
        build_report(
            ["a", "b"], bernoulli_stats([200, 30], [0, 30]), BetaModel(), min_rewards=100
        ).best_arm
        is None
    )
    only_a = build_report(
        ["a", "b", "c"],
        bernoulli_stats([200, 300, 0], [0, 60, 0]),
        BetaModel(),
        eligible=[True, True, False],
    )
    assert only_a.best_arm == "b"
