"""Route and Reward over a real channel, on the embedded store and on a real redis-server."""

from __future__ import annotations

import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from bandit_router.client import AsyncBanditClient, BanditClient
from bandit_router.v1 import admin_pb2

from .servers import ServerThread


def stats_of(client: BanditClient, name: str) -> dict[str, tuple[float, float, int]]:
    response = client.get_experiment(name)
    return {s.arm: (s.n, s.sum, s.decisions) for s in response.statistics}


def wait_for(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def test_route_then_reward_updates_exactly_once(any_server: ServerThread) -> None:
    with BanditClient(any_server.target, timeout=5) as client:
        client.create_experiment("exp", ["a", "b", "c"], reward_window=60)
        decision = client.route("exp")
        assert decision.arm in {"a", "b", "c"}
        assert decision.reason in {"EXPLOIT", "EXPLORE"}
        assert decision.policy == "thompson"
        assert abs(decision.propensity - 1 / 3) < 1e-6  # symmetric prior: exact 1/3 each
        assert decision.reward_deadline.timestamp() == pytest.approx(time.time() + 60, abs=5)
        assert client.reward(decision.decision_id, 1.0) == "APPLIED"
        assert client.reward(decision.decision_id, 1.0) == "DUPLICATE"
        assert client.reward(decision.decision_id, 0.0) == "DUPLICATE"
        n, total, _ = stats_of(client, "exp")[decision.arm]
        assert (n, total) == (1.0, 1.0)
        wait_for(lambda: stats_of(client, "exp")[decision.arm][2] == 1)  # decision counted


def test_excluded_arms_are_never_returned(any_server: ServerThread) -> None:
    with BanditClient(any_server.target, timeout=5) as client:
        client.create_experiment("exp", ["a", "b", "c"])
        arms = {client.route("exp", excluded_arms=["a", "c"]).arm for _ in range(50)}
        assert arms == {"b"}
        decision = client.route("exp", excluded_arms=["a", "c"])
        assert decision.propensity == pytest.approx(1.0)
        with pytest.raises(grpc.RpcError) as error:
            client.route("exp", excluded_arms=["a", "b", "c"])
        assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        details = error.value.details()
        assert details is not None
        assert "excluded_arms" in details


def test_health_and_reflection(embedded_server: ServerThread) -> None:
    with grpc.insecure_channel(embedded_server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "bandit_router.v1.Router", "bandit_router.v1.Admin"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        services = {s.name for r in responses for s in r.list_services_response.service}
        assert {
            "bandit_router.v1.Router",
            "bandit_router.v1.Admin",
            "grpc.health.v1.Health",
        } <= services


def test_health_not_serving_while_store_is_down(redis_url: str) -> None:
    from .servers import RedisServer

    redis = RedisServer().start()
    server = ServerThread(redis_url=redis.url, refresh_interval=0.05).start()
    try:
        with grpc.insecure_channel(server.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            redis.stop()

            def status() -> int:
                reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
                return int(reply.status)

            wait_for(lambda: status() == health_pb2.HealthCheckResponse.NOT_SERVING, timeout=10)
    finally:
        server.stop()


def test_async_client(embedded_server: ServerThread) -> None:
    import asyncio

    async def scenario() -> list[str]:
        async with AsyncBanditClient(embedded_server.target, connections=2) as client:
            await client.call_admin(
                "CreateExperiment",
                admin_pb2.CreateExperimentRequest(
                    experiment={"name": "async", "arms": [{"name": "x"}, {"name": "y"}]}
                ),
            )
            decisions = await asyncio.gather(*(client.route("async") for _ in range(20)))
            return await asyncio.gather(*(client.reward(d.decision_id, 1.0) for d in decisions))

    assert asyncio.run(scenario()) == ["APPLIED"] * 20


def test_admin_crud(any_server: ServerThread) -> None:
    with BanditClient(any_server.target, timeout=5) as client:
        created = client.create_experiment("crud", ["a", "b"], policy="ucb1", params={"c": 0.5})
        assert created.version == 1
        assert [e.name for e in client.list_experiments()] == ["crud"]
        experiment = client.get_experiment("crud").experiment
        experiment.description = "updated"
        response = client.call_admin(
            "UpdateExperiment",
            admin_pb2.UpdateExperimentRequest(
                experiment=experiment, update_mask={"paths": ["description"]}, expected_version=1
            ),
        )
        assert response.experiment.version == 2
        assert response.experiment.description == "updated"
        assert response.experiment.policy.params["c"] == 0.5
        with pytest.raises(grpc.RpcError) as stale:
            client.call_admin(
                "UpdateExperiment",
                admin_pb2.UpdateExperimentRequest(experiment=experiment, expected_version=1),
            )
        assert stale.value.code() == grpc.StatusCode.ABORTED
        client.delete_experiment("crud", reason="done")
        assert client.list_experiments() == []
        with pytest.raises(grpc.RpcError) as gone:
            client.get_experiment("crud")
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND
