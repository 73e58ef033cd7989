"""The live decision path draws exactly the law whose propensities it logs.

Route decides from a block pre-drawn by the policy's vectorised ``select`` (no exclusions) or
from the scalar ``select_one`` (with exclusions), and logs propensities from the quadrature
or closed form. A chi-square test at level 1e-6 (fixed seed) checks each path against the
logged propensities, with and without an exploration floor.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from scipy.stats import chi2

from bandit_router.model.experiments import Arm, Experiment, PolicySpec
from bandit_router.route.cache import CachedExperiment
from bandit_router.store.redis_store import ExperimentState

DRAWS = 40_000
LEVEL = 1e-6


def entry_for(
    policy: str, params: dict[str, float], floor: float = 0.0, **fields: Any
) -> CachedExperiment:
    arms = ("a", "b", "c", "d")
    experiment = Experiment(
        name="law",
        arms=tuple(Arm(a) for a in arms),
        policy=PolicySpec(policy, params),
        exploration_floor=floor,
        **fields,
    ).validated()
    n = {"a": 20, "b": 25, "c": 12, "d": 30}
    wins = {"a": 9, "b": 13, "c": 5, "d": 14}
    stats: dict[str, str] = {}
    for arm in arms:
        stats[f"{arm}:n"] = str(n[arm])
        stats[f"{arm}:sum"] = str(wins[arm])
        stats[f"{arm}:sum_sq"] = str(wins[arm])
    return CachedExperiment.build(ExperimentState(experiment, stats))


def chi_square_p(counts: Counter[int], expected: dict[int, float], draws: int) -> float:
    statistic = sum(
        (counts[i] - draws * p) ** 2 / (draws * p) for i, p in expected.items() if p > 0
    )
    dof = sum(1 for p in expected.values() if p > 0) - 1
    return float(chi2.sf(statistic, dof))


@pytest.mark.parametrize(
    ("policy", "params"),
    [
        ("thompson", {}),
        ("epsilon_greedy", {"epsilon": 0.3}),
        ("top_two_thompson", {}),
        ("gaussian_thompson", {}),
    ],
)
@pytest.mark.parametrize("floor", [0.0, 0.05])
def test_block_and_scalar_paths_match_logged_propensities(
    policy: str, params: dict[str, float], floor: float
) -> None:
    from bandit_router.route.router import Router

    entry = entry_for(policy, params, floor)
    rng = random.Random(12345)
    router = Router.__new__(Router)
    router.rng = rng
    router.sticky = None
    for excluded in (frozenset(), frozenset({1})):
        eligible = tuple(i for i in entry.active if i not in excluded)
        counts: Counter[int] = Counter(
            router.choose(entry, "", excluded, 0.0).arm for _ in range(DRAWS)
        )
        expected = entry.mixed_propensities(eligible)
        assert sum(expected.values()) == pytest.approx(1.0, abs=1e-12)
        assert all(p >= floor - 1e-12 for p in expected.values())
        assert set(counts) <= set(eligible)
        p_value = chi_square_p(counts, expected, DRAWS)
        assert p_value > LEVEL, (policy, floor, excluded, counts, expected)


def test_a_new_state_starts_a_new_block() -> None:
    """Blocks belong to one state: a refresh with new statistics never serves stale draws."""
    entry = entry_for("thompson", {})
    rng = random.Random(1)
    entry.draw(entry.active, rng)
    assert entry._block is not None and entry._block.refills == 1
    fresh = entry_for("thompson", {})
    assert fresh._block is None


@pytest.mark.parametrize(("control", "burn_in"), [("", 0), ("d", 0), ("", 1000), ("d", 1000)])
def test_logged_law_is_the_whole_procedures_law(control: str, burn_in: int) -> None:
    """With a holdout (uniform or to a control arm), a burn-in and a floor, every random
    decision logs one law, P(arm) = h q(arm) + (1 - h) r(arm), and the arms drawn follow it
    (chi-square at level 1e-6), whichever branch each decision took."""
    from bandit_router.route.router import Router

    share = 0.3
    entry = entry_for(
        "epsilon_greedy",
        {"epsilon": 0.2},
        floor=0.05,
        holdout_share=share,
        holdout_control_arm=control,
        burn_in=burn_in,
    )
    experiment = entry.experiment
    router = Router.__new__(Router)
    router.rng = random.Random(4321)
    router.sticky = None
    choices = [router.choose(entry, "", frozenset(), 0.0) for _ in range(DRAWS)]
    laws = {id(choice.law) for choice in choices}
    assert len(laws) == 1  # one shared table: the log writes it once per flush
    law = choices[0].law
    names = experiment.arm_names
    uniform = 1 / len(names)
    after = (
        dict.fromkeys(range(len(names)), uniform)
        if burn_in
        else entry.mixed_propensities(entry.active)
    )
    for i, name in enumerate(names):
        held = (1.0 if name == control else 0.0) if control else uniform
        assert law[name] == pytest.approx(share * held + (1 - share) * after[i], abs=1e-12)
    assert sum(law.values()) == pytest.approx(1.0, abs=1e-12)
    counts: Counter[int] = Counter(choice.arm for choice in choices)
    expected = {i: law[name] for i, name in enumerate(names)}
    assert chi_square_p(counts, expected, DRAWS) > LEVEL


@pytest.mark.parametrize("burn_in", [0, 1000])
def test_capped_law_is_drawn_and_logged(burn_in: int) -> None:
    """Traffic caps (max_share): the floored policy law (or burn-in's uniform) with b capped
    at 0.2 and the excess spread over the others in proportion; the arms drawn follow the
    logged law (chi-square at level 1e-6), with and without an exclusion. Excluding the one
    uncapped arm leaves caps summing below 1; it is also the fallback arm (the first), which
    cannot take the leftover, so the caps are relaxed in proportion (c / sum c)."""
    from bandit_router.route.router import Router

    caps = {"b": 0.2, "d": 0.3, "c": 0.35}
    entry = entry_for("thompson", {}, floor=0.05, max_share=caps, burn_in=burn_in)
    names = entry.experiment.arm_names
    router = Router.__new__(Router)
    router.rng = random.Random(2024)
    router.sticky = None
    for excluded in (frozenset(), frozenset({2}), frozenset({0})):
        eligible = tuple(i for i in entry.active if i not in excluded)
        choices = [router.choose(entry, "", excluded, 0.0) for _ in range(DRAWS)]
        law = choices[0].law
        expected = {names.index(name): p for name, p in law.items()}
        assert sum(expected.values()) == pytest.approx(1.0, abs=1e-12)
        if 0 in eligible:  # a is uncapped: every cap holds
            assert all(
                expected[names.index(arm)] <= c + 1e-12
                for arm, c in caps.items()
                if names.index(arm) in eligible
            )
        else:  # b, c, d capped, caps sum to 0.85, fallback a excluded: relaxed
            for arm, c in caps.items():
                assert expected[names.index(arm)] == pytest.approx(c / 0.85, abs=1e-12)
        if burn_in == 0 and not excluded:
            # b's floored policy share is above its cap: exactly the cap; the uncapped arms
            # keep their ratios
            base = entry.mixed_propensities(eligible)
            assert base[1] == pytest.approx(0.2, abs=1e-12)
            raw = {
                i: p for i, p in enumerate(entry.policy.probabilities_one(entry.stats, eligible))
            }
            floored = {i: 0.05 + (1 - 4 * 0.05) * raw[i] for i in eligible}
            assert floored[1] > 0.2  # the cap binds
            free = [i for i in eligible if base[i] < caps.get(names[i], 2.0) - 1e-12]
            ratios = {base[i] / floored[i] for i in free}
            assert max(ratios) == pytest.approx(min(ratios), rel=1e-9)
        assert all(choice.propensity == law[names[choice.arm]] for choice in choices[:200])
        counts: Counter[int] = Counter(choice.arm for choice in choices)
        assert chi_square_p(counts, expected, DRAWS) > LEVEL, (excluded, counts, expected)


@pytest.mark.parametrize("burn_in", [0, 1000])
def test_caps_leave_the_fallback_arm_what_they_cannot_take(burn_in: int) -> None:
    """A request excluding the one uncapped arm a leaves b, c, d capped at 0.2, 0.35, 0.3:
    m = 0.15 goes to the fallback arm c (REASON_FALLBACK). The whole law is b 0.2, c 0.5,
    d 0.3 whatever the policy (or burn-in) says; the arms drawn follow it (chi-square at level
    1e-6), every decision answers and logs its arm's probability under it, and the number of
    FALLBACK decisions is Binomial(DRAWS, 0.15): within z = 5 standard deviations (two-sided
    level 6e-7). A request that also excludes c relaxes the caps in proportion (c / sum c)."""
    from bandit_router.route.router import Reason, Router

    caps = {"b": 0.2, "c": 0.35, "d": 0.3}
    entry = entry_for("thompson", {}, floor=0.05, max_share=caps, burn_in=burn_in, fallback_arm="c")
    names = entry.experiment.arm_names
    router = Router.__new__(Router)
    router.rng = random.Random(1515)
    router.sticky = None
    choices = [router.choose(entry, "", frozenset({0}), 0.0) for _ in range(DRAWS)]
    whole = {"b": 0.2, "c": 0.5, "d": 0.3}
    for choice in choices:
        assert choice.law.keys() == whole.keys()
        assert all(choice.law[arm] == pytest.approx(p, abs=1e-12) for arm, p in whole.items())
        assert choice.propensity == choice.law[names[choice.arm]]
    counts: Counter[int] = Counter(choice.arm for choice in choices)
    expected = {names.index(arm): p for arm, p in whole.items()}
    assert chi_square_p(counts, expected, DRAWS) > LEVEL, counts
    fallbacks = sum(1 for choice in choices if choice.reason is Reason.FALLBACK)
    assert abs(fallbacks - DRAWS * 0.15) <= 5.0 * (DRAWS * 0.15 * 0.85) ** 0.5, fallbacks
    assert all(choice.arm == 2 for choice in choices if choice.reason is Reason.FALLBACK)
    usual = {Reason.BURN_IN} if burn_in else {Reason.EXPLORE, Reason.EXPLOIT}
    assert {c.reason for c in choices if c.reason is not Reason.FALLBACK} <= usual

    relaxed = [router.choose(entry, "", frozenset({0, 2}), 0.0) for _ in range(2000)]
    for choice in relaxed:
        assert choice.reason is not Reason.FALLBACK
        assert choice.law["b"] == pytest.approx(0.2 / 0.5, abs=1e-12)
        assert choice.law["d"] == pytest.approx(0.3 / 0.5, abs=1e-12)
        assert choice.propensity == choice.law[names[choice.arm]]


def test_a_contextual_policy_leaves_the_fallback_arm_what_the_caps_cannot_take() -> None:
    """The same law for a contextual policy (lin_ts, its law for this feature vector): the
    request excludes the uncapped arm a, so b, c, d get exactly their caps and the fallback
    arm c the leftover 0.15 with REASON_FALLBACK (binomial bound at z = 5)."""
    from bandit_router.model.experiments import ContextFeature
    from bandit_router.route.router import Reason, Router, _Features

    experiment = Experiment(
        name="ctxlaw",
        arms=tuple(Arm(a) for a in ("a", "b", "c", "d")),
        policy=PolicySpec("lin_ts", {}),
        context_features=(ContextFeature("x"),),
        max_share={"b": 0.2, "c": 0.35, "d": 0.3},
        fallback_arm="c",
    ).validated()
    entry = CachedExperiment.build(ExperimentState(experiment, {}))
    assert entry.space is not None
    features = _Features(entry.space.build({"x": 0.7}, {}), {})
    router = Router.__new__(Router)
    router.rng = random.Random(77)
    router.sticky = None
    draws = 20_000
    choices = [router.choose(entry, "", frozenset({0}), 0.0, features) for _ in range(draws)]
    whole = {"b": 0.2, "c": 0.5, "d": 0.3}
    names = experiment.arm_names
    for choice in choices[:500]:
        assert choice.law == pytest.approx(whole, abs=1e-12)
        assert choice.propensity == pytest.approx(whole[names[choice.arm]], abs=1e-12)
    counts: Counter[int] = Counter(choice.arm for choice in choices)
    expected = {names.index(arm): p for arm, p in whole.items()}
    assert chi_square_p(counts, expected, draws) > LEVEL, counts
    fallbacks = sum(1 for choice in choices if choice.reason is Reason.FALLBACK)
    assert abs(fallbacks - draws * 0.15) <= 5.0 * (draws * 0.15 * 0.85) ** 0.5, fallbacks


def test_probes_and_caps_together_keep_the_leftover_for_the_fallback() -> None:
    """a is quarantined with a probe share of 0.05 and is the fallback arm; b, c, d (capped at
    0.2, 0.35, 0.3) are the bandit's, and its share 0.95 is itself capped with its leftover
    0.15 to a. The whole law: a 0.05 + 0.95 x 0.15, b 0.95 x 0.2, c 0.95 x 0.35,
    d 0.95 x 0.3; the arms drawn follow it (chi-square at level 1e-6), probes are
    Binomial(DRAWS, 0.05) and fallbacks Binomial(DRAWS, 0.1425) (z = 5). A probe answers its
    whole-procedure probability, the bandit's decisions (the fallback's included) their
    probability within the bandit's share, as every bandit decision under probes does."""
    from bandit_router.model.experiments import ArmState
    from bandit_router.model.guardrails import GuardrailRule, Statistic
    from bandit_router.model.metrics import MetricKind, MetricSpec
    from bandit_router.route.router import Reason, Router

    experiment = Experiment(
        name="guardcaps",
        arms=(Arm("a", state=ArmState.QUARANTINED), Arm("b"), Arm("c"), Arm("d")),
        policy=PolicySpec("thompson", {}),
        max_share={"b": 0.2, "c": 0.35, "d": 0.3},
        metrics=(MetricSpec("error", MetricKind.BINARY),),
        guardrails=(GuardrailRule("error", Statistic.RATE, max=0.05, probe_share=0.05),),
        fallback_arm="a",
    ).validated()
    entry = CachedExperiment.build(ExperimentState(experiment, {}))
    assert entry.probes == ((0, 0.05),) and entry.active == (1, 2, 3)
    router = Router.__new__(Router)
    router.rng = random.Random(99)
    router.sticky = None
    choices = [router.choose(entry, "", frozenset(), 0.0) for _ in range(DRAWS)]
    whole = {"a": 0.05 + 0.95 * 0.15, "b": 0.95 * 0.2, "c": 0.95 * 0.35, "d": 0.95 * 0.3}
    bandit = {"a": 0.15, "b": 0.2, "c": 0.35, "d": 0.3}
    names = experiment.arm_names
    for choice in choices:
        assert choice.law == pytest.approx(whole, abs=1e-12)
        arm = names[choice.arm]
        if choice.reason is Reason.GUARDRAIL:
            assert arm == "a" and choice.propensity == pytest.approx(whole["a"], abs=1e-12)
        else:
            assert choice.propensity == pytest.approx(bandit[arm], abs=1e-12)
    counts: Counter[int] = Counter(choice.arm for choice in choices)
    expected = {names.index(arm): p for arm, p in whole.items()}
    assert chi_square_p(counts, expected, DRAWS) > LEVEL, counts
    reasons = Counter(choice.reason for choice in choices)
    for reason, p in ((Reason.GUARDRAIL, 0.05), (Reason.FALLBACK, 0.95 * 0.15)):
        assert abs(reasons[reason] - DRAWS * p) <= 5.0 * (DRAWS * p * (1 - p)) ** 0.5, reasons
    assert all(names[c.arm] == "a" for c in choices if c.reason is Reason.FALLBACK)
