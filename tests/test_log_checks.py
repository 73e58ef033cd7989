"""The report's log scan: its bounds (segments, units) and its join of rewards to decisions,
on decoded records without a server (the server path is tests/test_report_checks.py)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bandit_router.analysis.log_checks import (
    MAX_SEGMENTS,
    MISSING,
    NO_UNIT,
    OTHER,
    CheckOptions,
    LogScanner,
)
from bandit_router.model.experiments import Arm, Experiment

EXPERIMENT = Experiment("e", (Arm("a"), Arm("b")))
LAW = {"a": 0.5, "b": 0.5}


def decision(i: int, arm: str = "a", unit: str = "", **context: float) -> dict[str, Any]:
    return {
        "arm": arm,
        "nonce": f"n{i}",
        "unit_id": unit,
        "probabilities": dict(LAW),
        "probabilities_complete": True,
        "context": context,
    }


def test_segments_beyond_the_cap_pool_into_other() -> None:
    scanner = LogScanner(EXPERIMENT, CheckOptions(by="k"))
    for i in range(MAX_SEGMENTS + 50):
        scanner.add_decision(decision(i, k=float(i)))
    scanner.add_decision(decision(10_000))  # no key
    scan = scanner.finish()
    assert len(scan.segments) == MAX_SEGMENTS
    assert OTHER in scan.segments and MISSING not in scan.segments  # the cap came first
    other = scan.segments.index(OTHER)
    assert list(scan.segment).count(other) == 50 + 2  # 51 values past the cap + the missing


def test_segments_by_a_categorical_attribute() -> None:
    """``--by`` names an attribute (a string) as well as a numeric context key; the keys seen
    (for the unknown-key message) include both."""
    scanner = LogScanner(EXPERIMENT, CheckOptions(by="tier"))
    for i, tier in enumerate(["free", "premium", "free", ""]):
        record = decision(i, length=float(i))
        if tier:
            record["attributes"] = {"tier": tier}
        scanner.add_decision(record)
    scan = scanner.finish()
    assert [scan.segments[s] for s in scan.segment] == ["free", "premium", "free", MISSING]
    assert {"tier", "length"} <= set(scan.keys_seen)


def test_unit_buckets_are_stable_and_cover_every_unit() -> None:
    scans = []
    for _ in range(2):
        scanner = LogScanner(EXPERIMENT, CheckOptions(by="unit:4"))
        for i in range(200):
            scanner.add_decision(decision(i, unit=f"user-{i}"))
        scanner.add_decision(decision(999))
        scans.append(scanner.finish())
    first, second = scans
    labels = [first.segments[s] for s in first.segment]
    assert labels == [second.segments[s] for s in second.segment]  # the same hash each time
    assert set(labels) == {"0", "1", "2", "3", NO_UNIT}


def test_exposures_are_numbered_per_unit_and_arm_and_the_last_reward_counts() -> None:
    scanner = LogScanner(EXPERIMENT, CheckOptions(first_exposures=2))
    scanner.add_reward("n0", 0.25)  # a reward can precede its decision in the stream
    for i, (arm, unit) in enumerate([("a", "u"), ("a", "u"), ("b", "u"), ("a", "u"), ("a", "")]):
        scanner.add_decision(decision(i, arm, unit))
    scanner.add_reward("n1", 0.0)  # a default reward ...
    scanner.add_reward("n1", 1.0)  # ... replaced by a late real one
    scan = scanner.finish()
    assert list(scan.first) == [1, 1, 1, 0, -1]  # -1: no unit id, not in the novelty check
    rewards = list(scan.reward)
    assert rewards[:2] == [0.25, 1.0] and all(math.isnan(r) for r in rewards[2:])
    assert scan.srm is not None
    assert np.array_equal(scan.srm.observed, [4.0, 1.0])
    assert np.allclose(scan.srm.expected, [2.5, 2.5])
