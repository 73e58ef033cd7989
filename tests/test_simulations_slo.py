"""SLO studies: multi-metric arms, an objective, guardrails run by policies.guardrails.

Statistical bounds come from the test's guarantee (a false trip per arm and window of time
has probability at most alpha), checked with a Clopper-Pearson interval at level 1e-4.
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
    """A small SLO study: ``b`` degrades at 300 (p95 latency far above 1500), recovers at 900;
    the rule's window (1500) holds enough probes (150 at share 0.1) for a release."""
    data: dict[str, Any] = {
        "name": "slo_small",
        "horizon": 2700,
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
                "window": 1500,
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
    # b's last slow probe (before 900) sits in the slot [750, 900) (slots of 150), which the
    # window of 1500 reads until 2400; from then on it holds only clean probes, about 150 of
    # them at share 0.1, more than the 106 the satisfied verdict needs at the rule's level
    # 0.05 / 11 (policies.bounded_mean.fewest_samples_below): recovered by 2400 + one step
    assert np.all(g.to_recover <= 2400 - 900 + 1)
    summary = summarize(result)
    assert summary["policies"][0]["guardrails"]["decisions_to_recover"]["censored"] == 0
    assert "to recover (median)" in [c.header for c in regret_table(summary).columns]


def test_the_example_study_quarantines_its_degraded_arm() -> None:
    study = load_study(STUDY)
    short = replace(study, horizon=2600, runs=4, policies=study.policies[:1])
    g = run_study(short).results[0].guardrails
    assert g is not None and g.false_trips.sum() == 0
    assert not np.isnan(g.to_quarantine).any()


def test_false_trips_of_an_arm_at_its_slo_are_at_most_alpha_per_window() -> None:
    """Both arms have an error rate exactly at the rule's max for five windows, read as the
    service reads them (sliding slots): each arm is falsely quarantined at most alpha = 0.05
    times per window of time (the level shared among a window's first slots, a union bound;
    policies.guardrails). Trips are counted per (run, arm, window of time): 10,000 cells."""
    env = dict(study_data()["environment"], error=[0.05, 0.05], changes=[])
    rule = {"metric": "error", "statistic": "rate", "max": 0.05, "window": 400,
            "min_samples": 1, "confidence": 0.95, "probe_share": 0.05}  # fmt: skip
    runs, windows = 1000, 5
    data = study_data(environment=env, guardrails=[rule], horizon=400 * windows, runs=runs)
    g = run_study(parse_study(data)).results[0].guardrails
    assert g is not None and g.true_trips.sum() == 0
    trips, cells = int(g.false_trips.sum()), runs * 2 * windows
    low = special.betaincinv(trips, cells - trips + 1, 5e-5) if trips else 0.0
    assert low <= 0.05


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
