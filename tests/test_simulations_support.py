"""Replay where the logger could not choose what the target chooses (support).

The service's logs hold decisions a rule fixed (pins, pause, sticky units): there the other
arms had probability 0, and no importance-weighted estimator can see them. With each
decision's whole-procedure law in the log, replay must find those decisions, restrict or
refuse its estimates, and give an interval for all traffic that stays honest.

Tolerances: a point estimate must lie within Z_TOL = 3.5 of its own standard errors (half
width / t_0.975) of the truth, which a correct estimator fails with probability ~5e-4 per
check; the seeds are fixed anyway. The biased estimate the fix removes sits ~17 standard
errors away in the repro, so these checks cannot pass by luck.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from simulations.cli import main
from simulations.logs import (
    DecisionRecord,
    LogError,
    LoggedData,
    parse_decision,
    write_decision_log,
    write_dsjson,
)
from simulations.ope import Estimate
from simulations.replay import Target, evaluate

Z_TOL = 3.5
UNIFORM = {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}
PINNED = {"a": 1.0}


def within(estimate: Estimate, truth: float) -> bool:
    """|value - truth| <= Z_TOL standard errors, the SE read back from the 95 % interval."""
    se = (estimate.ci_high - estimate.ci_low) / (2 * 1.96)
    return abs(estimate.value - truth) <= Z_TOL * se


def service_log(
    n: int,
    seed: int,
    *,
    pinned_share: float,
    means: dict[str, float],
    pinned_means: dict[str, float] | None = None,
    complete: bool = True,
) -> list[DecisionRecord]:
    """The issue's repro: ``pinned_share`` of decisions pinned to ``a`` (propensity 1), the
    rest uniform over a, b, c; Bernoulli rewards. ``pinned_means`` lets the pinned traffic
    differ (e.g. QA units), which no estimator can see from the log."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        pinned = rng.random() < pinned_share
        arm = "a" if pinned else "abc"[int(rng.integers(3))]
        law = PINNED if pinned else UNIFORM
        mean = (pinned_means or means)[arm] if pinned else means[arm]
        records.append(
            DecisionRecord(
                decision_id=f"d{i}",
                experiment="e",
                arm=arm,
                propensity=law[arm],
                reason="PINNED" if pinned else "EXPLORE",
                reward=float(rng.random() < mean),
                probabilities=dict(law),
                probabilities_complete=complete,
            )
        )
    return records


MEANS = {"a": 0.5, "b": 0.3, "c": 0.8}


def by_method(estimates: tuple[Estimate, ...]) -> dict[str, Estimate]:
    return {e.method: e for e in estimates}


def test_issue_repro_without_laws_is_biased_and_says_support_is_unchecked() -> None:
    """The bug as reported: IPS 0.648 excludes 0.8, and an old log cannot tell."""
    data = LoggedData.from_records(
        service_log(20_000, 1, pinned_share=0.2, means=MEANS, complete=False)
    )
    evaluation = evaluate(Target.fixed_arm("c"), data)
    ips = by_method(evaluation.estimates)["ips"]
    assert not ips.covers(0.8) and ips.value < 0.7
    assert any("support cannot be checked" in w and "PINNED" in w for w in evaluation.warnings)


def test_issue_repro_with_laws_restricts_to_supported_decisions() -> None:
    data = LoggedData.from_records(service_log(20_000, 1, pinned_share=0.2, means=MEANS))
    evaluation = evaluate(Target.fixed_arm("c"), data, replays=5)
    support = evaluation.support
    assert support is not None
    assert support.checked == data.size
    pinned = sum(1 for r in data.reasons if r == "PINNED")
    assert support.supported == data.size - pinned
    assert dict(support.unsupported_reasons) == {"PINNED": pinned}
    assert support.unsupported_mass == pytest.approx(pinned / data.size)
    estimates = by_method(evaluation.estimates)
    for method in ("replay", "ips", "snips", "dr"):
        assert estimates[method].n <= support.supported, method
        assert within(estimates[method], 0.8), (method, estimates[method])
    assert estimates["bounds"].covers(0.8)
    assert any("no support" in w and "restricted" in w for w in evaluation.warnings)


def test_bounds_cover_all_traffic_when_the_pinned_traffic_differs() -> None:
    """Pinned units (QA, say) would earn 0.1 on c: the value over all traffic is
    0.8 * 0.8 + 0.2 * 0.1 = 0.66. The restricted estimates describe supported traffic (0.8)
    and say so; the bounds interval covers the whole-traffic value."""
    records = service_log(
        20_000, 2, pinned_share=0.2, means=MEANS, pinned_means={"a": 0.5, "b": 0.3, "c": 0.1}
    )
    data = LoggedData.from_records(records)
    pinned_share = sum(1 for r in data.reasons if r == "PINNED") / data.size
    truth = (1 - pinned_share) * 0.8 + pinned_share * 0.1
    estimates = by_method(evaluate(Target.fixed_arm("c"), data).estimates)
    assert estimates["bounds"].covers(truth)
    assert math.isnan(estimates["bounds"].value)  # no point value is claimed
    assert within(estimates["ips"], 0.8)


def test_too_little_support_refuses_estimates() -> None:
    data = LoggedData.from_records(service_log(5_000, 3, pinned_share=0.6, means=MEANS))
    evaluation = evaluate(Target.fixed_arm("c"), data)
    estimates = by_method(evaluation.estimates)
    for method in ("replay", "ips", "snips", "dr"):
        assert estimates[method].refused, method
        assert math.isnan(estimates[method].value)
    assert estimates["bounds"].covers(0.8)
    assert not estimates["bounds"].refused
    assert any("refused" in w for w in evaluation.warnings)


def test_a_target_within_support_gets_plain_estimates() -> None:
    """arm:a always has support (pinned rows chose it with probability 1): no restriction."""
    data = LoggedData.from_records(service_log(20_000, 4, pinned_share=0.2, means=MEANS))
    evaluation = evaluate(Target.fixed_arm("a"), data, methods=("ips", "snips", "dr"))
    assert evaluation.support is not None and evaluation.support.complete
    estimates = by_method(evaluation.estimates)
    assert "bounds" not in estimates
    assert all(e.n == data.size for e in estimates.values())
    assert within(estimates["ips"], 0.5)
    assert not any("support" in w for w in evaluation.warnings)


def test_intervals_are_clipped_to_the_reward_range() -> None:
    """30 decisions, 3 of them on the target's arm (propensity 0.05, reward 1): IPS is
    3 * 20 / 30 = 2 with a CLT interval far past [0, 1] unless clipped."""
    rng = np.random.default_rng(5)
    law = {"a": 0.95, "c": 0.05}
    records = [
        DecisionRecord(
            decision_id=f"d{i}",
            experiment="e",
            arm=arm,
            propensity=law[arm],
            reward=1.0 if arm == "c" else float(rng.random() < 0.5),
            probabilities=law,
            probabilities_complete=True,
        )
        for i, arm in enumerate(["c"] * 3 + ["a"] * 27)
    ]
    data = LoggedData.from_records(records)
    for estimate in evaluate(Target.fixed_arm("c"), data).estimates:
        assert 0.0 <= estimate.ci_low <= estimate.ci_high <= 1.0, estimate
        if not math.isnan(estimate.value):
            assert 0.0 <= estimate.value <= 1.0, estimate
    wide = evaluate(Target.fixed_arm("c"), data, reward_range=(-5.0, 5.0))
    assert by_method(wide.estimates)["ips"].ci_high > 1.0  # the clip really was the range


def test_cli_reports_support_and_refuses_with_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "log.jsonl"
    write_decision_log(service_log(3_000, 6, pinned_share=0.6, means=MEANS), log)
    out = tmp_path / "estimates.json"
    assert main(["replay", str(log), "--target", "arm:c", "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert "refused" in captured.out and "no support" in captured.err
    target = json.loads(out.read_text())["targets"][0]
    assert target["estimates"]["ips"]["refused"] is True
    assert target["estimates"]["ips"]["value"] is None
    assert target["support"]["unsupported_reasons"].keys() == {"PINNED"}
    assert 0.0 <= target["estimates"]["bounds"]["ci95_low"] <= 1.0
    assert main(["replay", str(log), "--target", "arm:c", "--reward-range", "0,0.5"]) == 2
    assert "--reward-range" in capsys.readouterr().err


def test_complete_laws_are_validated() -> None:
    good = {
        "decision_id": "d",
        "arm": "b",
        "propensity": 0.25,
        "probabilities": {"a": 0.75, "b": 0.25},
        "probabilities_complete": True,
    }
    assert parse_decision(good).probabilities_complete
    with pytest.raises(LogError) as error:
        parse_decision({**good, "probabilities": {"a": 0.5, "b": 0.25}})
    assert error.value.field == "probabilities"
    with pytest.raises(LogError) as error:
        parse_decision({**good, "propensity": 0.5})
    assert error.value.field == "propensity"
    with pytest.raises(LogError) as error:
        parse_decision({**good, "probabilities_complete": "yes"})
    assert error.value.field == "probabilities_complete"
    old = {k: v for k, v in good.items() if k != "probabilities_complete"}
    assert not parse_decision(old).probabilities_complete


def test_dsjson_gives_arms_outside_a_complete_law_probability_zero(tmp_path: Path) -> None:
    record = DecisionRecord(
        decision_id="d",
        experiment="e",
        arm="a",
        propensity=1.0,
        reason="PINNED",
        reward=1.0,
        probabilities={"a": 1.0},
        probabilities_complete=True,
    )
    path = tmp_path / "log.dsjson"
    write_dsjson([record], path, ["a", "b", "c"])
    event = json.loads(path.read_text())
    assert event["p"] == [1.0, 0.0, 0.0]
    assert event["_label_probability"] == 1.0
