"""Every kind of bad input gets its canonical status, names the field, and changes nothing.

All over a real gRPC channel to a real server, as a client would see it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, cast

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bandit_router.client import BanditClient, ClientError, ErrorReason
from bandit_router.v1 import admin_pb2, experiment_pb2, router_pb2, router_pb2_grpc

from .servers import ServerThread


@pytest.fixture
def setup(any_server: ServerThread) -> Iterator[tuple[BanditClient, str]]:
    with BanditClient(any_server.target, timeout=5, max_attempts=1) as client:
        client.create_experiment("shop", ["a", "b"], reward_window=60, default_reward=0.0)
        decision = client.route("shop")
        yield client, decision.decision_id


def snapshot(client: BanditClient) -> Any:
    """Everything a bad call could have changed: experiments, versions and statistics."""
    experiments = sorted((e.name, e.version) for e in client.list_experiments())
    stats = {
        name: [(s.arm, s.n, s.sum, s.sum_sq) for s in client.get_experiment(name).statistics]
        for name, _ in experiments
    }
    return experiments, stats


def expect(
    client: BanditClient,
    call: Callable[[], Any],
    code: grpc.StatusCode,
    field: str,
    reason: ErrorReason = ErrorReason.INVALID_FIELD,
) -> grpc.RpcError:
    before = snapshot(client)
    with pytest.raises(grpc.RpcError) as raised:
        call()
    error = raised.value
    details = error.details()
    assert error.code() == code, details
    assert details is not None, f"{field!r} not named in {details!r}"
    assert field in details, f"{field!r} not named in {details!r}"
    assert "Traceback" not in details
    assert isinstance(error, ClientError)
    assert error.reason is reason, error.error_info
    assert field in error.field, error.field
    assert snapshot(client) == before
    return error


def experiment(**fields: Any) -> experiment_pb2.Experiment:
    base: dict[str, Any] = {"name": "new", "arms": [{"name": "x"}, {"name": "y"}]}
    base.update(fields)
    return experiment_pb2.Experiment(**base)


def create(client: BanditClient, exp: experiment_pb2.Experiment) -> Callable[[], Any]:
    return lambda: client.call_admin(
        "CreateExperiment", admin_pb2.CreateExperimentRequest(experiment=exp)
    )


INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


def test_route_bad_input(setup: tuple[BanditClient, str]) -> None:
    client, _ = setup
    missing = ErrorReason.EXPERIMENT_NOT_FOUND
    expect(client, lambda: client.route("nope"), NOT_FOUND, "experiment", missing)
    expect(client, lambda: client.route(""), INVALID, "experiment")
    expect(client, lambda: client.route("x" * 65), INVALID, "experiment")
    expect(client, lambda: client.route("shop", excluded_arms=["zzz"]), INVALID, "excluded_arms[0]")
    expect(client, lambda: client.route("shop", context={"f": math.nan}), INVALID, "context[f]")
    expect(client, lambda: client.route("shop", unit_id="u" * 300), INVALID, "unit_id")


def test_create_bad_input(setup: tuple[BanditClient, str]) -> None:
    client, _ = setup
    cases: list[tuple[experiment_pb2.Experiment, str]] = [
        (experiment(name=""), "experiment.name"),
        (experiment(name="n" * 65), "experiment.name"),
        (experiment(name="bad name"), "experiment.name"),
        (experiment(arms=[]), "experiment.arms"),
        (experiment(arms=[{"name": ""}]), "experiment.arms[0].name"),
        (experiment(arms=[{"name": "a" * 65}]), "experiment.arms[0].name"),
        (experiment(policy={"name": "magic"}), "policy.name"),
        (
            experiment(policy={"name": "epsilon_greedy", "params": {"epsilon": 1.5}}),
            "policy.params[epsilon]",
        ),
        (
            experiment(policy={"name": "thompson", "params": {"alpha0": 0.0}}),
            "policy.params[alpha0]",
        ),
        (experiment(policy={"name": "thompson", "params": {"gamma": 1.5}}), "policy.params[gamma]"),
        (experiment(policy={"name": "thompson", "params": {"bogus": 1.0}}), "policy.params[bogus]"),
        (experiment(default_reward=math.nan), "experiment.default_reward"),
        (experiment(default_reward=2.0), "experiment.default_reward"),
        (experiment(reward_window={"seconds": -5}), "experiment.reward_window"),
        (experiment(exploration={"floor": 0.9}), "experiment.exploration.floor"),
        (experiment(holdout={"share": 1.5}), "experiment.holdout.share"),
        (experiment(pin={"arm": "nope"}), "experiment.pin.arm"),
        (experiment(exploration={"max_share": {"x": 0.0}}), "experiment.exploration.max_share[x]"),
        (experiment(exploration={"max_share": {"x": 1.5}}), "experiment.exploration.max_share[x]"),
        (
            experiment(exploration={"max_share": {"x": math.nan}}),
            "experiment.exploration.max_share[x]",
        ),
        (
            experiment(exploration={"max_share": {"zzz": 0.1}}),
            "experiment.exploration.max_share[zzz]",
        ),
        (
            experiment(exploration={"floor": 0.2, "max_share": {"x": 0.1}}),
            "experiment.exploration.max_share[x]",
        ),
        (
            experiment(exploration={"max_share": {"x": 0.3, "y": 0.5}}),
            "experiment.exploration.max_share",
        ),
    ]
    for exp, field in cases:
        expect(client, create(client, exp), INVALID, field)
    twice = experiment(arms=[{"name": "x"}, {"name": "x"}])
    field = "experiment.arms[1].name"
    expect(client, create(client, twice), INVALID, field, ErrorReason.DUPLICATE_ARM)
    expect(
        client,
        create(client, experiment(name="shop")),
        grpc.StatusCode.ALREADY_EXISTS,
        "experiment.name",
        ErrorReason.DUPLICATE_EXPERIMENT,
    )


def test_invalid_argument_carries_bad_request_detail(setup: tuple[BanditClient, str]) -> None:
    client, _ = setup
    error = expect(client, create(client, experiment(name="")), INVALID, "experiment.name")
    # types-grpcio declares the items as an attribute-only class; at runtime they are pairs.
    trailing = cast(tuple[tuple[str, str | bytes], ...], error.trailing_metadata() or ())
    metadata = dict(trailing)
    status = status_pb2.Status.FromString(metadata["grpc-status-details-bin"])
    detail = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(detail)
    assert detail.field_violations[0].field == "experiment.name"


def test_reward_bad_values(setup: tuple[BanditClient, str]) -> None:
    client, decision_id = setup
    for value in (math.nan, math.inf, -math.inf, 1.5, -0.1):
        expect(client, partial(client.reward, decision_id, value), INVALID, "value")
    # The decision is untouched by all that: its real reward still applies, once.
    assert client.reward(decision_id, 1.0) == "APPLIED"


def test_reward_that_would_overflow_a_statistic_changes_nothing(any_server: ServerThread) -> None:
    """An unbounded policy: 2e154 squared is infinite. The value is refused before the first
    write (once it answered INTERNAL and left a negative variance and a dedupe marker)."""
    with BanditClient(any_server.target, timeout=5, max_attempts=1) as client:
        client.create_experiment("cont", ["a", "b"], policy="gaussian_thompson")
        decision = client.route("cont")
        for value in (2e154, -2e154, 1.5e100, 1.7976931348623157e308):
            expect(client, partial(client.reward, decision.decision_id, value), INVALID, "value")
        assert client.reward(decision.decision_id, 1e100) == "APPLIED"
        stats = {s.arm: s for s in client.get_experiment("cont").statistics}[decision.arm]
        assert (stats.n, stats.sum, stats.sum_sq) == (1, 1e100, 1e200)


def test_prior_statistics_are_bounded(any_server: ServerThread) -> None:
    with BanditClient(any_server.target, timeout=5, max_attempts=1) as client:
        arms = [experiment_pb2.Arm(name="x", prior_sum_sq=1e300), experiment_pb2.Arm(name="y")]
        error = expect(
            client,
            create(client, experiment(arms=arms, policy={"name": "gaussian_thompson"})),
            INVALID,
            "prior_sum_sq",
        )
        assert "1e+250" in (error.details() or "")


def test_reward_bad_ids(setup: tuple[BanditClient, str]) -> None:
    client, decision_id = setup
    payload, _, mac = decision_id.rpartition("~")
    forged = (
        decision_id.replace("~a~", "~b~")
        if "~a~" in decision_id
        else decision_id.replace("~b~", "~a~")
    )
    cases = [
        ("", INVALID),
        ("garbage", INVALID),
        ("x" * 600, INVALID),
        (payload + "~" + "A" * len(mac), INVALID),  # corrupted signature
        (forged, INVALID),  # another arm, same signature
        (decision_id[:-1] + ("A" if decision_id[-1] != "A" else "B"), INVALID),
    ]
    for bad, code in cases:
        expect(client, partial(client.reward, bad, 1.0), code, "decision_id")


def test_reward_expired_decision(any_server: ServerThread) -> None:
    with BanditClient(any_server.target, timeout=5, max_attempts=1) as client:
        exp = experiment(
            name="fast",
            reward_window={"nanos": 200_000_000},
            late_reward_grace={"nanos": 1_000_000},
        )
        client.call_admin("CreateExperiment", admin_pb2.CreateExperimentRequest(experiment=exp))
        decision = client.route("fast")
        time.sleep(0.4)
        error = expect(
            client,
            lambda: client.reward(decision.decision_id, 1.0),
            NOT_FOUND,
            "decision_id",
            ErrorReason.DECISION_EXPIRED,
        )
        assert isinstance(error, ClientError) and error.resource is not None
        assert error.resource.name == f"decisions/{decision.decision_id}"


def test_reward_for_deleted_or_recreated_experiment(any_server: ServerThread) -> None:
    with BanditClient(any_server.target, timeout=5, max_attempts=1) as client:
        client.create_experiment("gone", ["a", "b"])
        old = client.route("gone")
        client.delete_experiment("gone")
        reward = partial(client.reward, old.decision_id, 1.0)
        expect(client, reward, NOT_FOUND, "decision_id", ErrorReason.EXPERIMENT_NOT_FOUND)
        client.create_experiment("gone", ["a", "b"])
        expect(client, reward, NOT_FOUND, "decision_id", ErrorReason.DECISION_NOT_FOUND)


def test_reward_for_removed_arm(any_server: ServerThread) -> None:
    with BanditClient(any_server.target, timeout=5, max_attempts=1) as client:
        client.create_experiment("arms", ["a", "b"])
        decision = client.route("arms", excluded_arms=["b"])
        client.call_admin(
            "RemoveArm", admin_pb2.RemoveArmRequest(experiment="arms", arm="a", reason="t")
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # wait until this replica's cache saw the removal
            if client.route("arms").arm == "b" and all(
                client.route("arms").arm == "b" for _ in range(5)
            ):
                break
        error = expect(
            client,
            lambda: client.reward(decision.decision_id, 1.0),
            NOT_FOUND,
            "decision_id",
            ErrorReason.ARM_NOT_FOUND,
        )
        assert isinstance(error, ClientError) and error.resource is not None
        assert error.resource.name == "experiments/arms/arms/a"


names = st.text(min_size=0, max_size=80)
values = st.floats(allow_nan=True, allow_infinity=True)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    experiment_name=st.one_of(st.just("shop"), names),
    unit=names,
    excluded=st.lists(st.one_of(st.sampled_from(["a", "b"]), names), max_size=3),
    context=st.dictionaries(names, values, max_size=3),
    decision_id=st.one_of(names, st.just("")),
    value=values,
)
def test_no_input_crashes_the_server(
    embedded_server: ServerThread,
    experiment_name: str,
    unit: str,
    excluded: list[str],
    context: dict[str, float],
    decision_id: str,
    value: float,
) -> None:
    """Any Route or Reward gets an answer with a canonical client-error status, never INTERNAL."""
    allowed = {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
    with grpc.insecure_channel(embedded_server.target) as channel:
        stub = router_pb2_grpc.RouterStub(channel)
        admin = BanditClient(embedded_server.target, timeout=5)
        if not any(e.name == "shop" for e in admin.list_experiments()):
            admin.create_experiment("shop", ["a", "b"])
        admin.close()
        calls: tuple[Callable[[], object], ...] = (
            lambda: stub.Route(
                router_pb2.RouteRequest(
                    experiment=experiment_name,
                    unit_id=unit,
                    excluded_arms=excluded,
                    context=context,
                ),
                timeout=5,
            ),
            lambda: stub.Reward(
                router_pb2.RewardRequest(decision_id=decision_id, value=value), timeout=5
            ),
        )
        for call in calls:
            try:
                call()
                code = grpc.StatusCode.OK
            except grpc.RpcError as error:
                code = error.code()
            assert code in allowed
