"""policies.guardrails and policies.bounded_mean: the reductions, the anytime-valid test (its
false-trip rate under continuous monitoring, its power, its recovery), the state machine and
the probe law.

Statistical tolerances: a simulated proportion is compared with its bound through a
Clopper-Pearson interval at level 1e-4 (a correct implementation fails one run in 10,000
per check), never with a number the code printed.
"""

from __future__ import annotations

import math
import random
from typing import Literal

import numpy as np
import pytest
from scipy import integrate, special

from policies.base import PolicyConfigError
from policies.bounded_mean import (
    PRIOR_SAMPLES,
    critical_sum,
    fewest_samples_below,
    log_evidence_above,
    log_evidence_below,
    samples_to_verdict,
)
from policies.guardrails import (
    REASON_FALLBACK,
    REASON_GUARDRAIL,
    ArmState,
    GuardrailRule,
    Guardrails,
    MetricSpec,
    Override,
    Verdicts,
    check_probe_shares,
    compile_guardrails,
    compile_rule,
    draw_guarded_one,
    guarded_law,
    guarded_law_one,
    slot_width,
    starts_per_window,
    supports_mean,
    window_reads,
)

CP_ERROR = 1e-4
LATENCY = MetricSpec("latency_ms", "continuous", 0.0, math.inf)
ERROR = MetricSpec("error", "binary")
QUALITY = MetricSpec("quality", "continuous", 0.0, 1.0)
COST = MetricSpec("cost_usd", "continuous", 0.0, 0.1)
METRICS = {m.name: m for m in (LATENCY, ERROR, QUALITY, COST)}


def clopper_pearson(k: int, n: int, error: float = CP_ERROR) -> tuple[float, float]:
    """Two-sided exact interval for a binomial proportion (each side error / 2)."""
    lo = 0.0 if k == 0 else float(special.betaincinv(k, n - k + 1, error / 2))
    hi = 1.0 if k == n else float(special.betaincinv(k + 1, n - k, 1 - error / 2))
    return lo, hi


def bernoulli_paths(rng: np.random.Generator, mean: float, runs: int, horizon: int) -> np.ndarray:
    """Running sums s_1..s_horizon of Bernoulli(mean) observations, one row per run."""
    return np.cumsum(rng.random((runs, horizon)) < mean, axis=1, dtype=np.float64)


def ever(log_e: np.ndarray, alpha: float, min_samples: int = 1) -> np.ndarray:
    """Per run: did the e-value reach 1 / alpha at some checked observation?"""
    return np.asarray((log_e[:, min_samples - 1 :] >= math.log(1 / alpha)).any(axis=1))


# ---------------------------------------------------------------------------- the mixture


@pytest.mark.parametrize(
    ("n", "s", "theta0"),
    [(0, 0, 0.05), (10, 3, 0.05), (200, 4.5, 0.05), (50, 49.2, 0.9), (1000, 12, 0.01)],
)
def test_closed_form_equals_the_integral(n: float, s: float, theta0: float) -> None:
    """log M_n is the likelihood ratio integrated against the truncated Beta prior."""
    a, b = PRIOR_SAMPLES * theta0, PRIOR_SAMPLES * (1 - theta0)

    def mixture(lo: float, hi: float) -> float:
        # t = lo + (hi - lo) w(u), w the Beta(m, m) CDF with m min(a, b) >= 2: smooths the
        # prior's spikes t^(a - 1) at 0 and (1 - t)^(b - 1) at 1
        m = math.ceil(2 / min(a, b))
        u = np.linspace(0.0, 1.0, 400_001)[1:-1]
        t = lo + (hi - lo) * special.betainc(m, m, u)
        rest = (1 - hi) + (hi - lo) * special.betainc(m, m, 1 - u)  # 1 - t, without rounding
        jac = (hi - lo) * np.exp((m - 1) * np.log(u * (1 - u)) - special.betaln(m, m))
        with np.errstate(all="ignore"):  # where t or 1 - t underflow the integrand is ~0
            log_lr = s * np.log(t / theta0) + (n - s) * (np.log(rest) - np.log1p(-theta0))
            prior = np.exp((a - 1) * np.log(t) + (b - 1) * np.log(rest)) * jac
            prior = np.where(np.isfinite(prior), prior, 0.0)
            joint = np.where(prior > 0, np.exp(log_lr) * prior, 0.0)
        num = integrate.trapezoid(joint, u)
        den = integrate.trapezoid(prior, u)
        return float(np.log(num / den))

    assert log_evidence_above(n, s, theta0) == pytest.approx(mixture(theta0, 1.0), abs=2e-3)
    assert log_evidence_below(n, s, theta0) == pytest.approx(mixture(0.0, theta0), abs=2e-3)


def test_the_two_verdicts_exclude_each_other() -> None:
    n = np.arange(0, 400)[:, None]
    s = np.arange(0, 400)[None, :].astype(float)
    valid = s <= n
    up = np.where(valid, log_evidence_above(n, np.minimum(s, n), 0.05), -np.inf)
    down = np.where(valid, log_evidence_below(n, np.minimum(s, n), 0.05), -np.inf)
    assert not ((up > 0) & (down > 0)).any()


@pytest.mark.parametrize("theta0", [0.05, 0.3])
def test_false_verdicts_at_the_boundary_are_at_most_alpha(theta0: float) -> None:
    """Data exactly at theta0, the test checked after every one of 1,000 observations in
    2,000 runs: either verdict is reached in at most alpha of them (Ville)."""
    alpha = 0.05
    rng = np.random.default_rng(15)
    s = bernoulli_paths(rng, theta0, 2000, 1000)
    n = np.arange(1, 1001)
    for log_e in (log_evidence_above(n, s, theta0), log_evidence_below(n, s, theta0)):
        hits = int(ever(log_e, alpha).sum())
        assert clopper_pearson(hits, len(s))[0] <= alpha


def test_false_trips_on_continuous_data_at_the_boundary() -> None:
    """A mean rule's y is anywhere in [0, 1]: Beta(1, 4) observations (mean 0.2 = theta0) trip
    in at most alpha of the runs (the sub-Bernoulli bound)."""
    alpha = 0.05
    rng = np.random.default_rng(16)
    s = np.cumsum(rng.beta(1.0, 4.0, (3000, 1500)), axis=1)
    hits = int(ever(log_evidence_above(np.arange(1, 1501), s, 0.2), alpha).sum())
    assert clopper_pearson(hits, len(s))[0] <= alpha


def union_bound_trip(theta0: float, mean: float, alpha: float, lo: int, hi: int) -> float:
    """sum over n in [lo, hi] of P(S_n >= critical sum): a bound on the probability that
    Bernoulli(mean) data ever trips in that range."""
    total = 0.0
    for n in range(lo, hi + 1):
        k = critical_sum(n, theta0, alpha, "above")
        if k is not None:
            total += float(special.betainc(k, n - k + 1, mean)) if k > 0 else 1.0
    return total


def test_an_arm_well_inside_its_slo_rarely_trips() -> None:
    """Error rate 0.01 against max 0.05, min_samples 50, 1,000 monitored observations: the
    union bound over every checked n is far below alpha, and the simulation agrees."""
    alpha, theta0, mean, min_samples, horizon = 0.05, 0.05, 0.01, 50, 1000
    bound = union_bound_trip(theta0, mean, alpha, min_samples, horizon)
    assert bound < alpha / 10
    rng = np.random.default_rng(17)
    s = bernoulli_paths(rng, mean, 4000, horizon)
    log_e = log_evidence_above(np.arange(1, horizon + 1), s, theta0)
    hits = int(ever(log_e, alpha, min_samples).sum())
    assert clopper_pearson(hits, len(s))[0] <= bound


@pytest.mark.parametrize(
    ("theta0", "mean", "direction", "stated"),
    [
        (0.05, 0.3, "above", 53),
        (0.05, 0.1, "above", 819),
        (0.05, 0.0, "below", 62),
        (0.05, 0.01, "below", 518),
    ],
)
def test_verdicts_come_within_the_stated_number(
    theta0: float, mean: float, direction: str, stated: int
) -> None:
    """``samples_to_verdict`` (a binomial tail at the critical sum) says the verdict comes
    within ``stated`` observations in 99% of runs; the simulation agrees."""
    alpha = 0.05
    assert samples_to_verdict(theta0, mean, alpha, direction) == stated
    rng = np.random.default_rng(18)
    s = bernoulli_paths(rng, mean, 3000, stated)
    n = np.arange(1, stated + 1)
    test = log_evidence_above if direction == "above" else log_evidence_below
    hits = int(ever(test(n, s, theta0), alpha).sum())
    assert clopper_pearson(hits, len(s))[1] >= 0.99


def test_a_perfect_arm_recovers_as_soon_as_the_data_can_show_it() -> None:
    for theta0 in (0.05, 0.01):
        floor = fewest_samples_below(theta0, 0.05)
        assert log_evidence_below(floor - 1, 0, theta0) < math.log(20)
        first = samples_to_verdict(theta0, 0.0, 0.05, "below")
        assert first is not None and floor <= first <= 1.05 * floor + 2


# ---------------------------------------------------------------------------- reductions


def bounds_held(statistic: float, t: float) -> list[tuple[Literal["max", "min"], bool]]:
    """Does "statistic <= t" (a max rule) and "statistic >= t" (a min rule) hold?"""
    return [("max", statistic <= t), ("min", statistic >= t)]


def test_quantile_rules_reduce_to_exceedances() -> None:
    """ "q-quantile <= T" holds exactly when the share above T is at most 1 - q (inverted-CDF
    quantile), and "q-quantile >= T" when the share below T is below q."""
    rng = np.random.default_rng(19)
    for _ in range(200):
        q = float(rng.choice([0.5, 0.9, 0.95, 0.99]))
        values = rng.lognormal(5.0, 1.0, 997)
        t = float(rng.lognormal(5.0, 1.5))
        empirical = float(np.quantile(values, q, method="inverted_cdf"))
        for bound, holds in bounds_held(empirical, t):
            g = compile_rule(GuardrailRule("latency_ms", "quantile", bound, t, q), LATENCY)
            y = g.observe(values)
            assert [g.observe_one(v) for v in values[:20]] == y[:20].tolist()
            assert (y.mean() > g.theta0) == (not holds)


def test_mean_and_rate_rules_reduce_to_scaled_means() -> None:
    rng = np.random.default_rng(20)
    for _ in range(200):
        values = rng.uniform(0.0, 0.1, 50) * rng.random()
        t = float(rng.uniform(0.001, 0.099))
        for bound, holds in bounds_held(float(values.mean()), t):
            g = compile_rule(GuardrailRule("cost_usd", "mean", bound, t), COST)
            y = g.observe(values)
            assert (y.mean() > g.theta0) == (not holds)
            assert g.value_of(len(y), float(y.sum())) == pytest.approx(values.mean())
        errors = (rng.random(50) < rng.random()).astype(float)
        t = float(rng.uniform(0.01, 0.99))
        for bound, holds in bounds_held(float(errors.mean()), t):
            g = compile_rule(GuardrailRule("error", "rate", bound, t), ERROR)
            y = g.observe(errors)
            assert (y.mean() > g.theta0) == (not holds)
            assert g.value_of(len(y), float(y.sum())) == pytest.approx(errors.mean())


@pytest.mark.parametrize(
    ("rule", "metric", "field"),
    [
        (GuardrailRule("latency_ms", "mean", "max", 500.0), LATENCY, "guardrails[0].statistic"),
        (GuardrailRule("quality", "rate", "min", 0.5), QUALITY, "guardrails[0].statistic"),
        (GuardrailRule("error", "rate", "max", 1.0), ERROR, "guardrails[0].max"),
        (GuardrailRule("cost_usd", "mean", "min", 0.0), COST, "guardrails[0].min"),
        (GuardrailRule("quality", "quantile", "max", 1.0, 0.9), QUALITY, "guardrails[0].max"),
        (GuardrailRule("quality", "quantile", "min", -1.0, 0.9), QUALITY, "guardrails[0].min"),
        (GuardrailRule("latency_ms", "quantile", "max", 5.0), LATENCY, "guardrails[0].quantile"),
        (GuardrailRule("error", "rate", "max", 0.05, 0.9), ERROR, "guardrails[0].quantile"),
        (
            GuardrailRule("error", "rate", "max", 0.05, confidence=1.0),
            ERROR,
            "guardrails[0].confidence",
        ),
        (
            GuardrailRule("error", "rate", "max", 0.05, min_samples=0),
            ERROR,
            "guardrails[0].min_samples",
        ),
        (GuardrailRule("error", "rate", "max", 0.05, window=0.0), ERROR, "guardrails[0].window"),
        (
            GuardrailRule("error", "rate", "max", 0.05, probe_share=0.0),
            ERROR,
            "guardrails[0].probe_share",
        ),
        (GuardrailRule("error", "median", "max", 0.05), ERROR, "guardrails[0].statistic"),  # type: ignore[arg-type]
    ],
)
def test_bad_rules_are_refused_naming_the_field(
    rule: GuardrailRule, metric: MetricSpec, field: str
) -> None:
    with pytest.raises(PolicyConfigError) as caught:
        compile_rule(rule, metric)
    assert caught.value.field == field


def test_guardrails_need_declared_metrics_and_room_for_probes() -> None:
    assert supports_mean(COST) and supports_mean(ERROR) and not supports_mean(LATENCY)
    with pytest.raises(PolicyConfigError) as caught:
        compile_guardrails([GuardrailRule("tokens", "rate", "max", 0.1)], METRICS, 2)
    assert caught.value.field == "guardrails[0].metric"
    rule = GuardrailRule("error", "rate", "max", 0.05, probe_share=0.3)
    compile_guardrails([rule], METRICS, 3)
    with pytest.raises(PolicyConfigError) as caught:
        compile_guardrails([rule], METRICS, 4)
    assert caught.value.field == "guardrails.probe_share"
    with pytest.raises(PolicyConfigError):
        check_probe_shares([0.5, 0.5])


# ---------------------------------------------------------------------------- state machine

RULES = compile_guardrails(
    [
        GuardrailRule("error", "rate", "max", 0.05, min_samples=20),
        GuardrailRule("latency_ms", "quantile", "max", 500.0, 0.9, min_samples=20),
    ],
    METRICS,
    2,
)


def test_an_arm_is_quarantined_then_recovers() -> None:
    # 30% errors in the window: rule 0 trips, the transition reads 0.3 of 0.05 on 60 samples
    t = RULES.next_state(ArmState.ACTIVE, (), Override.NONE, [60, 60], [18, 3])
    assert t is not None and t.state == ArmState.QUARANTINED and t.tripped == {0}
    assert t.cause == "violated" and len(t.readings) == 1
    reading = t.readings[0]
    assert (reading.rule, reading.metric, reading.samples) == (0, "error", 60)
    assert reading.value == pytest.approx(0.3) and reading.threshold == 0.05
    # probe data: no errors yet but too few for a verdict; latency fine
    assert RULES.next_state(ArmState.QUARANTINED, {0}, Override.NONE, [10, 10], [0, 0]) is None
    # latency exceeds on the probe data too: it joins the tripped rules
    t = RULES.next_state(ArmState.QUARANTINED, {0}, Override.NONE, [40, 40], [0, 20])
    assert t is not None and t.state == ArmState.QUARANTINED and t.tripped == {0, 1}
    # rule 0 satisfied but rule 1 undecided: still quarantined
    assert RULES.next_state(ArmState.QUARANTINED, {0, 1}, Override.NONE, [80, 10], [0, 0]) is None
    t = RULES.next_state(ArmState.QUARANTINED, {0, 1}, Override.NONE, [80, 80], [0, 0])
    assert t is not None and t.state == ArmState.ACTIVE and t.tripped == frozenset()
    assert t.cause == "satisfied" and [r.rule for r in t.readings] == [0, 1]


def test_min_samples_gates_both_verdicts() -> None:
    assert RULES.next_state(ArmState.ACTIVE, (), Override.NONE, [19, 0], [19, 0]) is None
    assert RULES.next_state(ArmState.QUARANTINED, {0}, Override.NONE, [19, 0], [0, 0]) is None


def test_overrides_hold_and_force() -> None:
    bad = ([60, 60], [30, 30])
    assert RULES.next_state(ArmState.ACTIVE, (), Override.HOLD, *bad) is None
    t = RULES.next_state(ArmState.QUARANTINED, {0}, Override.HOLD, *bad)
    assert t is not None and (t.state, t.cause, t.tripped) == ("ACTIVE", "override", frozenset())
    good = ([500, 500], [0, 0])
    t = RULES.next_state(ArmState.ACTIVE, (), Override.FORCE, *good)
    assert t is not None and (t.state, t.cause) == ("QUARANTINED", "override")
    assert RULES.next_state(ArmState.QUARANTINED, (), Override.FORCE, *good) is None
    # released with nothing tripped: back to ACTIVE unless the probe data violates a rule
    t = RULES.next_state(ArmState.QUARANTINED, (), Override.NONE, [5, 5], [0, 0])
    assert t is not None and t.state == ArmState.ACTIVE
    t = RULES.next_state(ArmState.QUARANTINED, (), Override.NONE, *bad)
    assert t is not None and t.state == ArmState.QUARANTINED and t.tripped == {0, 1}


def test_advance_agrees_with_next_state() -> None:
    """The array state machine (simulations) and the scalar one (service) on random inputs."""
    rng = np.random.default_rng(21)
    shape = (500, 3)
    quarantined = rng.random(shape) < 0.5
    tripped = (rng.random((*shape, 2)) < 0.5) & quarantined[..., None]
    override = rng.choice([0, 0, 0, 1, 2], shape)
    n = rng.integers(0, 100, (*shape, 2)).astype(float)
    s = np.floor(n * rng.random((*shape, 2)) ** 3)
    verdicts = RULES.evaluate(n, s)
    assert verdicts.violated.any() and verdicts.satisfied.any()
    new_q, new_tr = RULES.advance(quarantined, tripped, override, verdicts)
    for idx in np.ndindex(shape):
        state = ArmState.QUARANTINED if quarantined[idx] else ArmState.ACTIVE
        was = frozenset(np.flatnonzero(tripped[idx]).tolist())
        t = RULES.next_state(
            state, was, Override(int(override[idx])), n[idx].tolist(), s[idx].tolist()
        )
        expect_state, expect_tripped = (state, was) if t is None else (t.state, t.tripped)
        assert new_q[idx] == (expect_state == ArmState.QUARANTINED), idx
        assert frozenset(np.flatnonzero(new_tr[idx]).tolist()) == expect_tripped, idx


def test_evaluate_broadcasts_over_arms_and_runs() -> None:
    n = np.full((4, 3, 2), 100.0)
    s = np.zeros((4, 3, 2))
    s[1, 2, 0] = 40.0
    v = RULES.evaluate(n, s)
    assert isinstance(v, Verdicts) and v.violated.shape == (4, 3, 2)
    assert np.argwhere(v.violated).tolist() == [[1, 2, 0]]
    assert v.satisfied.sum() == 4 * 3 * 2 - 1


def test_probe_share_of_an_arm() -> None:
    rules = Guardrails(
        tuple(
            compile_rule(GuardrailRule("error", "rate", "max", 0.05, probe_share=p), ERROR)
            for p in (0.01, 0.05)
        )
    )
    assert rules.probe_share({0}) == 0.01
    assert rules.probe_share({0, 1}) == 0.05
    assert rules.probe_share(()) == 0.05
    mask = np.array([[True, False], [True, True], [False, False]])
    np.testing.assert_array_equal(rules.probe_shares(mask), [0.01, 0.05, 0.05])


# ---------------------------------------------------------------------------- probe law


def test_probe_law_gives_each_quarantined_arm_its_share() -> None:
    law = np.array([0.5, 0.3, 0.15, 0.05])
    shares = np.array([0.01, 0.02, 0.03, 0.04])
    g = guarded_law(law, [False, True, False, True], shares, fallback=0)
    expected = [0.5 / 0.65 * 0.94, 0.02, 0.15 / 0.65 * 0.94, 0.04]
    np.testing.assert_allclose(g.law, expected, rtol=1e-12)
    np.testing.assert_allclose(g.probe, [0, 0.02, 0, 0.04])
    assert g.fallback.sum() == 0.0 and g.law.sum() == pytest.approx(1.0, abs=1e-12)


def test_probe_law_falls_back_when_no_active_arm_has_mass() -> None:
    law = np.array([[0.0, 0.7, 0.3], [0.2, 0.5, 0.3]])
    quarantined = np.array([[False, True, True], [True, True, True]])
    g = guarded_law(law, quarantined, 0.05, fallback=1)
    np.testing.assert_allclose(g.law, [[0.0, 0.95, 0.05], [0.05, 0.9, 0.05]])
    np.testing.assert_allclose(g.fallback, [[0, 0.9, 0], [0, 0.85, 0]])
    np.testing.assert_allclose(g.law.sum(axis=-1), 1.0)


def test_scalar_probe_law_equals_the_vectorised_one() -> None:
    rng = np.random.default_rng(22)
    for _ in range(300):
        k = int(rng.integers(1, 6))
        law = rng.dirichlet(np.ones(k)) * (rng.random(k) < 0.8)
        law = law / law.sum() if law.sum() > 0 else np.eye(k)[0]
        mask = rng.random(k) < 0.4
        shares = rng.uniform(0.001, 0.9 / k, k)
        fallback = int(rng.integers(k))
        vec = guarded_law(law, mask, shares, fallback)
        quarantined = set(np.flatnonzero(mask).tolist())
        one = guarded_law_one(law.tolist(), quarantined, dict(enumerate(shares.tolist())), fallback)
        np.testing.assert_allclose(one, vec.law, rtol=1e-12, atol=1e-15)
        assert sum(one) == pytest.approx(1.0, abs=1e-12)


def test_draw_guarded_one_splits_the_components_exactly() -> None:
    """Over a fine grid of u the components get their exact masses, so the reason of a draw
    is drawn with the right probabilities."""
    law = [0.6, 0.4, 0.0]
    shares = {1: 0.02, 2: 0.05}
    grid = (np.arange(100_000) + 0.5) / 100_000
    picks = [draw_guarded_one(float(u), law, {1, 2}, shares, 0) for u in grid]
    assert sum(p == (1, REASON_GUARDRAIL) for p in picks) == 2000
    assert sum(p == (2, REASON_GUARDRAIL) for p in picks) == 5000
    assert sum(p == (None, None) for p in picks) == 93_000
    everything = draw_guarded_one(0.5, [0.0, 0.7, 0.3], {1, 2}, shares, 0)
    assert everything == (0, REASON_FALLBACK)
    assert draw_guarded_one(random.Random(1).random(), law, set(), {}, 0) == (None, None)


# ------------------------------------------------------------------------ sliding windows


@pytest.mark.parametrize(("window", "slot"), [(600, 60), (400, 40), (3600, 60), (95, 9), (10, 1)])
def test_starts_per_window_counts_every_first_slot_a_window_can_have(
    window: float, slot: float
) -> None:
    """Brute force over a fine grid of times: within any stretch one window long, the first
    slot the window reads (``window_reads``) takes at most ``starts_per_window`` values."""
    step = slot / 7
    times = np.arange(0.0, 4 * window, step)
    slots = np.arange(-2 * window - slot, 5 * window, slot)
    first = [float(slots[[window_reads(b, slot, t, window) for b in slots]].min()) for t in times]
    most = 0
    for i, t in enumerate(times):
        within = {first[j] for j in range(i, len(times)) if times[j] <= t + window}
        most = max(most, len(within))
    assert most <= starts_per_window(window, slot)
    assert most >= starts_per_window(window, slot) - 1  # and the bound is not loose by more


def test_a_sliding_rule_shares_its_level_among_its_first_slots() -> None:
    """A 10-minute rule in 60 s slots is tested at 0.05 / 11; a rule without slots (a fixed
    stream) at 0.05."""
    rule = GuardrailRule("error", "rate", "max", 0.05, window=600)
    assert slot_width([600, 1200]) == 60 and slot_width([86400]) == 8640
    assert slot_width([5]) == 1
    (sliding,) = compile_guardrails([rule], METRICS, 2, slot=60).rules
    (fixed,) = compile_guardrails([rule], METRICS, 2).rules
    assert sliding.starts == 11 and sliding.alpha == pytest.approx(0.05 / 11)
    assert fixed.starts == 1 and fixed.alpha == pytest.approx(0.05)
