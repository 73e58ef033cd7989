"""Metrics: exposition values after driving ``Metrics``, instrumented handlers on a real server,
and multi-process aggregation across two real worker processes."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bandit_router.serving.rpc_metrics import InstrumentedServer
from bandit_router.telemetry.metrics import (
    LATENCY_BUCKETS,
    Metrics,
    exposition_registry,
    start_metrics_http_server,
)
from bandit_router.v1 import admin_pb2, admin_pb2_grpc, router_pb2, router_pb2_grpc

REPO = Path(__file__).resolve().parents[1]
Labels = tuple[tuple[str, str], ...]


def samples(text: str) -> dict[tuple[str, Labels], float]:
    """Parse exposition text into {(sample name, sorted labels): value}."""
    out: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def scrape(registry: CollectorRegistry) -> dict[tuple[str, Labels], float]:
    return samples(generate_latest(registry).decode())


def key(name: str, **labels: str) -> tuple[str, Labels]:
    return (name, tuple(sorted(labels.items())))


@pytest.fixture(autouse=True)
def _single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    # This process imported prometheus_client without the variable: single-process mode.
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)


def test_exposition_after_driving_every_method() -> None:
    registry = CollectorRegistry()
    m = Metrics(registry)
    for _ in range(3):
        m.observe_decision("exp1", "A", "REASON_EXPLOIT")
    m.observe_decision("exp1", "B", "EXPLORE")
    m.observe_reward("exp1", "A", "REWARD_OUTCOME_APPLIED", 1.0)
    m.observe_reward("exp1", "A", "APPLIED", 0.5)
    m.observe_reward("exp1", "A", "DUPLICATE", 1.0)  # not credited: no value
    m.observe_reward("exp1", "A", "LATE_APPLIED", 0.25)
    m.observe_default_rewards("exp1", "B", 4, 0.0)
    m.observe_default_rewards("exp1", "A", 2, 2.0)
    m.set_arm_posterior("exp1", "A", 0.61, 0.93)
    m.set_arm_metric("exp1", "A", "latency_ms", 40.0, 123.5)
    m.set_exploration_share("exp1", 0.12)
    m.set_cache_age("exp1", 0.35)
    m.observe_store("hincrbyfloat", 0.0004, True)
    m.observe_store("hincrbyfloat", 0.2, False)
    m.set_drift("exp1", "A", 3.0, False)
    m.set_drift("exp1", "A", 60.0, True)
    m.set_drift("exp1", "A", 70.0, True)  # still detected: not a new alarm
    m.set_drift("exp1", "A", 1.0, False)
    m.set_drift("exp1", "A", 55.0, True)  # second rising edge
    m.observe_rpc("bandit_router.v1.Router", "Route", "OK", 0.0003)
    m.observe_rpc("bandit_router.v1.Router", "Route", "UNAVAILABLE", 0.7)
    m.observe_rpc("bandit_router.v1.Admin", "GetReport", "OK", 0.01)
    m.flush()

    s = scrape(registry)
    assert (
        s[key("bandit_router_decisions_total", experiment="exp1", arm="A", reason="exploit")] == 3
    )
    assert (
        s[key("bandit_router_decisions_total", experiment="exp1", arm="B", reason="explore")] == 1
    )
    assert s[key("bandit_router_rewards_total", experiment="exp1", arm="A", outcome="applied")] == 2
    assert (
        s[key("bandit_router_rewards_total", experiment="exp1", arm="A", outcome="duplicate")] == 1
    )
    assert (
        s[key("bandit_router_rewards_total", experiment="exp1", arm="A", outcome="late_applied")]
        == 1
    )
    # 1.0 + 0.5 + 0.25 credited rewards + 2.0 from default rewards; the duplicate is excluded.
    assert s[key("bandit_router_reward_value_total", experiment="exp1", arm="A")] == 3.75
    assert s[key("bandit_router_default_rewards_total", experiment="exp1", arm="B")] == 4
    assert s[key("bandit_router_arm_posterior_mean", experiment="exp1", arm="A")] == 0.61
    assert s[key("bandit_router_arm_probability_best_ratio", experiment="exp1", arm="A")] == 0.93
    metric = {"experiment": "exp1", "arm": "A", "metric": "latency_ms"}
    assert s[key("bandit_router_arm_metric_mean", **metric)] == 123.5
    assert s[key("bandit_router_arm_metric_observations", **metric)] == 40.0
    assert s[key("bandit_router_exploration_ratio", experiment="exp1")] == 0.12
    assert s[key("bandit_router_cache_age_seconds", experiment="exp1")] == 0.35
    assert s[key("bandit_router_store_duration_seconds_count", operation="hincrbyfloat")] == 2
    assert s[key("bandit_router_store_errors_total", operation="hincrbyfloat")] == 1
    assert s[key("bandit_router_drift_statistic", experiment="exp1", arm="A")] == 55.0
    assert s[key("bandit_router_drift_detected", experiment="exp1", arm="A")] == 1.0
    assert s[key("bandit_router_drift_alarms_total", experiment="exp1", arm="A")] == 2

    route = {
        "grpc_type": "unary",
        "grpc_service": "bandit_router.v1.Router",
        "grpc_method": "Route",
    }
    assert s[key("grpc_server_started_total", **route)] == 2
    assert s[key("grpc_server_handled_total", grpc_code="OK", **route)] == 1
    assert s[key("grpc_server_handled_total", grpc_code="UNAVAILABLE", **route)] == 1
    assert s[key("grpc_server_handling_seconds_count", **route)] == 2
    # 0.3 ms falls in le=0.0005, 0.7 s only in le=1: the SLO bucket le=0.5 holds exactly one.
    assert s[key("grpc_server_handling_seconds_bucket", le="0.0005", **route)] == 1
    assert s[key("grpc_server_handling_seconds_bucket", le="0.5", **route)] == 1
    assert s[key("grpc_server_handling_seconds_bucket", le="1.0", **route)] == 2


def test_buckets_cover_route_handler_time_and_the_slo_boundary() -> None:
    """Route's own handler time is tens of microseconds: buckets start below 50 µs."""
    assert LATENCY_BUCKETS[:4] == (0.000005, 0.00001, 0.000025, 0.00005)
    assert 0.5 in LATENCY_BUCKETS
    assert list(LATENCY_BUCKETS) == sorted(LATENCY_BUCKETS)
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.observe_rpc("s", "Route", "OK", 0.0001)
    metrics.flush()
    text = generate_latest(registry).decode()
    assert 'grpc_server_handling_seconds_bucket{grpc_method="Route",' in text
    assert 'le="0.5"} 1.0' in text


def test_single_process_exposition_has_process_metrics_and_no_created_series() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.observe_rpc("s", "Route", "OK", 0.00002)
    metrics.observe_decision("e", "a", "EXPLOIT")
    metrics.flush()
    names = {
        sample.name
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
    }
    for expected in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
        "python_info",
        "python_gc_collections_total",
    ):
        assert expected in names, expected
    assert not [name for name in names if name.endswith("_created")]
    # Ratios (values in [0, 1]) carry the unit suffix Prometheus's naming guide asks for.
    ratios = {"bandit_router_arm_probability_best", "bandit_router_exploration"}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        if any(family.name.startswith(prefix) for prefix in ratios):
            assert family.name.endswith("_ratio"), family.name


def test_remove_experiment_drops_its_series_only() -> None:
    registry = CollectorRegistry()
    m = Metrics(registry)
    for experiment in ("gone", "kept"):
        m.observe_decision(experiment, "A", "EXPLOIT")
        m.observe_reward(experiment, "A", "APPLIED", 1.0)
        m.set_arm_posterior(experiment, "A", 0.5, 0.5)
        m.set_exploration_share(experiment, 0.1)
        m.set_cache_age(experiment, 1.0)
        m.set_drift(experiment, "A", 1.0, True)
        m.set_arm_metric(experiment, "A", "quality", 10.0, 0.7)
    m.remove_experiment("gone")
    s = scrape(registry)
    assert not [k for k in s if ("experiment", "gone") in k[1]]
    assert len([k for k in s if ("experiment", "kept") in k[1]]) >= 9
    # Cached children were dropped too: a re-created experiment starts from zero.
    m.observe_decision("gone", "A", "EXPLOIT")
    m.flush()
    s = scrape(registry)
    assert (
        s[key("bandit_router_decisions_total", experiment="gone", arm="A", reason="exploit")] == 1
    )


def test_metrics_refuses_late_multiprocess_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with pytest.raises(RuntimeError, match="before the first import"):
        Metrics(CollectorRegistry())


def test_http_server_serves_the_registry() -> None:
    registry = CollectorRegistry()
    m = Metrics(registry)
    m.observe_decision("exp1", "A", "EXPLOIT")
    m.flush()
    server, _thread = start_metrics_http_server("127.0.0.1", 0, exposition_registry(registry))
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read().decode()
    finally:
        server.shutdown()
    assert (
        samples(body)[
            key("bandit_router_decisions_total", experiment="exp1", arm="A", reason="exploit")
        ]
        == 1
    )


# -- instrumented handlers on a real grpc.aio server ----------------------------------------


class _Router(router_pb2_grpc.RouterServicer):
    async def Route(
        self, request: router_pb2.RouteRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> router_pb2.RouteResponse:
        if request.experiment == "missing":
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such experiment")
        if request.experiment == "boom":
            raise RuntimeError("handler bug")
        if request.experiment == "set-code":
            context.set_code(grpc.StatusCode.UNAVAILABLE)
            return router_pb2.RouteResponse()
        return router_pb2.RouteResponse(arm="A")

    async def Reward(
        self, request: router_pb2.RewardRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> router_pb2.RewardResponse:
        return router_pb2.RewardResponse(outcome=router_pb2.REWARD_OUTCOME_APPLIED)


class _Admin(admin_pb2_grpc.AdminServicer):
    async def GetExperiment(
        self,
        request: admin_pb2.GetExperimentRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> admin_pb2.GetExperimentResponse:
        return admin_pb2.GetExperimentResponse()


async def _drive(metrics: Metrics) -> dict[str, grpc.StatusCode]:
    server = grpc.aio.server()
    hot = InstrumentedServer(server, metrics, register=True)
    cold = InstrumentedServer(server, metrics, register=False)
    router_pb2_grpc.add_RouterServicer_to_server(_Router(), hot)
    admin_pb2_grpc.add_AdminServicer_to_server(_Admin(), cold)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    seen: dict[str, grpc.StatusCode] = {}
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = router_pb2_grpc.RouterStub(channel)
            for experiment in ("ok", "ok", "ok", "missing", "boom", "set-code"):
                try:
                    await stub.Route(router_pb2.RouteRequest(experiment=experiment), timeout=5)
                    seen[experiment] = grpc.StatusCode.OK
                except grpc.aio.AioRpcError as err:
                    seen[experiment] = err.code()
            await stub.Reward(router_pb2.RewardRequest(decision_id="d", value=1.0), timeout=5)
            admin = admin_pb2_grpc.AdminStub(channel)
            await admin.GetExperiment(admin_pb2.GetExperimentRequest(name="x"), timeout=5)
            try:  # not implemented by _Admin: the generic path reports UNIMPLEMENTED
                await admin.ListExperiments(admin_pb2.ListExperimentsRequest(), timeout=5)
            except grpc.aio.AioRpcError as err:
                seen["unimplemented"] = err.code()
    finally:
        await server.stop(None)
    return seen


def test_instrumented_handlers_record_final_status_codes() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    seen = asyncio.run(_drive(metrics))
    metrics.flush()
    # The client saw these codes; the server-side metrics must agree with them.
    assert seen == {
        "ok": grpc.StatusCode.OK,
        "missing": grpc.StatusCode.NOT_FOUND,
        "boom": grpc.StatusCode.UNKNOWN,
        "set-code": grpc.StatusCode.UNAVAILABLE,
        "unimplemented": grpc.StatusCode.UNIMPLEMENTED,
    }
    s = scrape(registry)
    route = {
        "grpc_type": "unary",
        "grpc_service": "bandit_router.v1.Router",
        "grpc_method": "Route",
    }
    assert s[key("grpc_server_started_total", **route)] == 6
    assert s[key("grpc_server_handled_total", grpc_code="OK", **route)] == 3
    assert s[key("grpc_server_handled_total", grpc_code="NOT_FOUND", **route)] == 1
    assert s[key("grpc_server_handled_total", grpc_code="UNKNOWN", **route)] == 1
    assert s[key("grpc_server_handled_total", grpc_code="UNAVAILABLE", **route)] == 1
    assert s[key("grpc_server_handling_seconds_count", **route)] == 6
    reward = {**route, "grpc_method": "Reward"}
    assert s[key("grpc_server_handling_seconds_count", **reward)] == 1
    total = s[key("grpc_server_handling_seconds_sum", **route)]
    assert 0 < total < 5  # six in-process calls, each far below the 5 s client timeout
    # A service added through its generic handler only is measured the same way.
    get = {**route, "grpc_service": "bandit_router.v1.Admin", "grpc_method": "GetExperiment"}
    assert s[key("grpc_server_handled_total", grpc_code="OK", **get)] == 1
    assert s[key("grpc_server_handling_seconds_count", **get)] == 1


# -- multi-process mode --------------------------------------------------------------------

_WORKER = textwrap.dedent(
    """
    import sys
    from prometheus_client import CollectorRegistry
    from bandit_router.telemetry.metrics import Metrics, multiprocess_enabled

    assert multiprocess_enabled()
    worker, decisions = int(sys.argv[1]), int(sys.argv[2])
    m = Metrics(CollectorRegistry())
    for _ in range(decisions):
        m.observe_decision("exp1", "A", "EXPLOIT")
    m.observe_rpc("bandit_router.v1.Router", "Route", "OK", 0.001 * worker)
    m.set_cache_age("exp1", float(worker))
    m.set_arm_posterior("exp1", "A", 0.1 * worker, 0.5)
    if len(sys.argv) > 3:
        m.remove_experiment("exp1")
    m.flush()
    print(__import__("os").getpid())
    """
)

_READER = textwrap.dedent(
    """
    import sys
    from prometheus_client import generate_latest
    from bandit_router.telemetry.metrics import exposition_registry, mark_worker_dead

    if len(sys.argv) > 1:
        mark_worker_dead(int(sys.argv[1]))
    sys.stdout.write(generate_latest(exposition_registry()).decode())
    """
)


@pytest.fixture
def multiproc_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    directory = tmp_path / "prom"
    directory.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(REPO)}
    yield env


def _run(code: str, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_multiprocess_workers_are_aggregated(multiproc_env: dict[str, str]) -> None:
    pid1 = int(_run(_WORKER, multiproc_env, "1", "5"))
    pid2 = int(_run(_WORKER, multiproc_env, "2", "7"))
    assert pid1 != pid2

    s = samples(_run(_READER, multiproc_env))
    assert (
        s[key("bandit_router_decisions_total", experiment="exp1", arm="A", reason="exploit")] == 12
    )
    # What multi-process mode can merge: python_info; never one process's process_* or
    # python_gc_* passed off as the fleet's, and no _created series.
    names = {name for name, _ in s}
    assert "python_info" in names
    assert not [n for n in names if n.startswith(("process_", "python_gc_"))]
    assert not [n for n in names if n.endswith("_created")]
    route = {
        "grpc_type": "unary",
        "grpc_service": "bandit_router.v1.Router",
        "grpc_method": "Route",
    }
    assert s[key("grpc_server_started_total", **route)] == 2
    assert s[key("grpc_server_handling_seconds_count", **route)] == 2
    # livemax: the worst worker's cache age; livemostrecent: the later worker's value.
    assert s[key("bandit_router_cache_age_seconds", experiment="exp1")] == 2.0
    assert math.isclose(s[key("bandit_router_arm_posterior_mean", experiment="exp1", arm="A")], 0.2)

    # Worker 2 died: its live gauges go, its counters stay (they must never go backwards).
    s = samples(_run(_READER, multiproc_env, str(pid2)))
    assert s[key("bandit_router_cache_age_seconds", experiment="exp1")] == 1.0
    assert (
        s[key("bandit_router_decisions_total", experiment="exp1", arm="A", reason="exploit")] == 12
    )

    # A worker deleting the experiment: mmap entries cannot be deleted, so its gauges read NaN
    # (the newest write wins for livemostrecent) instead of a stale posterior.
    _run(_WORKER, multiproc_env, "3", "1", "remove")
    s = samples(_run(_READER, multiproc_env))
    assert math.isnan(s[key("bandit_router_arm_posterior_mean", experiment="exp1", arm="A")])
