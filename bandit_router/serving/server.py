"""Builds the running service from its parts and runs it until SIGTERM.

``build_app(config, store)`` wires store, cache, router, rewards, sweeper, servicers, health
and reflection explicitly (no import-time globals), which is what lets the tests start a real
server in a thread or a process in a few lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import random
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc
from prometheus_client import CollectorRegistry

from bandit_router.analysis.drift import DriftMonitor
from bandit_router.analysis.guardrails import GuardrailMonitor
from bandit_router.analysis.reports import PosteriorGauges, ReportBuilder
from bandit_router.analysis.stopping import StoppingMonitor
from bandit_router.dashboard.actions import DashboardActions
from bandit_router.dashboard.document import DashboardData
from bandit_router.dashboard.traffic import TrafficHistory, sample_forever
from bandit_router.dashboard.web import DashboardServer, start_dashboard_server
from bandit_router.errors import AlreadyExists
from bandit_router.operations.admin import AdminOperations
from bandit_router.operations.auth import Authenticator
from bandit_router.operations.experiment_files import load_experiments
from bandit_router.reward.rewards import RewardProcessor
from bandit_router.reward.sweeper import DefaultRewardSweeper
from bandit_router.route.cache import ExperimentCache
from bandit_router.route.recorder import DecisionRecorder
from bandit_router.route.router import Router
from bandit_router.route.sticky import StickyStore
from bandit_router.route.tokens import DecisionSigner
from bandit_router.serving.admission import Admission
from bandit_router.serving.config import ServerConfig
from bandit_router.serving.health import DrainingHealthServicer
from bandit_router.serving.rpc_metrics import InstrumentedServer
from bandit_router.serving.servicers import AdminServicer, RouterServicer
from bandit_router.store.permissions import check_permissions
from bandit_router.store.redis_store import Store
from bandit_router.tasks import cancel_and_wait
from bandit_router.telemetry.buffered_metrics import FLUSH_INTERVAL
from bandit_router.telemetry.metrics import (
    Metrics,
    exposition_registry,
    mark_worker_dead,
    prepare_multiprocess_dir,
    start_metrics_http_server,
)
from bandit_router.v1 import admin_pb2, admin_pb2_grpc, router_pb2, router_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    router_pb2.DESCRIPTOR.services_by_name["Router"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name,
)
EXAMPLE_FILE = os.path.join(
    os.path.dirname(os.path.dirname(__file__)), "examples", "experiments.yaml"
)
HEALTH_INTERVAL = 0.5
LEFTOVER_FINISH_SECONDS = 1.0
#: Shutdown's settle (``App._settle``): this long without a new Route/Reward means gRPC's
#: queue of received calls is empty; the wait never exceeds the limit.
SETTLE_QUIET = 0.05
SETTLE_LIMIT = 1.0
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


@dataclass
class App:
    config: ServerConfig
    store: Store
    server: grpc.aio.Server
    cache: ExperimentCache
    recorder: DecisionRecorder
    sweeper: DefaultRewardSweeper
    health: DrainingHealthServicer
    metrics: Metrics
    drift: DriftMonitor
    admission: Admission
    port: int = 0
    reports: ReportBuilder | None = None
    guardrails: GuardrailMonitor | None = None
    dashboard: DashboardServer | None = None
    actions: DashboardActions | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _stop_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.cache.start()
        if self.config.dashboard_address:
            self._start_dashboard(self.config.dashboard_address)
        await self.server.start()
        self.sweeper.start()
        if self.guardrails is not None:
            self.guardrails.start()
        self._tasks.append(asyncio.create_task(self._watch_store(), name="health"))
        self._tasks.append(asyncio.create_task(self._watch_cache_age(), name="cache-age"))
        self._tasks.append(asyncio.create_task(self._flush_metrics(), name="metrics-flush"))

    def _start_dashboard(self, address: str) -> None:
        """The dashboard: a sampler task on the loop and an HTTP thread. Route and Reward do
        nothing for it; the page's JSON is computed at most once a second; operator actions
        need a token (``dashboard.actions``)."""
        assert self.reports is not None
        host, _, port = address.rpartition(":")
        history = TrafficHistory()
        actions = self.actions
        data = DashboardData(
            self.reports, self.cache, history, actions=actions is not None and actions.enabled
        )
        try:
            self.dashboard = start_dashboard_server(
                host.strip("[]") or "127.0.0.1",
                int(port),
                asyncio.get_running_loop(),
                data.document,
                actions.perform if actions is not None else None,
            )
        except OSError as error:
            raise OSError(
                f"cannot listen on --dashboard-address {address}: {error.strerror or error}"
            ) from None
        self._tasks.append(
            asyncio.create_task(sample_forever(history, self.cache.entries), name="dashboard")
        )
        log.info("dashboard on http://%s:%d/", host or "127.0.0.1", self.dashboard.server_port)

    async def _set_health(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", *SERVICE_NAMES):
            await self.health.set(service, status)

    async def _watch_store(self) -> None:
        """SERVING only while the store takes writes, so load balancers route around a lost,
        frozen, full or read-only Redis: a probe every HEALTH_INTERVAL, bounded by as much,
        so health changes within two intervals of the store's."""
        serving: bool | None = None
        while True:
            refusal = await self.store.write_refusal(HEALTH_INTERVAL)
            if (refusal is None) != serving:
                serving = refusal is None
                await self._set_health(serving)
                if serving:
                    log.info("store takes writes; health SERVING")
                else:
                    log.warning("store refuses writes (%s); health NOT_SERVING", refusal)
            await asyncio.sleep(HEALTH_INTERVAL)

    async def _watch_cache_age(self) -> None:
        """Every second the cache age; every 5 s the posterior gauges of changed experiments.

        The gauges need a quadrature per experiment (a few ms of loop time): often enough for
        a dashboard, rare enough to stay out of Route's tail latency.
        """
        gauges = PosteriorGauges(self.metrics)
        tick = 0
        while True:
            age = self.cache.age()
            for name in self.cache.names():
                self.metrics.set_cache_age(name, age)
            if tick % 5 == 0:
                try:
                    gauges.update(self.cache.entries())
                except Exception:
                    log.exception("posterior gauges not updated")
            tick += 1
            await asyncio.sleep(1.0)

    async def _flush_metrics(self) -> None:
        """Export what the hot path counted (see ``buffered_metrics``), on the loop's thread."""
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            self.metrics.flush()

    def request_stop(self, grace: float | None = None) -> asyncio.Task[None]:
        """Start draining (once; later requests share the first): what SIGTERM does."""
        if self._stop_task is None:
            self._stopping.set()
            self._stop_task = asyncio.get_running_loop().create_task(
                self._drain(self.config.grace if grace is None else grace), name="drain"
            )
        return self._stop_task

    async def stop(self, grace: float | None = None) -> None:
        """Drain and close; returns once everything answered is written (see ``_drain``)."""
        await asyncio.shield(self.request_stop(grace))

    async def _drain(self, grace: float) -> None:
        """NOT_SERVING first; keep serving ``drain_delay`` seconds so load balancers stop
        sending; end health watches; refuse new calls and let in-flight ones finish (up to
        ``grace``); then write every decision answered, and close.

        Runs as its own task that nothing else cancels: once it ran only inside the signal
        handler's task, and the leftover-task cleanup cancelled it before the decisions were
        flushed (0-6 of ~400 answered decisions lost per SIGTERM).
        """
        await self.health.enter_graceful_shutdown()
        if self.config.drain_delay > 0:
            log.info("draining: NOT_SERVING, still serving for %g s", self.config.drain_delay)
            await asyncio.sleep(self.config.drain_delay)
        await self._settle()
        await self.health.close_watches()
        await self.server.stop(grace)
        await cancel_and_wait(self._tasks)
        await self.sweeper.stop()
        if self.guardrails is not None:
            await self.guardrails.stop()
        unwritten = await self.recorder.flush(timeout=max(grace, 5.0))
        if unwritten:
            log.error("%d answered decisions could not be written before exit", unwritten)
        await self.cache.stop()
        if self.dashboard is not None:
            await asyncio.to_thread(self.dashboard.shutdown)
            self.dashboard.server_close()
        self.metrics.flush()
        await self.store.close()

    async def _settle(self) -> None:
        """Keep taking calls until none has arrived for ``SETTLE_QUIET`` (at most
        ``SETTLE_LIMIT``): calls a client sent just before the signal may still wait in gRPC's
        core queue, and ``server.stop`` cancels those instead of handing them over
        (grpc/grpc#41785), so a burst in flight at SIGTERM would end CANCELLED. Once the loop
        has been idle that long the queue is empty; under steady traffic (no balancer drain)
        the limit bounds the wait."""
        deadline = time.monotonic() + SETTLE_LIMIT
        while (now := time.monotonic()) < deadline:
            idle = now - self.admission.last_arrival
            if idle >= SETTLE_QUIET:
                return
            await asyncio.sleep(min(SETTLE_QUIET - idle, deadline - now))

    async def wait_stopped(self) -> None:
        """Until a stop was requested and has finished."""
        await self._stopping.wait()
        assert self._stop_task is not None
        await asyncio.shield(self._stop_task)


def _server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    if not config.tls_cert or not config.tls_key:
        return None
    with open(config.tls_key, "rb") as key, open(config.tls_cert, "rb") as cert:
        pair = (key.read(), cert.read())
    client_ca = None
    if config.tls_client_ca:
        with open(config.tls_client_ca, "rb") as ca:
            client_ca = ca.read()
    return grpc.ssl_server_credentials(
        [pair], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


async def build_app(
    config: ServerConfig,
    store: Store | None = None,
    *,
    registry: CollectorRegistry | None = None,
    rng: random.Random | None = None,
) -> App:
    store = store or Store.from_url(config.redis_url, timeout=config.redis_timeout)
    if not store.embedded:
        # The mode first: on a cluster node reached by redis://, the permission probe itself
        # would fail with MOVED, a reply that names a slot instead of the mistake.
        await store.check_topology(config.wait_replicas)
        await check_permissions(store.client)
    metrics = Metrics(registry or CollectorRegistry())
    auth = Authenticator.from_environment(config.tokens_file, config.router_auth)
    secret = await store.shared_secret(config.secret)
    signer = DecisionSigner(secret)
    cache = ExperimentCache(store, config.refresh_interval)
    cache.metrics = metrics
    recorder = DecisionRecorder(store, linger=config.decision_linger)
    recorder.metrics = metrics
    sticky = StickyStore(store, lookup_timeout=config.sticky_lookup)
    router = Router(cache, signer, recorder, rng=rng, metrics=metrics, sticky=sticky)
    rewards = RewardProcessor(
        store,
        cache,
        signer,
        metrics=metrics,
        wait_replicas=config.wait_replicas,
        wait_timeout_ms=config.wait_timeout_ms,
        linger=config.reward_linger,
    )
    drift = DriftMonitor(store, metrics, delta=config.drift_delta, threshold=config.drift_threshold)
    cache.on_refresh(drift.observe)
    stopping = StoppingMonitor(store, metrics)
    cache.on_refresh(stopping.observe)
    cache.on_removal(stopping.forget)
    cache.on_removal(metrics.remove_experiment)
    cache.on_refresh(sticky.observe)
    sweeper = DefaultRewardSweeper(store, cache, interval=config.sweep_interval, metrics=metrics)
    guardrails = GuardrailMonitor(store, cache, interval=config.guardrail_interval, metrics=metrics)
    operations = AdminOperations(store)
    reports = ReportBuilder(store, cache, drift, metrics)

    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", 1),
            # Calls gRPC holds for the server before a handler takes them: beyond the soft
            # limit a growing share, beyond 3x all, are refused at once, in gRPC's C core,
            # off the event loop (see admission.py for why this is where a queue forms).
            ("grpc.server.max_pending_requests", config.max_pending_rpcs),
            ("grpc.server.max_pending_requests_hard_limit", 3 * config.max_pending_rpcs),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    admission = Admission(config.max_concurrent_rpcs)
    hot = InstrumentedServer(server, metrics, register=True, admission=admission)
    cold = InstrumentedServer(server, metrics, register=False)
    router_pb2_grpc.add_RouterServicer_to_server(RouterServicer(router, rewards, auth), hot)
    admin_pb2_grpc.add_AdminServicer_to_server(AdminServicer(operations, reports, auth), cold)
    health = DrainingHealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, cold)
    reflection_service_names = (
        *SERVICE_NAMES,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        reflection.aio.ReflectionServicer(reflection_service_names), cold
    )
    credentials = _server_credentials(config)
    if credentials is None:
        port = server.add_insecure_port(config.listen)
    else:
        port = server.add_secure_port(config.listen, credentials)
    if port == 0:
        raise OSError(f"cannot listen on {config.listen}")
    app = App(
        config,
        store,
        server,
        cache,
        recorder,
        sweeper,
        health,
        metrics,
        drift,
        admission,
        port,
        reports=reports,
        guardrails=guardrails,
        actions=DashboardActions(operations, auth),
    )
    await app._set_health(False)
    await load_initial_experiments(config, operations)
    return app


async def load_initial_experiments(config: ServerConfig, operations: AdminOperations) -> None:
    """Create the experiments of the file (and the example) that do not exist yet.

    Existing experiments are left as they are: a restart must not undo an operator's pin or
    kill switch. Change a running experiment with ``bandit-router apply``.
    """
    files = [EXAMPLE_FILE] if config.example else []
    if config.experiments_file:
        files.append(config.experiments_file)
    for path in files:
        for experiment in load_experiments(path):
            try:
                await operations.create(experiment, "bandit-router", f"loaded from {path}")
                log.info("created experiment %s from %s", experiment.name, path)
            except AlreadyExists:
                log.info("experiment %s exists; left unchanged (file %s)", experiment.name, path)


async def serve(
    config: ServerConfig, *, ready: asyncio.Event | None = None, exit_if_stuck: bool = False
) -> None:
    """Run one server process until SIGTERM or SIGINT, then drain and exit cleanly.

    ``exit_if_stuck`` (the process entry point's choice, never an embedding caller's): end the
    process when a leftover task will not stop, since ``asyncio.run`` would wait for it forever.
    """
    from bandit_router.serving.startup import start_app

    app = await start_app(config, CollectorRegistry())  # known failures: StartupError
    # Everything loaded so far (numpy, scipy, grpc, protobuf descriptors...) lives as long as
    # the process; moving it out of the collector's reach turns a ~30 ms full collection,
    # a tail-latency spike every few seconds under load, into one of the recent objects only.
    gc.collect()
    gc.freeze()
    if config.redis_url is None:
        log.warning(
            "embedded store: state lives in this process only and is NOT durable; "
            "use --redis-url for production"
        )
    log.info(
        "serving on %s (port %d), store %s", config.listen, app.port, config.redacted_redis_url()
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, app.request_stop)
    if ready is not None:
        ready.set()
    await app.wait_stopped()
    stuck = await stop_leftover_tasks()
    log.info("stopped")
    if stuck and exit_if_stuck:
        logging.shutdown()
        os._exit(0)


async def stop_leftover_tasks(patience: float = 5.0) -> list[asyncio.Task[Any]]:
    """Cancel whatever still runs once the server has drained; the tasks that will not stop.

    ``asyncio.run`` cancels leftover tasks once and then waits for them without a limit, so a
    task that swallows its cancellation (see ``tasks.py``) kept a drained worker alive forever
    after SIGTERM (seen once in the test suite, orphaned by its supervisor). Re-cancelling
    stops most; any that still run are logged by name. Everything that matters (in-flight
    calls, buffered decisions, metrics) is already flushed when this runs.
    """
    current = asyncio.current_task()
    leftovers = [task for task in asyncio.all_tasks() if task is not current]
    # gRPC's own call tasks can still be sending their last message after the server
    # stopped: cancelling them turned an answered call into CANCELLED at its client (and a
    # CancelledError traceback in the log). They finish in moments; ours are already done.
    if leftovers:
        await asyncio.wait(leftovers, timeout=LEFTOVER_FINISH_SECONDS)
    leftovers = [task for task in leftovers if not task.done()]
    await cancel_and_wait(leftovers, patience=patience)
    stuck = [task for task in leftovers if not task.done()]
    if stuck:
        log.error(
            "%d task(s) ignored cancellation: %s",
            len(stuck),
            ", ".join(f"{task.get_name()} {task.get_coro()!r}" for task in stuck),
        )
    return stuck


def run(config: ServerConfig) -> int:
    """Entry point of ``bandit-router serve``: forks workers first, then runs the event loop."""
    from bandit_router.telemetry.logs import configure_logging

    configure_logging(config.log_level, config.log_json)
    if config.workers > 1:
        return _run_workers(config)
    runner = asyncio.run
    if config.use_uvloop:
        with contextlib.suppress(ImportError):
            import uvloop

            runner = uvloop.run
    runner(serve(config, exit_if_stuck=True))
    return 0


def run_reporting(config: ServerConfig) -> int:
    """``run``, with a known start-up failure written as one line and exit status 2."""
    from bandit_router.serving.startup import EXIT_STARTUP, StartupError, report

    try:
        return run(config)
    except StartupError as error:
        report(str(error), config.log_json)
        return EXIT_STARTUP


def _run_workers(config: ServerConfig) -> int:
    """Fork N single-process servers on one port before any gRPC object exists (SO_REUSEPORT).

    With a metrics address, the workers write prometheus-client's multi-process files and
    this supervisor serves their merged view on /metrics.
    """
    multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if config.metrics_address and multiproc_dir:
        prepare_multiprocess_dir(multiproc_dir)
    children: list[int] = []
    for _ in range(config.workers):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = run_reporting(
                    ServerConfig(**{**config.__dict__, "workers": 1, "metrics_address": None})
                )
            finally:
                os._exit(code)
        children.append(pid)

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    if config.metrics_address and multiproc_dir:
        host, _, port = config.metrics_address.rpartition(":")
        start_metrics_http_server(host or "127.0.0.1", int(port), exposition_registry())
    status = 0
    for child in children:
        _, code = os.waitpid(child, 0)
        if multiproc_dir:
            mark_worker_dead(child, multiproc_dir)
        status = status or os.waitstatus_to_exitcode(code)
    if status in (0, -signal.SIGTERM, -signal.SIGINT):
        return 0
    return status if status == 2 else 1  # 2: a worker could not start (it said why)
