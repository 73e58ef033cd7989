"""SLO studies: multi-metric arms, an objective, guardrails run by policies.guardrails.

Statistical bounds come from the test's guarantee (a false trip per arm and window has
probability at most alpha), checked with a Clopper-Pearson interval at level 1e-4.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import special

from simulations.report import regret_table, summarize
from simulations.runner import run_study
from simulations.study import StudyError, load_study, parse_study

STUDY = Path(__file__).resolve().parent.parent / "simulations" / "studies" / "slo_routing.yaml"


def study_data(**overrides: Any) -> dict[str, Any]:
    """A small SLO study: ``b`` degrades at 300 (p95 latency far above 1500), recovers at 900."""
    data: dict[str, Any] = {
        "name": "slo_small",
        "horizon": 1800,
        "runs": 6,
        "seed": 4,
        "environment": {
            "type": "slo",
            "arms": ["a", "b"],
            "quality": [0.7, 0.8],
            "latency_ms": {"median": [200, 300], "sigma": [0.3, 0.3]},
            "cost_usd": [0.001, 0.002],
            "error": [0.01, 0.01],
            "changes": [
                {"at": 300, "arm": "b", "latency_ms": {"median": 1500, "sigma": 0.5}},
                {"at": 900, "arm": "b", "latency_ms": {"median": 300, "sigma": 0.3}},
            ],
        },
        "objective": {"weights": {"quality": 1.0, "cost_usd": -1.0}},
        "guardrails": [
            {
                "metric": "latency_ms",
                "statistic": "quantile",
                "quantile": 0.95,
                "max": 1500,
                "window": 900,
                "min_samples": 30,
                "confidence": 0.95,
                "probe_share": 0.1,
            },
        ],
        "fallback_arm": "a",
        "policies": [{"name": "epsilon_greedy", "params": {"epsilon": 0.1}}],
    }
    data.update(overrides)
    return data


def test_a_degraded_arm_is_quarantined_and_recovers() -> None:
    result = run_study(parse_study(study_data()))
    g = result.results[0].guardrails
    assert g is not None
    # one true trip per run (b after 300), none false; every run quarantined b and freed it
    assert g.true_trips.tolist() == [1.0] * 6 and g.false_trips.sum() == 0
    assert not np.isnan(g.to_quarantine).any() and not np.isnan(g.to_recover).any()
    # the verdict needs min_samples (30) of b's bad latencies, at any share >= the probe's
    assert np.all(g.to_quarantine <= 30 / 0.1)
    # the window restarts at 900; 62 clean probes (policies.bounded_mean) at share 0.1 take
    # about 620 decisions: the horizon leaves 900
    assert np.all(g.to_recover <= 900)
    summary = summarize(result)
    assert summary["policies"][0]["guardrails"]["decisions_to_recover"]["censored"] == 0
    assert "to recover (median)" in [c.header for c in regret_table(summary).columns]


def test_the_example_study_quarantines_its_degraded_arm() -> None:
    study = load_study(STUDY)
    short = replace(study, horizon=2300, runs=4, policies=study.policies[:1])
    g = run_study(short).results[0].guardrails
    assert g is not None and g.false_trips.sum() == 0
    assert not np.isnan(g.to_quarantine).any()


def test_false_trips_of_an_arm_at_its_slo_are_at_most_alpha() -> None:
    """Both arms have an error rate exactly at the rule's max for one whole window: each is
    falsely quarantined with probability at most alpha = 0.05, so a run has any false trip
    with probability at most 2 alpha (union bound)."""
    env = dict(study_data()["environment"], error=[0.05, 0.05], changes=[])
    rule = {"metric": "error", "statistic": "rate", "max": 0.05, "window": 400,
            "min_samples": 1, "confidence": 0.95, "probe_share": 0.05}  # fmt: skip
    data = study_data(environment=env, guardrails=[rule], horizon=400, runs=2000)
    g = run_study(parse_study(data)).results[0].guardrails
    assert g is not None and g.true_trips.sum() == 0
    runs_with_trips = int((g.false_trips > 0).sum())
    low = special.betaincinv(runs_with_trips, 2000 - runs_with_trips + 1, 5e-5)
    assert runs_with_trips == 0 or low <= 2 * 0.05


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"guardrails": [{"metric": "latency_ms", "statistic": "mean", "max": 5}]},
         "guardrails[0].statistic"),
        ({"guardrails": [{"metric": "error", "statistic": "rate", "max": 0.1, "min": 0.0}]},
         "guardrails[0]"),
        ({"guardrails": [{"metric": "tokens", "statistic": "rate", "max": 0.1}]},
         "guardrails[0].metric"),
        ({"objective": {"weights": {"speed": 1.0}}}, "objective.weights.speed"),
        ({"fallback_arm": "z"}, "fallback_arm"),
    ],
)  # fmt: skip
def test_bad_slo_fields_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(StudyError) as caught:
        parse_study(study_data(**change))
    assert caught.value.field == field


def test_guardrails_need_an_slo_environment() -> None:
    data = {"horizon": 10, "environment": {"means": [0.5, 0.6]}, "policies": ["thompson"]}
    with pytest.raises(StudyError) as caught:
        parse_study(dict(data, guardrails=[]))
    assert caught.value.field == "guardrails"
