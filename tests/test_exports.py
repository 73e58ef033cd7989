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
