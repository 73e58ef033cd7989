"""Guardrail contracts as clients and operators meet them, over a real gRPC channel to a real
server (one for the module): bad guardrail, metric and override fields are INVALID_ARGUMENT
naming the field and change nothing; an operator's override moves the arm at once and is
audited; a re-applied file keeps a quarantined arm quarantined; enabling a quarantined arm is
FAILED_PRECONDITION (ARM_QUARANTINED); and the command line does all of it.

Quarantine by the rules is the guardrail monitor's (tests/test_guardrails_service.py); here an
arm is quarantined by hand (``guardrail force``), or by writing to the store what the monitor
writes when a rule trips (state, tripped rule, new epoch).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from bandit_router.cli import main as cli_main
from bandit_router.client import (
    ArmState,
    AsyncBanditClient,
    BanditClient,
    ErrorReason,
    GuardrailOverride,
    NotFound,
    Reason,
)
from bandit_router.model.experiments import ArmState as DomainArmState
from bandit_router.model.experiments import Experiment
from bandit_router.model.guardrails import ArmGuardrail
from bandit_router.v1 import admin_pb2, experiment_pb2, router_pb2

from . import test_bad_input as bad
from .servers import RedisServer, ServerThread

pytestmark = pytest.mark.integration

INVALID = grpc.StatusCode.INVALID_ARGUMENT

FILE = """
experiments:
  - name: {name}
    arms: [a, b, c]
    policy: gaussian_thompson
    metrics:
      - {{name: quality, kind: continuous, min: 0, max: 1}}
      - {{name: latency_ms, min: 0, direction: minimize}}
      - {{name: error, kind: binary, direction: minimize}}
    objective: {{weights: {{quality: 1}}}}
    guardrails:
      - {{metric: error, statistic: rate, max: 0.05, window: 10m}}
      - {{metric: latency_ms, statistic: quantile, quantile: 0.99, max: 500}}
    fallback_arm: a
"""


@pytest.fixture(scope="module", params=["embedded", "redis"])
def server(request: pytest.FixtureRequest, redis_server: RedisServer) -> Iterator[ServerThread]:
    """One server per store for the module: the state travels through each store's config."""
    store: dict[str, Any] = {}
    if request.param == "redis":
        redis_server.flush()
        store["redis_url"] = redis_server.url
    server = ServerThread(refresh_interval=0.05, sweep_interval=0.1, **store).start()
    yield server
    server.stop()


@pytest.fixture
def client(server: ServerThread) -> Iterator[BanditClient]:
    with BanditClient(server.target, timeout=5, max_attempts=1) as client:
        yield client


def apply(server: ServerThread, name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(FILE.format(name=name))
    assert cli_main(["apply", "-f", str(path), "--target", server.target, "-o", "json"]) == 0


def states(client: BanditClient, name: str) -> dict[str, ArmState]:
    arms = client.get_experiment(name).experiment.arms
    return {arm.name: ArmState.from_pb(arm.state) for arm in arms}


def last_audit(client: BanditClient, name: str) -> tuple[str, dict[str, Any], str]:
    entry = client.list_audit(name, limit=1)[0]
    return entry.action, json.loads(entry.arguments), entry.reason


def guarded(**fields: Any) -> experiment_pb2.Experiment:
    """A valid experiment with a metric and a rule, then ``fields`` over it."""
    base: dict[str, Any] = {
        "name": "new",
        "arms": [{"name": "x"}, {"name": "y"}],
        "metrics": [
            {"name": "error", "kind": experiment_pb2.METRIC_KIND_BINARY},
            {"name": "ms", "min": 0.0},
        ],
        "guardrails": [
            {"metric": "error", "statistic": experiment_pb2.GUARDRAIL_STATISTIC_RATE, "max": 0.05}
        ],
    }
    base.update(fields)
    return experiment_pb2.Experiment(**base)


def rule(**fields: Any) -> list[dict[str, Any]]:
    return [{"metric": "error", "statistic": experiment_pb2.GUARDRAIL_STATISTIC_RATE, **fields}]


def test_bad_guardrail_fields_are_invalid_argument_naming_them(client: BanditClient) -> None:
    quantile = experiment_pb2.GUARDRAIL_STATISTIC_QUANTILE
    cases: list[tuple[experiment_pb2.Experiment, str]] = [
        (guarded(metrics=[{"name": "error", "kind": 7}]), "experiment.metrics[0].kind"),
        (guarded(metrics=[{"name": "q", "direction": 9}]), "experiment.metrics[0].direction"),
        (guarded(guardrails=rule(statistic=9, max=0.05)), "experiment.guardrails[0].statistic"),
        (guarded(guardrails=[{"metric": "cpu", "max": 0.5}]), "experiment.guardrails[0].metric"),
        (guarded(guardrails=rule()), "experiment.guardrails[0]"),
        (guarded(guardrails=rule(max=0.05, min=0.01)), "experiment.guardrails[0]"),
        (guarded(guardrails=rule(max=math.nan)), "experiment.guardrails[0].max"),
        (
            guarded(guardrails=rule(max=0.05, window={"seconds": -1})),
            "experiment.guardrails[0].window",
        ),
        (guarded(guardrails=rule(max=0.05, min_samples=0)), "experiment.guardrails[0].min_samples"),
        (guarded(guardrails=rule(max=0.05, confidence=1.5)), "experiment.guardrails[0].confidence"),
        (
            guarded(guardrails=rule(max=0.05, probe_share=0.9)),
            "experiment.guardrails[0].probe_share",
        ),
        (guarded(guardrails=rule(max=0.05, probe_share=0.5)), "experiment.guardrails"),
        (
            guarded(guardrails=[{"metric": "ms", "statistic": quantile, "max": 500}]),
            "experiment.guardrails[0].quantile",
        ),
        (
            guarded(guardrails=[{"metric": "ms", "max": 500}]),  # a mean needs bounds
            "experiment.guardrails[0].statistic",
        ),
        (
            guarded(objective={"constraints": [{"metric": "ms", "max_mean": 9}]}),
            "experiment.objective.constraints[0].metric",
        ),
        (
            guarded(objective={"constraints": [{"metric": "error", "max_mean": 1, "min_mean": 0}]}),
            "experiment.objective.constraints[0]",
        ),
        (
            guarded(
                objective={"constraints": [{"metric": "error", "max_mean": 0.1, "confidence": 0}]}
            ),
            "experiment.objective.constraints[0].confidence",
        ),
        (guarded(fallback_arm="z"), "experiment.fallback_arm"),
        (
            guarded(arms=[{"name": "x", "guardrail_override": 7}, {"name": "y"}]),
            "experiment.arms[0].guardrail_override",
        ),
        (
            guarded(arms=[{"name": "x", "guardrail_override": 1}, {"name": "y"}], guardrails=[]),
            "experiment.arms[0].guardrail_override",
        ),
        (
            guarded(
                arms=[
                    {
                        "name": "x",
                        "guardrail_override": 2,
                        "state": experiment_pb2.ARM_STATE_DISABLED,
                    },
                    {"name": "y"},
                ]
            ),
            "experiment.arms[0].guardrail_override",
        ),
    ]
    for message, field in cases:
        bad.expect(client, bad.create(client, message), INVALID, field)
    # The same through UpdateExperiment of a live experiment (its rules change, so its arms'
    # guardrail state is carried over before the new rules are validated).
    client.create_experiment(guarded(name="updated"))
    for message, field in cases[2:-3]:
        message.name = "updated"
        update = admin_pb2.UpdateExperimentRequest(experiment=message)
        call = partial(client.call_admin, "UpdateExperiment", update)
        bad.expect(client, call, INVALID, field)


def test_a_request_cannot_set_guardrail_state(client: BanditClient, tmp_path: Path) -> None:
    """Quarantine and the guardrail status are the service's: SetArmState refuses it, and a
    created arm starts active with no history whatever the request says."""
    sent = guarded(
        name="stateful",
        arms=[
            {
                "name": "x",
                "state": experiment_pb2.ARM_STATE_QUARANTINED,
                "guardrail": {"epoch": 7, "summary": "made up", "tripped_rules": [0]},
            },
            {"name": "y"},
        ],
    )
    created = client.create_experiment(sent)
    assert created.arms[0].state == experiment_pb2.ARM_STATE_ACTIVE
    assert not created.arms[0].HasField("guardrail")
    request = admin_pb2.SetArmStateRequest(
        experiment="stateful", arm="x", state=experiment_pb2.ARM_STATE_QUARANTINED
    )
    error = bad.expect(client, lambda: client.call_admin("SetArmState", request), INVALID, "state")
    assert "guardrail force" in (error.details() or "")


def quarantine_by_the_rules(server: ServerThread, name: str, arm: str) -> None:
    """Write what the guardrail monitor writes when rule 0 trips on ``arm``: its state, the
    tripped rule and a new epoch, in one conditional update of the store."""

    def change(current: Experiment) -> Experiment:
        arms = tuple(
            dataclasses.replace(
                a,
                state=DomainArmState.QUARANTINED,
                guardrail=ArmGuardrail(time.time(), (0,), "error rate", a.guardrail.epoch + 1),
            )
            if a.name == arm
            else a
            for a in current.arms
        )
        return current.with_changes(arms=arms)

    server.call(server.app.store.update_experiment(name, change))


def test_overrides_move_the_arm_at_once_and_are_audited(
    client: BanditClient, server: ServerThread, tmp_path: Path
) -> None:
    apply(server, "llm", tmp_path)
    forced = client.set_guardrail_override("llm", "b", "force_quarantine", reason="outage")
    assert ArmState.from_pb(forced.arms[1].state) is ArmState.QUARANTINED
    assert GuardrailOverride.from_pb(forced.arms[1].guardrail_override) is (
        GuardrailOverride.FORCE_QUARANTINE
    )
    assert forced.arms[1].guardrail.epoch == 1
    action, arguments, reason = last_audit(client, "llm")
    assert (action, arguments["fields"], reason) == ("update", ["arms"], "outage")
    assert arguments["guardrail_overrides"] == {"b": "force_quarantine"}

    # Back to the rules, in a new epoch (no rule holds b, so the monitor releases it; a
    # release racing this call makes it read and try again).
    auto = client.set_guardrail_override("llm", "b", GuardrailOverride.NONE, reason="rules")
    assert auto.arms[1].guardrail.epoch == 2
    assert last_audit(client, "llm")[1]["guardrail_overrides"] == {"b": "none"}
    deadline = time.monotonic() + 5  # the monitor's release, before the steps that race it
    while states(client, "llm")["b"] is not ArmState.ACTIVE:
        assert time.monotonic() < deadline, "the monitor never released b"
        time.sleep(0.05)

    # A rule trips on c. Enabling is for disabled arms: FAILED_PRECONDITION with its reason.
    quarantine_by_the_rules(server, "llm", "c")
    bad.expect(
        client,
        lambda: client.set_arm_state("llm", "c", ArmState.ACTIVE),
        grpc.StatusCode.FAILED_PRECONDITION,
        "arm",
        ErrorReason.ARM_QUARANTINED,
    )

    # Re-applying the file (which says nothing of c's state) keeps it quarantined.
    version = client.get_experiment("llm").experiment.version
    apply(server, "llm", tmp_path)
    after = client.get_experiment("llm").experiment
    assert after.version > version
    assert ArmState.from_pb(after.arms[0].state) is ArmState.ACTIVE
    assert ArmState.from_pb(after.arms[2].state) is ArmState.QUARANTINED
    assert (after.arms[2].guardrail.epoch, list(after.arms[2].guardrail.tripped_rules)) == (1, [0])

    held = client.set_guardrail_override("llm", "c", "HOLD_ACTIVE", reason="waived")
    assert ArmState.from_pb(held.arms[2].state) is ArmState.ACTIVE
    assert list(held.arms[2].guardrail.tripped_rules) == []
    assert last_audit(client, "llm")[1]["guardrail_overrides"] == {"c": "hold_active"}
    # An override is an operator's state, like a pin: `apply` of the file keeps it.
    apply(server, "llm", tmp_path)
    kept = client.get_experiment("llm").experiment.arms[2]
    assert GuardrailOverride.from_pb(kept.guardrail_override) is GuardrailOverride.HOLD_ACTIVE

    # The kill switch always works: disabling a held arm clears the hold, and says so.
    client.set_arm_state("llm", "c", ArmState.DISABLED, reason="kill")
    action, arguments, _ = last_audit(client, "llm")
    assert (action, arguments["cleared_override"]) == ("disable_arm", "hold_active")
    assert states(client, "llm")["c"] is ArmState.DISABLED

    with pytest.raises(NotFound) as missing:
        client.set_guardrail_override("llm", "zz", "hold_active")
    assert missing.value.reason is ErrorReason.ARM_NOT_FOUND and missing.value.field == "arm"
    bad.expect(  # an override on a disabled arm
        client,
        lambda: client.set_guardrail_override("llm", "c", "hold_active"),
        INVALID,
        "experiment.arms[2].guardrail_override",
    )


def test_the_asyncio_client_sets_overrides_and_rewards_metrics(
    client: BanditClient, server: ServerThread, tmp_path: Path
) -> None:
    apply(server, "aio", tmp_path)

    async def run() -> tuple[Any, Any]:
        async with AsyncBanditClient(server.target, timeout=5) as aio:
            forced = await aio.set_guardrail_override("aio", "c", "force_quarantine")
            decision = await aio.route("aio")
            outcome = await aio.reward(
                decision.decision_id, metrics={"quality": 0.5, "latency_ms": 80, "error": 0}
            )
            return forced, outcome

    forced, outcome = asyncio.run(run())
    assert ArmState.from_pb(forced.arms[2].state) is ArmState.QUARANTINED
    assert outcome == "APPLIED"


def test_client_enums_name_every_wire_value() -> None:
    for enum, wire, prefix in (
        (Reason, experiment_pb2.Reason, "REASON_"),
        (ArmState, experiment_pb2.ArmState, "ARM_STATE_"),
        (GuardrailOverride, experiment_pb2.GuardrailOverride, "GUARDRAIL_OVERRIDE_"),
    ):
        for value in wire.DESCRIPTOR.values:
            if value.number:
                assert enum.from_pb(value.number) == value.name.removeprefix(prefix), value.name
    for member in (*ArmState, *GuardrailOverride):
        assert type(member).from_pb(member.to_pb()) is member
    assert router_pb2.RewardRequest.DESCRIPTOR.fields_by_name["metrics"].number == 40


def run(
    capsys: pytest.CaptureFixture[str], server: ServerThread, *argv: str
) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli_main([*argv, "--target", server.target])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_command_line(
    client: BanditClient,
    server: ServerThread,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    apply(server, "cli", tmp_path)
    version = client.get_experiment("cli").experiment.version
    code, out, err = run(
        capsys, server, "guardrail", "force", "cli", "b", "--reason", "x", "--dry-run"
    )
    assert code == 0 and "dry run" in err and "FORCE_QUARANTINE" in out
    assert client.get_experiment("cli").experiment.version == version

    with pytest.raises(SystemExit) as usage:  # argparse: no --reason
        run(capsys, server, "guardrail", "force", "cli", "b")
    assert usage.value.code == 2 and "--reason" in capsys.readouterr().err
    code, _, err = run(capsys, server, "guardrail", "hold", "cli", "zz", "--reason", "x")
    assert code == 1 and "NOT_FOUND" in err and "zz" in err

    code, out, err = run(capsys, server, "guardrail", "force", "cli", "b", "--reason", "outage 9")
    assert code == 0, err
    assert "cli/b: quarantined, override FORCE_QUARANTINE" in err
    assert "a,b(quarantined,forced),c" in out
    _, arguments, reason = last_audit(client, "cli")
    assert (arguments["guardrail_overrides"], reason) == ({"b": "force_quarantine"}, "outage 9")

    code, out, _ = run(capsys, server, "get", "experiment", "cli")
    assert code == 0 and "b(quarantined,forced)" in out
    assert "guardrail b: quarantined (force_quarantine) since " in out
    code, out, _ = run(capsys, server, "get", "experiment", "cli", "-o", "yaml")
    (item,) = yaml.safe_load(out)["experiments"]
    assert {"name": "b", "state": "quarantined", "guardrail_override": "force_quarantine"} in (
        item["arms"]
    )
    assert item["status"]["guardrails"]["b"]["epoch"] == 1
    assert item["guardrails"][0] == {"metric": "error", "statistic": "rate", "max": 0.05}
    # ... and that output applies back as it is, changing nothing but the version.
    before = client.get_experiment("cli").experiment
    echoed = tmp_path / "echoed.yaml"
    echoed.write_text(out)
    code, _, err = run(capsys, server, "apply", "-f", str(echoed))
    assert code == 0 and err == "update cli\n"
    after = client.get_experiment("cli").experiment
    assert after.version == before.version + 1
    assert list(after.arms) == list(before.arms) and after.guardrails == before.guardrails

    code, _, err = run(capsys, server, "guardrail", "hold", "cli", "b", "--reason", "waived")
    assert code == 0 and "cli/b: active, override HOLD_ACTIVE" in err
    code, _, err = run(capsys, server, "guardrail", "auto", "cli", "b", "--reason", "rules")
    assert code == 0 and "cli/b: active, override NONE" in err

    decision = client.route("cli")
    metric = ["--metric", "quality=0.9", "--metric", "latency_ms=120", "--metric", "error=0"]
    code, _, err = run(capsys, server, "reward", decision.decision_id, "--metric", "quality=abc")
    assert code == 2 and "error: --metric: quality='abc' is not a number" in err
    code, _, err = run(capsys, server, "reward", decision.decision_id, *metric, "--metric", "x=1")
    assert code == 1 and "INVALID_ARGUMENT" in err and "metrics[x]" in err
    code, out, err = run(capsys, server, "reward", decision.decision_id, *metric, "-o", "json")
    assert code == 0, err
    assert json.loads(out) == {"outcome": "APPLIED"}
