"""Guardrails in the service: quarantine, probes, recovery, fallback and overrides, over a
real gRPC channel, real redis-server and (for the issue's scenario) two server processes.

The scenario (issue 15): arms a and b of equal quality; after 200 decisions b starts failing
(error = 1 with probability 0.3) under the rule "error rate <= 0.05" (window 10 minutes, so
slots of 60 s and 11 first slots per window: the rule's test runs at level 0.05 / 11, its
evidence must reach 1 / level = 220; ``policies.guardrails``). Bounds used below:

* Quarantine within 300 of b's rewards. With ~100 clean rewards before the failures, about
  100-130 failing rewards take the evidence to 220 (``policies.bounded_mean``), plus what
  arrives during one monitor interval and one refresh.
* Every replica obeys within a second: from the quarantine's ``since``, each replica's first
  Route that answers the quarantined law (b a probe at its share, or a at 1 - share) comes
  less than a second later (measured; an upper bound, since the test looks only once it has
  seen the quarantine).
* While quarantined, b gets its probe share p = 0.05 of each replica's traffic: of 1,000
  Routes on one replica, the test allows Binomial(1000, 0.05)'s 1e-6 and 1 - 1e-6 quantiles.
* Recovery: with b clean again, the evidence for "rate < 0.05" can reach 220 no sooner than
  after log(220) / -log(0.95) = 106 all-clean probe rewards (``fewest_samples_below``); the
  stated budget is that plus 61 (the prior costs a few, and one monitor interval of probes
  arrives before the release is written). The new epoch's window starts at the quarantine's
  ``since``: a decision b was given after it (on a replica that had not yet seen the
  quarantine) whose failing reward the test sent before it noticed is real evidence against
  b in that window. With f such failures the verdict needs at least n_f samples, the least n
  whose critical count (``policies.bounded_mean.critical_sum``) reaches f; the budget is then
  n_f + 61.
* The transition is counted once across the replicas (``bandit_router_guardrail_transitions_
  total``, by the replica whose conditional write won) and every replica's gauge
  ``bandit_router_arm_quarantined`` says 1 while b is quarantined, 0 once it is released.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator

import grpc
import pytest
from scipy.stats import binom

from bandit_router.client import BanditClient, Reason, RouteResult
from bandit_router.route.tokens import parse_unverified
from bandit_router.v1 import admin_pb2, router_pb2
from bandit_router.v1 import experiment_pb2 as pb
from policies.bounded_mean import critical_sum, fewest_samples_below
from policies.guardrails import starts_per_window

from .servers import RedisServer, ServerProcess, ServerThread, free_port, server_processes
from .test_controls_helpers import stop_process
from .test_service_observability import scrape, total

PROBE = 0.05
TRIP_BUDGET = 300
RECOVERY_SLACK = 61
#: The scenario rule's level: confidence 0.95 shared among the 11 first slots of a 10-minute
#: window read in 60 s slots (``policies.guardrails.starts_per_window``).
LEVEL = 0.05 / starts_per_window(600, 60)

METRICS = [
    pb.MetricSpec(name="quality", kind=pb.METRIC_KIND_BINARY),
    pb.MetricSpec(name="error", kind=pb.METRIC_KIND_BINARY, direction=pb.METRIC_DIRECTION_MINIMIZE),
    pb.MetricSpec(name="latency_ms", min=0.0, direction=pb.METRIC_DIRECTION_MINIMIZE),
]


def guarded_experiment(name: str, **fields: object) -> pb.Experiment:
    experiment = pb.Experiment(
        name=name,
        arms=[pb.Arm(name="a"), pb.Arm(name="b")],
        metrics=METRICS,
        objective=pb.Objective(weights={"quality": 1.0}),
        guardrails=[
            pb.GuardrailRule(
                metric="error",
                statistic=pb.GUARDRAIL_STATISTIC_RATE,
                max=0.05,
                min_samples=50,
                confidence=0.95,
                probe_share=PROBE,
            )
        ],
        **fields,  # type: ignore[arg-type]
    )
    experiment.guardrails[0].window.FromSeconds(600)
    return experiment


def samples_for_release(failures: int) -> int:
    """The fewest samples with ``failures`` ones among them that can show rate < 0.05 at
    the rule's level ``LEVEL`` (106 without the prior)."""
    n = fewest_samples_below(0.05, LEVEL)
    while True:
        most = critical_sum(n, 0.05, LEVEL, "below")  # the most ones n samples may hold
        if most is not None and most >= failures:
            return n
        n += 1


def reward(client: BanditClient, decision_id: str, metrics: dict[str, float]) -> None:
    client.router.Reward(
        router_pb2.RewardRequest(decision_id=decision_id, metrics=metrics), timeout=5
    )


def arm_states(client: BanditClient, name: str) -> dict[str, pb.Arm]:
    experiment = client.call_admin(
        "GetExperiment", admin_pb2.GetExperimentRequest(name=name)
    ).experiment
    return {arm.name: arm for arm in experiment.arms}


def audit(client: BanditClient, name: str) -> list[admin_pb2.AuditEntry]:
    response = client.call_admin("ListAudit", admin_pb2.ListAuditRequest(experiment=name))
    return list(response.entries)


Replica = tuple[ServerProcess, int]  # a server process and its metrics port


@pytest.fixture
def replicas(redis_server: RedisServer) -> Iterator[tuple[Replica, Replica]]:
    redis_server.flush()
    args = ["--redis-url", redis_server.url, "--refresh-interval", "0.05"]
    ports = [free_port(), free_port()]
    each = [["--metrics-address", f"127.0.0.1:{port}"] for port in ports]
    with server_processes(2, *args, each=each) as (a, b):
        yield (a, ports[0]), (b, ports[1])
        stop_process(a)
        stop_process(b)


def quarantined_law(decision: RouteResult) -> bool:
    """Does this Route show the quarantine: b as a probe at its share, or a at the rest?"""
    if decision.arm == "b":
        return decision.reason == Reason.GUARDRAIL
    return round(decision.propensity, 12) == 1 - PROBE


def gauge_and_transitions(port: int) -> tuple[float, float, float]:
    """(arm_quarantined{b}, transitions to QUARANTINED, transitions to ACTIVE) on a replica."""
    samples = scrape(port)
    labels = {"experiment": "routing", "arm": "b"}
    return (
        total(samples, "bandit_router_arm_quarantined", **labels),
        total(samples, "bandit_router_guardrail_transitions_total", state="quarantined", **labels),
        total(samples, "bandit_router_guardrail_transitions_total", state="active", **labels),
    )


@pytest.mark.integration
def test_a_failing_arm_is_quarantined_probed_and_released_on_every_replica(
    replicas: tuple[Replica, Replica],
) -> None:
    rng = random.Random(15)
    (one, one_metrics), (two, two_metrics) = replicas
    with (
        BanditClient(one.target, timeout=5) as on_one,
        BanditClient(two.target, timeout=5) as on_two,
    ):
        clients = [on_one, on_two]
        # A floor of 0.25 keeps b in the traffic whatever Thompson sampling's random walk
        # between two equal arms does, so its failures arrive at a rate the bound can count on.
        on_one.create_experiment(
            guarded_experiment("routing", exploration=pb.ExplorationControls(floor=0.25))
        )
        time.sleep(0.2)

        failures_at: list[float] = []  # when each of b's failing decisions was issued

        def pair(index: int, b_error: float) -> RouteResult:
            client = clients[index % 2]
            decision = client.route("routing")
            failing = decision.arm == "b" and rng.random() < b_error
            if failing:
                failures_at.append(parse_unverified(decision.decision_id).issued_ms / 1000)
            reward(
                client,
                decision.decision_id,
                {"quality": float(rng.random() < 0.5), "error": float(failing)},
            )
            return decision

        for i in range(200):  # both arms healthy
            pair(i, 0.0)
        b_rewards = 0
        for i in range(3000):  # b fails: count its rewards until it is quarantined
            decision = pair(i, 0.3)
            b_rewards += decision.arm == "b"
            if i % 10 == 9 and arm_states(on_one, "routing")["b"].state == pb.ARM_STATE_QUARANTINED:
                break
        status = arm_states(on_two, "routing")["b"]
        assert status.state == pb.ARM_STATE_QUARANTINED, f"not after {b_rewards} of b's rewards"
        assert b_rewards <= TRIP_BUDGET
        assert list(status.guardrail.tripped_rules) == [0]
        since = status.guardrail.since.ToNanoseconds() / 1e9
        # (a millisecond early: issued_ms is whole milliseconds; more failures, a looser bound)
        in_new_epoch = sum(t >= since - 0.001 for t in failures_at)
        assert "error rate <= 0.05 violated" in status.guardrail.summary

        for client in clients:  # the guarantee: every replica obeys within a second
            while not quarantined_law(client.route("routing")):
                assert time.time() - since < 1.0, "a replica still routes as before"
            assert time.time() - since < 1.0
        for client in clients:
            routes = [client.route("routing") for _ in range(1000)]
            probes = [d for d in routes if d.arm == "b"]
            assert len(probes) <= binom.ppf(1 - 1e-6, 1000, PROBE)
            assert len(probes) >= binom.ppf(1e-6, 1000, PROBE)  # the probes do flow
            assert {(d.reason, round(d.propensity, 12)) for d in probes} == {
                (Reason.GUARDRAIL, PROBE)
            }
            assert {d.reason for d in routes if d.arm == "a"} <= {Reason.EXPLOIT, Reason.EXPLORE}
        counted = [gauge_and_transitions(port) for port in (one_metrics, two_metrics)]
        assert [gauge for gauge, _, _ in counted] == [1.0, 1.0]
        assert sum(quarantines for _, quarantines, _ in counted) == 1.0

        probe_rewards = 0
        for i in range(20_000):  # b is healthy again: count probe rewards until released
            decision = pair(i, 0.0)
            probe_rewards += decision.arm == "b"
            if (
                decision.arm == "b"
                and arm_states(on_one, "routing")["b"].state == pb.ARM_STATE_ACTIVE
            ):
                break
        assert arm_states(on_two, "routing")["b"].state == pb.ARM_STATE_ACTIVE
        entries = [e for e in audit(on_one, "routing") if e.principal == "guardrail"]
        budget = samples_for_release(in_new_epoch) + RECOVERY_SLACK
        assert probe_rewards <= budget, (in_new_epoch, [(e.action, e.arguments) for e in entries])
        deadline = time.time() + 5.0  # the gauges follow each replica's cache and monitor
        while True:
            counted = [gauge_and_transitions(port) for port in (one_metrics, two_metrics)]
            if [gauge for gauge, _, _ in counted] == [0.0, 0.0] or time.time() > deadline:
                break
            time.sleep(0.05)
        assert [gauge for gauge, _, _ in counted] == [0.0, 0.0]
        assert sum(releases for _, _, releases in counted) == 1.0

        assert [e.action for e in entries][::-1] == ["quarantine", "release"]  # newest first
        for entry in entries:
            (reading,) = json.loads(entry.arguments)["rules"]
            assert reading["metric"] == "error" and reading["threshold"] == 0.05
            assert reading["samples"] >= 50
        assert "satisfied" in entries[0].reason


@pytest.fixture
def client(redis_backed_server: ServerThread) -> Iterator[BanditClient]:
    with BanditClient(redis_backed_server.target, timeout=5, max_attempts=1) as c:
        yield c


def set_override(client: BanditClient, name: str, arm: str, override: pb.GuardrailOverride) -> None:
    current = client.call_admin("GetExperiment", admin_pb2.GetExperimentRequest(name=name))
    experiment = current.experiment
    for entry in experiment.arms:
        if entry.name == arm:
            entry.guardrail_override = override
    client.call_admin(
        "UpdateExperiment",
        admin_pb2.UpdateExperimentRequest(
            experiment=experiment,
            expected_version=experiment.version,
            reason=f"operator sets {arm}",
        ),
    )
    time.sleep(0.3)


@pytest.mark.integration
def test_forced_arms_leave_the_fallback_arm_and_hold_releases(client: BanditClient) -> None:
    client.create_experiment(guarded_experiment("forced", fallback_arm="b"))
    time.sleep(0.2)
    set_override(client, "forced", "a", pb.GUARDRAIL_OVERRIDE_FORCE_QUARANTINE)
    decisions = [client.route("forced") for _ in range(50)]
    # a is forced out and gets no probes; b serves every decision as the bandit's only arm.
    assert {d.arm for d in decisions} == {"b"}
    set_override(client, "forced", "b", pb.GUARDRAIL_OVERRIDE_FORCE_QUARANTINE)
    states = arm_states(client, "forced")
    assert {s.state for s in states.values()} == {pb.ARM_STATE_QUARANTINED}
    decisions = [client.route("forced") for _ in range(50)]
    assert {(d.arm, d.reason, d.propensity) for d in decisions} == {("b", Reason.FALLBACK, 1.0)}
    set_override(client, "forced", "a", pb.GUARDRAIL_OVERRIDE_HOLD_ACTIVE)
    assert arm_states(client, "forced")["a"].state == pb.ARM_STATE_ACTIVE
    decisions = [client.route("forced") for _ in range(50)]
    assert {d.arm for d in decisions} == {"a"}
    actions = [(e.action, e.reason) for e in audit(client, "forced")]
    assert ("update", "operator sets a") in actions
    # Enabling is for disabled arms: a quarantined arm is refused, naming the way out.
    with pytest.raises(grpc.RpcError) as caught:
        client.call_admin(
            "SetArmState",
            admin_pb2.SetArmStateRequest(
                experiment="forced", arm="b", state=pb.ARM_STATE_ACTIVE, reason="x"
            ),
        )
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "guardrail hold" in (caught.value.details() or "")


@pytest.mark.integration
def test_an_arm_that_significantly_breaks_a_constraint_is_not_eligible(
    client: BanditClient,
) -> None:
    """Arm a costs 0.05 a call against ``cost_usd`` mean <= 0.01: each reward moves the test's
    log-evidence by about KL(0.05 || 0.01) = 0.041, so it passes log(20) = 3.0 (plus the
    prior's cost) well within 400 of a's rewards; b (cost 0.001) never does. Until then a
    gets traffic, afterwards none: every Route goes to b."""
    experiment = pb.Experiment(
        name="budget",
        arms=[pb.Arm(name="a"), pb.Arm(name="b")],
        metrics=[
            pb.MetricSpec(name="quality", kind=pb.METRIC_KIND_BINARY),
            pb.MetricSpec(name="cost_usd", min=0.0, max=1.0),
        ],
        objective=pb.Objective(
            weights={"quality": 1.0},
            constraints=[pb.Constraint(metric="cost_usd", max_mean=0.01)],
        ),
    )
    client.create_experiment(experiment)
    time.sleep(0.2)
    rng = random.Random(7)
    cost = {"a": 0.05, "b": 0.001}
    a_rewards = 0
    for _ in range(2000):
        decision = client.route("budget")
        a_rewards += decision.arm == "a"
        metrics = {"quality": float(rng.random() < 0.6), "cost_usd": cost[decision.arm]}
        reward(client, decision.decision_id, metrics)
        if a_rewards >= 400:
            break
    time.sleep(0.3)  # one refresh: the verdict is reached from the shared statistics
    assert {client.route("budget").arm for _ in range(200)} == {"b"}
    # The arm is still ACTIVE (a constraint is not a quarantine): it is simply not eligible.
    assert arm_states(client, "budget")["a"].state == pb.ARM_STATE_ACTIVE
