"""The decision log exported through Admin.ExportDecisions reads back as replay expects."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bandit_router.analysis.exports import decision_records
from bandit_router.client import BanditClient
from bandit_router.model.experiments import Arm, Experiment, PolicySpec
from bandit_router.route.decision_log import encode
from bandit_router.route.router import Reason
from bandit_router.route.tokens import DecisionSigner
from bandit_router.store.keys import ExperimentKeys
from bandit_router.store.redis_store import Store
from bandit_router.v1 import experiment_pb2 as pb
from bandit_router.v1 import router_pb2
from simulations.logs import read_decision_log

from .servers import ServerThread


def test_export_round_trip(any_server: ServerThread, tmp_path: Path) -> None:
    with BanditClient(any_server.target, timeout=5) as client:
        client.create_experiment("log", ["a", "b", "c"], reward_window=60, default_reward=0.0)
        decisions = [
            client.route("log", unit_id=f"u{i}", context={"x": float(i)}) for i in range(30)
        ]
        rewarded = {d.decision_id: float(i % 2) for i, d in enumerate(decisions) if i % 3}
        for decision_id, value in rewarded.items():
            assert client.reward(decision_id, value) == "APPLIED"
        time.sleep(0.2)  # decisions are written a linger (25 ms) after they were made
        records = list(client.export_decisions("log"))
    assert [r.decision_id for r in records] == [d.decision_id for d in decisions]
    for index, (record, decision) in enumerate(zip(records, decisions, strict=True)):
        assert record.arm == decision.arm
        assert record.propensity == pytest.approx(decision.propensity)
        assert record.unit_id == f"u{index}"
        assert dict(record.context) == {"x": float(index)}
        assert sum(record.probabilities.values()) == pytest.approx(1.0)
        assert record.probabilities[record.arm] == pytest.approx(record.propensity)
        if decision.decision_id in rewarded:
            assert record.reward == rewarded[decision.decision_id]
        else:
            assert not record.HasField("reward")

    out = tmp_path / "log.jsonl"
    command = [
        sys.executable,
        "-m",
        "bandit_router",
        "export",
        "log",
        "--target",
        any_server.target,
        "--out",
        str(out),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    parsed = read_decision_log(out)
    assert [p.decision_id for p in parsed] == [d.decision_id for d in decisions]
    assert sum(1 for p in parsed if p.reward is not None) == len(rewarded)

    dsjson = tmp_path / "log.dsjson"
    command[-1] = str(dsjson)
    result = subprocess.run(
        [*command, "--format", "dsjson"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in dsjson.read_text().splitlines()]
    assert len(events) == len(decisions)
    labelled = [event for event in events if "_label_probability" in event]
    assert len(labelled) == len(rewarded)  # VW learns from rewarded events only
    assert all(0 < event["_label_probability"] <= 1 for event in labelled)
    assert all(sum(event["p"]) == pytest.approx(1.0) for event in events)


def test_a_reward_logged_before_its_decision_is_still_joined() -> None:
    """A prompt reward commits before the decision's flush: the stream has it first."""

    async def scenario() -> list[tuple[str, float | None, bool]]:
        store = Store.from_url(None)
        experiment = await store.create_experiment(
            Experiment("early", (Arm("a"), Arm("b")), PolicySpec("thompson", {}))
        )
        issuer = DecisionSigner(b"k" * 32).issuer(
            "early", experiment.incarnation, "a", 0.5, 1, True
        )
        ids = [issuer.issue(1_000 + i, 61_000 + i, f"{i:024x}") for i in range(3)]
        log = ExperimentKeys("early").decisions
        await store.client.xadd(log, {"type": "reward", "nonce": f"{0:024x}", "reward": "1.0"})
        rows = [
            (decision_id, Reason.EXPLOIT, "", {"a": 0.5, "b": 0.5}, None) for decision_id in ids
        ]
        await store.client.xadd(log, {"type": "decisions", "data": encode(rows)})
        await store.client.xadd(log, {"type": "default", "nonce": f"{1:024x}", "reward": "0.0"})
        return [
            (
                record.decision_id,
                record.reward if record.HasField("reward") else None,
                record.default_reward_applied,
            )
            async for record in decision_records(store, "early")
        ]

    records = asyncio.run(scenario())
    assert [(reward, default) for _, reward, default in records] == [
        (1.0, False),
        (0.0, True),
        (None, False),
    ]


def test_each_rewards_metrics_are_exported(any_server: ServerThread, tmp_path: Path) -> None:
    metrics = [
        pb.MetricSpec(name="quality", kind=pb.METRIC_KIND_BINARY),
        pb.MetricSpec(name="latency_ms", min=0.0, direction=pb.METRIC_DIRECTION_MINIMIZE),
    ]
    with BanditClient(any_server.target, timeout=5) as client:
        client.create_experiment(
            pb.Experiment(
                name="metered", arms=[pb.Arm(name="a"), pb.Arm(name="b")], metrics=metrics
            )
        )
        time.sleep(0.15)
        decisions = [client.route("metered") for _ in range(6)]
        sent: dict[str, dict[str, float]] = {}
        for i, decision in enumerate(decisions[:5]):
            observed = {"quality": float(i % 2), "latency_ms": 100.0 + i / 8}
            if i == 4:
                observed = {}  # a plain reward: no metrics field
            client.router.Reward(
                router_pb2.RewardRequest(
                    decision_id=decision.decision_id, value=0.5, metrics=observed
                ),
                timeout=5,
            )
            sent[decision.decision_id] = observed
        time.sleep(0.2)
        records = list(client.export_decisions("metered"))
    assert [r.decision_id for r in records] == [d.decision_id for d in decisions]
    for record in records:
        assert dict(record.metrics) == sent.get(record.decision_id, {})

    out = tmp_path / "metered.jsonl"
    command = [sys.executable, "-m", "bandit_router", "export", "metered"]
    command += ["--target", any_server.target, "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line.get("metrics", {}) for line in lines] == [
        sent.get(d.decision_id, {}) for d in decisions
    ]
    assert [p.metrics for p in read_decision_log(out)] == [
        sent.get(d.decision_id, {}) for d in decisions
    ]


def test_a_late_real_reward_brings_its_own_metrics() -> None:
    """Stream order: a reward ahead of its decision, and a default later replaced."""

    async def scenario() -> list[dict[str, float]]:
        store = Store.from_url(None)
        experiment = await store.create_experiment(
            Experiment("late", (Arm("a"), Arm("b")), PolicySpec("thompson", {}))
        )
        issuer = DecisionSigner(b"k" * 32).issuer("late", experiment.incarnation, "a", 0.5, 1, True)
        ids = [issuer.issue(1_000 + i, 61_000 + i, f"{i:024x}") for i in range(2)]
        log = ExperimentKeys("late").decisions
        first, second = f"{0:024x}", f"{1:024x}"
        await store.client.xadd(
            log, {"type": "reward", "nonce": first, "reward": "1.0", "metrics": "q=1.0,ms=2.5"}
        )
        rows = [(i, Reason.EXPLOIT, "", {"a": 0.5, "b": 0.5}, None) for i in ids]
        await store.client.xadd(log, {"type": "decisions", "data": encode(rows)})
        await store.client.xadd(log, {"type": "default", "nonce": second, "reward": "0.0"})
        await store.client.xadd(
            log, {"type": "reward", "nonce": second, "reward": "1.0", "metrics": "q=1.0"}
        )
        return [dict(r.metrics) async for r in decision_records(store, "late")]

    assert asyncio.run(scenario()) == [{"q": 1.0, "ms": 2.5}, {"q": 1.0}]
