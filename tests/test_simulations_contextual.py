"""Contextual simulations: the regret of the serving contextual policies against theory and
against context-free Thompson sampling, and the contextual study files.

Sizes are small (a few seconds in all); the statements are about means over seeded runs,
with margins from the per-run spread (z = 3, one-sided 99.87 %).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from simulations.contextual_environments import ContextualEnvironment
from simulations.report import summarize
from simulations.runner import run_study
from simulations.study import StudyError, load_study, parse_study

Z = 3.0
STUDIES = Path(__file__).resolve().parent.parent / "simulations" / "studies"
SEGMENTS = {
    "type": "segments",
    "arms": ["a", "b", "c"],
    "segments": [
        {"name": "s0", "means": [0.7, 0.3, 0.3]},
        {"name": "s1", "means": [0.3, 0.7, 0.3]},
        {"name": "s2", "means": [0.3, 0.3, 0.7]},
    ],
}


def _upper(values: np.ndarray[Any, Any]) -> float:
    """Mean + Z standard errors: a one-sided upper bound on the expectation."""
    return float(values.mean() + Z * values.std(ddof=1) / math.sqrt(values.size))


def test_lin_ts_regret_is_sublinear_and_within_the_bound_order() -> None:
    """d = 10, 5 arms, |x| = |theta_k| = 1, noise 0.5.

    Linear Thompson sampling's regret is O~(d^(3/2) sqrt(T)) (Agrawal and Goyal 2013; the
    disjoint per-arm model is a linear bandit over the stacked coefficients). Two checks:

    * sublinear, with the bound's shape: for R(t) proportional to sqrt(t) ln t the regret
      of the last quarter [1500, 2000] is (sqrt(2000) ln 2000 - sqrt(1500) ln 1500) /
      (sqrt(500) ln 500) = 0.41 times that of the first quarter [0, 500]; for linear regret
      it is 1. We assert late - 0.5 early < 0 per run (mean + 3 SE), between the two;
    * the constant: R(T) <= 1 x d sqrt(T) ln T, a bound below the theorem's order by
      sqrt(d), so passing it passes the order.
    """
    doc = {
        "horizon": 2000,
        "runs": 16,
        "seed": 5,
        "checkpoints": 9,  # steps 1, 251, 501, ..., 1500, 1750, 2000
        "environment": {"type": "linear", "arms": 5, "features": 10, "sigma": 0.5},
        "policies": ["lin_ts"],
    }
    result = run_study(parse_study(doc)).results[0]
    steps, regret = result.steps, result.regret
    assert steps[2] == 501 and steps[6] == 1500 and steps[-1] == 2000
    early = regret[:, 2]
    late = regret[:, -1] - regret[:, 6]
    assert _upper(late - 0.5 * early) < 0.0
    d, horizon = 10, 2000
    assert _upper(regret[:, -1]) <= d * math.sqrt(horizon) * math.log(horizon)


def test_contextual_policies_beat_context_free_thompson_on_segments() -> None:
    """3 segments, segment s's best arm is s (0.7 vs 0.3). Context-free Thompson can do no
    better than the best fixed arm: regret 0.7 - 13/30 = 0.267 per decision. Each contextual
    policy's paired difference (common random numbers) must exceed 3 of its standard errors,
    and it must learn: regret below a quarter of the best fixed arm's."""
    doc = {
        "horizon": 1000,
        "runs": 12,
        "seed": 14,
        "checkpoints": 5,
        "environment": SEGMENTS,
        "policies": ["lin_ts", "lin_ucb", "logistic_ts", "thompson"],
    }
    outcome = run_study(parse_study(doc))
    oracle, fixed = outcome.reference_rates or (math.nan, math.nan)
    assert oracle == pytest.approx(0.7, abs=1e-12)
    assert fixed == pytest.approx(13 / 30, abs=1e-12)
    final = {r.label: r.regret[:, -1] for r in outcome.results}
    for name in ("lin_ts", "lin_ucb", "logistic_ts"):
        gain = final["thompson"] - final[name]
        assert gain.mean() > Z * gain.std(ddof=1) / math.sqrt(gain.size), name
        assert _upper(final[name]) < 0.25 * (oracle - fixed) * 1000, name
    summary = summarize(outcome)
    assert summary["reference"]["best_fixed_arm_regret_per_decision"] == pytest.approx(
        0.7 - 13 / 30
    )


def test_contextual_study_files_load_and_match_the_service_layout() -> None:
    for stem in ("contextual_segments", "contextual_linear", "contextual_logistic"):
        assert isinstance(load_study(STUDIES / f"{stem}.yaml").environment, ContextualEnvironment)
    routing = load_study(STUDIES / "model_routing.yaml").environment
    assert isinstance(routing, ContextualEnvironment)
    # intercept, one column per prompt type, "other": route/features.py's categorical layout
    assert routing.columns == ("intercept", "chat", "code", "math", "other")
    x, _ = routing.draw(4, np.random.default_rng(0))
    assert x.shape == (4, 5) and (x[:, 0] == 1).all() and (x[:, 1:].sum(axis=1) == 1).all()
    assert routing.reward_bounds == pytest.approx((-0.2, 0.99))


@pytest.mark.parametrize(
    ("environment", "policy", "field"),
    [
        ({**SEGMENTS, "segments": [{"name": "s", "means": [0.5, 0.5, 0.5]}]}, "lin_ts",
         "environment.segments"),
        ({**SEGMENTS, "segments": [{"name": "s", "means": [0.5]}] * 2}, "lin_ts",
         "environment.segments[0].means"),
        ({**SEGMENTS, "colour": 1}, "lin_ts", "environment.colour"),
        ({"type": "linear", "arms": 3, "features": 0}, "lin_ts", "environment.features"),
        ({"type": "linear", "arms": 3, "features": 2}, "logistic_ts", "policies[0].name"),
        ({"type": "bernoulli", "means": [0.5, 0.4]}, "lin_ts", "policies[0].name"),
    ],
)  # fmt: skip
def test_bad_contextual_studies_name_the_field(
    environment: dict[str, Any], policy: str, field: str
) -> None:
    doc = {"horizon": 10, "environment": environment, "policies": [policy]}
    with pytest.raises(StudyError) as info:
        parse_study(doc)
    assert info.value.field == field
