"""Replay on the service's own exported logs: pins, holdout and sticky units included.

A real server (embedded store, seeded router) routes a known Bernoulli environment; its log
is exported through Admin.ExportDecisions and replayed. Checks:

* the logged law of every decision is the law the router really drew from (counts within the
  binomial band n p +- 4 sqrt(n p (1 - p)), see ``test_controls_helpers``);
* pinned and sticky decisions log all mass on their arm, so replay finds them unsupported;
* the replayed value of a fixed-arm target is within Z_TOL = 3.5 standard errors of the
  truth (a correct estimator fails this with probability ~5e-4; seeds are fixed), while the
  propensities Route answered (within each rule) give an IPS estimate far from it.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from bandit_router.analysis.export_formats import write_records
from bandit_router.client import BanditClient, RouteResult
from bandit_router.v1 import admin_pb2, experiment_pb2
from simulations.logs import LoggedData, read_decision_log
from simulations.replay import Target, evaluate

from .test_controls_helpers import SeededServer, assert_binomial, stop_thread

pytestmark = pytest.mark.integration

MEANS = {"a": 0.2, "b": 0.5, "c": 0.7}
HOLDOUT = 0.3
Z_TOL = 3.5


@pytest.fixture
def client() -> Iterator[BanditClient]:
    server = SeededServer(20261204, refresh_interval=0.05).start()
    try:
        with BanditClient(server.target, timeout=5, max_attempts=1) as c:
            yield c
    finally:
        stop_thread(server)


def rewarded_routes(
    client: BanditClient, name: str, units: list[str], seed: int
) -> list[RouteResult]:
    rng = random.Random(seed)
    decisions = []
    for unit in units:
        decision = client.route(name, unit_id=unit)
        client.reward(decision.decision_id, float(rng.random() < MEANS[decision.arm]))
        decisions.append(decision)
    return decisions


def exported(client: BanditClient, name: str, count: int, path: Path) -> LoggedData:
    deadline = time.monotonic() + 10
    while True:  # decisions are written a linger after they are made
        messages = list(client.export_decisions(name))
        if len(messages) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    write_records(messages, "jsonl", str(path))
    return LoggedData.from_records(read_decision_log(path), ["a", "b", "c"])


def test_holdout_and_pins_replay_without_bias(client: BanditClient, tmp_path: Path) -> None:
    """Floor 1/3 makes the policy's law uniform; the holdout goes to control arm a with share
    0.3, so every unpinned decision's law is a: 0.3 + 0.7/3, b and c: 0.7/3. One unit in
    eight is pinned to b."""
    client.create_experiment(
        "ope",
        ["a", "b", "c"],
        exploration=experiment_pb2.ExplorationControls(floor=1 / 3),
        holdout=experiment_pb2.Holdout(share=HOLDOUT, control_arm="a"),
    )
    client.call_admin(
        "PinArm", admin_pb2.PinArmRequest(experiment="ope", arm="b", unit_id="qa", reason="qa")
    )
    time.sleep(0.2)  # the pin reaches the router's cache
    units = ["qa" if i % 8 == 0 else f"u{i}" for i in range(1200)]
    decisions = rewarded_routes(client, "ope", units, seed=1)
    data = exported(client, "ope", len(decisions), tmp_path / "ope.jsonl")
    assert data.size == len(decisions)
    assert data.laws is not None and data.complete.all()

    law = {"a": HOLDOUT + (1 - HOLDOUT) / 3, "b": (1 - HOLDOUT) / 3, "c": (1 - HOLDOUT) / 3}
    free = [i for i, reason in enumerate(data.reasons) if reason != "PINNED"]
    pinned = [i for i, reason in enumerate(data.reasons) if reason == "PINNED"]
    assert len(pinned) == units.count("qa")
    for i in free:
        assert dict(zip("abc", data.laws[i], strict=True)) == pytest.approx(law)
    for i in pinned:
        assert list(data.laws[i]) == [0.0, 1.0, 0.0]
    counts = Counter(int(data.arms[i]) for i in free)
    for index, arm in enumerate("abc"):  # the logged law is the law routed
        assert_binomial(counts[index], len(free), law[arm], f"arm {arm}")

    evaluation = evaluate(Target.fixed_arm("c"), data, replays=5)
    support = evaluation.support
    assert support is not None
    assert dict(support.unsupported_reasons) == {"PINNED": len(pinned)}
    estimates = {e.method: e for e in evaluation.estimates}
    for method in ("ips", "snips", "dr"):
        estimate = estimates[method]
        se = (estimate.ci_high - estimate.ci_low) / (2 * 1.96)
        assert abs(estimate.value - MEANS["c"]) <= Z_TOL * se, (method, estimate)
    assert estimates["bounds"].covers(MEANS["c"])
    assert any("no support" in w and "PINNED" in w for w in evaluation.warnings)

    # What the issue reported: the propensities Route answers are within each rule (1 for a
    # holdout to the control arm, 1 when pinned), and IPS with them is far off.
    terms = [
        float(data.rewards[i]) / d.propensity if d.arm == "c" else 0.0
        for i, d in enumerate(decisions)
    ]
    naive = statistics.fmean(terms)
    naive_se = statistics.stdev(terms) / math.sqrt(len(terms))
    assert abs(naive - MEANS["c"]) > 4 * naive_se, (naive, naive_se)


def test_sticky_repeats_log_their_arm_as_certain(client: BanditClient, tmp_path: Path) -> None:
    client.create_experiment("sticky", ["a", "b", "c"], sticky=experiment_pb2.Sticky(enabled=True))
    units = [f"u{i % 40}" for i in range(200)]  # 40 units, five decisions each
    decisions = rewarded_routes(client, "sticky", units, seed=2)
    data = exported(client, "sticky", len(decisions), tmp_path / "sticky.jsonl")
    assert data.laws is not None
    first: set[str] = set()
    for i, (decision, unit) in enumerate(zip(decisions, units, strict=True)):
        row = dict(zip("abc", data.laws[i], strict=True))
        if unit in first:
            assert decision.reason == "STICKY"
            assert row == {**dict.fromkeys("abc", 0.0), decision.arm: 1.0}
        else:
            first.add(unit)
            assert sum(row.values()) == pytest.approx(1.0)
            assert all(p > 0 for p in row.values())  # a fresh Thompson law over three arms
    evaluation = evaluate(Target.uniform(), data)
    assert evaluation.support is not None
    assert evaluation.support.supported == len(first)
    assert dict(evaluation.support.unsupported_reasons) == {"STICKY": len(units) - len(first)}
