"""The stopping rule in the service: configuration, commit, reopen, and the race between
replicas, against real server processes on a real redis-server.

The rule's statistics are tested in ``test_policies_stopping.py``; here: a clearly better
arm is committed to within the issue's budget, exactly once although two replicas check,
and every state change (commit, reopen, an added arm) is audited and reaches Route.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from bandit_router.client import BanditClient
from bandit_router.errors import InvalidArgument
from bandit_router.model.convert import experiment_of, experiment_to_pb, merge_update
from bandit_router.model.experiments import Arm, Commit, Experiment, PolicySpec, Stopping
from bandit_router.operations.experiment_files import (
    experiment_from_mapping,
    experiment_to_mapping,
)
from bandit_router.v1 import admin_pb2, experiment_pb2

from .servers import RedisServer, ServerProcess, server_processes
from .test_controls_helpers import create, stop_process

#: The issue's budget: 0.6 against 0.4 commits to the better arm within this many pairs.
BUDGET = 6000


def stopping_experiment(**changes: object) -> Experiment:
    base = Experiment("e", (Arm("a"), Arm("b")), stopping=Stopping(commit=True))
    return base.with_changes(**changes)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"policy": PolicySpec("ucb1")}, "experiment.stopping"),
        ({"policy": PolicySpec("thompson", {"gamma": 0.99})}, "experiment.stopping"),
        ({"drift_discount": 0.9}, "experiment.stopping"),
        ({"stopping": Stopping(delta=0.0)}, "experiment.stopping.delta"),
        ({"stopping": Stopping(delta=1.5)}, "experiment.stopping.delta"),
        ({"stopping": Stopping(epsilon=-0.1)}, "experiment.stopping.epsilon"),
        ({"stopping": Stopping(epsilon=float("nan"))}, "experiment.stopping.epsilon"),
        ({"stopping": Stopping(min_samples=0)}, "experiment.stopping.min_samples"),
        ({"commit": Commit("zzz")}, "experiment.commit.arm"),
        ({"stopping": None, "commit": Commit("a")}, "experiment.commit"),
    ],
)
def test_bad_stopping_settings_name_their_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        stopping_experiment(**changes).validated()
    assert caught.value.field == field


def test_thompson_allocates_as_top_two_while_a_rule_is_set() -> None:
    plain = stopping_experiment(stopping=None)
    assert plain.decision_policy.name == "thompson"
    ruled = stopping_experiment(policy=PolicySpec("thompson", {"alpha0": 2.0}))
    assert ruled.decision_policy == PolicySpec("top_two_thompson", {"alpha0": 2.0})


def test_files_protobuf_and_json_carry_the_rule() -> None:
    experiment = stopping_experiment(
        stopping=Stopping(delta=0.01, epsilon=0.02, min_samples=50, commit=True)
    ).validated()
    mapping = experiment_to_mapping(experiment)
    assert mapping["stopping"] == {
        "delta": 0.01,
        "epsilon": 0.02,
        "min_samples": 50,
        "commit": True,
    }
    assert experiment_from_mapping(mapping, "file").stopping == experiment.stopping
    assert experiment_of(experiment_to_pb(experiment)).stopping == experiment.stopping
    assert Experiment.from_json_dict(experiment.to_json_dict()) == experiment
    with pytest.raises(InvalidArgument) as caught:
        experiment_from_mapping({**mapping, "stopping": {"delta": 0.0}}, "file")
    assert caught.value.field == "file.stopping.delta"
    with pytest.raises(InvalidArgument) as caught:
        experiment_from_mapping({**mapping, "stopping": {"min_samples": 2.5}}, "file")
    assert caught.value.field == "file.stopping.min_samples"
    with pytest.raises(InvalidArgument) as caught:
        experiment_from_mapping({**mapping, "stopping": {"alpha": 1}}, "file")
    assert caught.value.field == "file.stopping.alpha"


def test_the_commit_is_state_a_full_replace_keeps_and_only_clearing_is_allowed() -> None:
    committed = stopping_experiment(commit=Commit("a", 1.0, "stopping-rule", "why"))
    replacement = experiment_to_pb(stopping_experiment(description="new"))
    replacement.ClearField("commit")
    assert merge_update(committed, replacement, FieldMask()).commit == committed.commit
    cleared = merge_update(committed, experiment_pb2.Experiment(), FieldMask(paths=["commit"]))
    assert cleared.commit == Commit()
    other = experiment_pb2.Experiment(commit=experiment_pb2.Commit(arm="b"))
    with pytest.raises(InvalidArgument) as caught:
        merge_update(committed, other, FieldMask(paths=["commit"]))
    assert caught.value.field == "commit.arm"


# -- real servers ------------------------------------------------------------------------


@pytest.fixture
def replicas(redis_server: RedisServer) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    redis_server.flush()
    args = ["--redis-url", redis_server.url, "--refresh-interval", "0.05"]
    with server_processes(2, *args) as (a, b):
        yield a, b
        stop_process(a)
        stop_process(b)


def audit(client: BanditClient, name: str) -> list[admin_pb2.AuditEntry]:
    response = client.call_admin("ListAudit", admin_pb2.ListAuditRequest(experiment=name))
    return list(response.entries)


def drive_until_committed(
    clients: list[BanditClient], name: str, means: dict[str, float], seed: int
) -> tuple[int, str]:
    """Route-then-Reward pairs over both replicas until a Route says COMMITTED:
    (pairs played, the committed arm)."""
    rng = random.Random(seed)
    for pair in range(1, BUDGET + 1):
        client = clients[pair % len(clients)]
        decision = client.route(name)
        if decision.reason == "COMMITTED":
            assert decision.propensity == 1.0
            return pair, decision.arm
        client.reward(decision.decision_id, float(rng.random() < means[decision.arm]))
    raise AssertionError(f"no commit within {BUDGET} pairs")


@pytest.mark.integration
def test_a_clear_winner_is_committed_once_audited_and_reopened(
    replicas: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = replicas
    with BanditClient(a.target, timeout=5) as on_a, BanditClient(b.target, timeout=5) as on_b:
        stopping = experiment_pb2.StoppingRule(delta=0.05, commit=True)
        create(on_a, "checkout", ["good", "bad"], stopping=stopping)
        pairs, arm = drive_until_committed([on_a, on_b], "checkout", {"good": 0.6, "bad": 0.4}, 1)
        assert arm == "good"
        assert pairs < BUDGET
        # Both replicas checked the rule on every refresh; exactly one commit was written.
        commits = [e for e in audit(on_a, "checkout") if e.action == "commit"]
        assert len(commits) == 1
        assert commits[0].principal == "stopping-rule"
        assert json.loads(commits[0].arguments)["arm"] == "good"
        assert "probability >= 0.95" in commits[0].reason
        # Every Route on either replica now serves the winner, with propensity 1.
        decisions = [c.route("checkout") for c in (on_a, on_b) for _ in range(20)]
        assert {(d.arm, d.reason, d.propensity) for d in decisions} == {("good", "COMMITTED", 1.0)}
        report = on_b.call_admin("GetReport", admin_pb2.GetReportRequest(experiment="checkout"))
        assert report.stopping.winner == "good"
        assert report.stopping.committed_arm == "good"
        assert report.stopping.committed_by == "stopping-rule"
        for row in report.arms:  # per-arm projections of the region (wider than the gap test)
            assert 0.0 <= row.anytime_low < row.mean < row.anytime_high <= 1.0

        # The operator reopens: the policy decides again and the rule no longer commits.
        reopened = subprocess.run(
            [
                sys.executable,
                "-m",
                "bandit_router",
                "reopen",
                "checkout",
                "--target",
                a.target,
                "--reason",
                "look again",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert reopened.returncode == 0, reopened.stderr
        deadline = time.monotonic() + 5
        while on_b.route("checkout").reason == "COMMITTED":
            assert time.monotonic() < deadline, "the reopen did not reach the other replica"
            time.sleep(0.05)
        current = on_a.call_admin(
            "GetExperiment", admin_pb2.GetExperimentRequest(name="checkout")
        ).experiment
        assert not current.commit.arm and not current.stopping.commit
        updates = [e for e in audit(on_a, "checkout") if e.action == "update"]
        assert updates and updates[0].reason == "look again"
        assert json.loads(updates[0].arguments)["fields"] == ["commit", "stopping.commit"]


@pytest.mark.integration
def test_adding_an_arm_reopens_a_committed_experiment(
    replicas: tuple[ServerProcess, ServerProcess],
) -> None:
    a, _ = replicas
    with BanditClient(a.target, timeout=5) as client:
        stopping = experiment_pb2.StoppingRule(delta=0.05, min_samples=20, commit=True)
        # Warm-start priors are not data: the rule still waits for 20 real rewards per arm.
        create(client, "pricing", [("x", 500.0, 450.0), ("y", 500.0, 50.0)], stopping=stopping)
        _, arm = drive_until_committed([client], "pricing", {"x": 0.95, "y": 0.05}, 2)
        assert arm == "x"
        report = client.call_admin("GetReport", admin_pb2.GetReportRequest(experiment="pricing"))
        assert min(r.rewards for r in report.arms) >= 20 + 500
        client.call_admin(
            "AddArm",
            admin_pb2.AddArmRequest(
                experiment="pricing", arm=experiment_pb2.Arm(name="z"), reason="new model"
            ),
        )
        deadline = time.monotonic() + 5
        while client.route("pricing").reason == "COMMITTED":
            assert time.monotonic() < deadline, "adding an arm did not reopen"
            time.sleep(0.05)
        entry = next(e for e in audit(client, "pricing") if e.action == "add_arm")
        assert json.loads(entry.arguments)["reopened_commit"] == "x"
        report = client.call_admin("GetReport", admin_pb2.GetReportRequest(experiment="pricing"))
        assert not report.stopping.committed_arm
        assert report.stopping.samples_needed == 20  # the new arm has none yet
