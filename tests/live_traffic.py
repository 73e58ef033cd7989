"""A real server process with real traffic, for the tests that look at it from outside: the
dashboard in a real browser and every PromQL expression in a real Prometheus.

``live_server()`` starts a redis-server and ``bandit-router serve`` (metrics and dashboard
ports on), creates two experiments from a file (``checkout``: three arms, a 1 s reward window
and default reward 0, so the sweeper credits default rewards; ``search``: one arm disabled),
sends seeded traffic with rewards, pins ``search`` to ``dense``, and waits until the shared
statistics stop changing; with ``metered`` also ``router`` (declared metrics: quality and
latency_ms on every reward, so the per-metric gauges have data). ``Traffic`` keeps a slow
stream of calls going (including a NOT_FOUND) for as long as a test needs counters that move.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from bandit_router.client import BanditClient
from bandit_router.v1 import admin_pb2, router_pb2
from bandit_router.v1 import experiment_pb2 as pb
from tests.servers import RedisServer, ServerProcess, free_port

EXPERIMENTS = """\
experiments:
  - name: checkout
    arms: [blue, green, red]
    policy: {name: thompson}
    reward_window: 1s
    default_reward: 0
  - name: search
    arms: [bm25, dense, {name: hybrid, state: disabled}]
    policy: {name: thompson}
"""
CLICK_RATES = {"blue": 0.2, "green": 0.55, "red": 0.35, "bm25": 0.3, "dense": 0.6, "hybrid": 0.5}


@dataclass
class LiveServer:
    server: ServerProcess
    metrics_port: int
    dashboard_port: int

    @property
    def target(self) -> str:
        return self.server.target

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}/"

    def reports(self) -> dict[str, admin_pb2.GetReportResponse]:
        with BanditClient(self.target) as client:
            return {
                name: client.admin.GetReport(
                    admin_pb2.GetReportRequest(experiment=name), timeout=10
                )
                for name in ("checkout", "search")
            }


def send(client: BanditClient, rng: random.Random, rounds: int, reward_share: float) -> None:
    """``rounds`` Route calls per experiment; a share of them rewarded (1 with the arm's rate)."""
    for i in range(rounds):
        for experiment in ("checkout", "search"):
            decision = client.route(experiment, f"u{rng.randrange(10**9)}-{i}")
            if rng.random() < reward_share:
                value = 1.0 if rng.random() < CLICK_RATES[decision.arm] else 0.0
                client.reward(decision.decision_id, value)


def send_metered(client: BanditClient, rng: random.Random, rounds: int = 40) -> None:
    """Creates ``router`` (metrics quality and latency_ms) and rewards ``rounds`` decisions
    with both metrics."""
    client.create_experiment(
        pb.Experiment(
            name="router",
            arms=[pb.Arm(name="small"), pb.Arm(name="large")],
            metrics=[
                pb.MetricSpec(name="quality", kind=pb.METRIC_KIND_BINARY),
                pb.MetricSpec(name="latency_ms", min=0.0, direction=pb.METRIC_DIRECTION_MINIMIZE),
            ],
            objective=pb.Objective(weights={"quality": 1.0}),
        )
    )
    time.sleep(0.2)
    for _ in range(rounds):
        decision = client.route("router")
        metrics = {"quality": float(rng.random() < 0.5), "latency_ms": rng.uniform(50, 500)}
        client.router.Reward(
            router_pb2.RewardRequest(decision_id=decision.decision_id, metrics=metrics),
            timeout=10,
        )


def settle(live: LiveServer, timeout: float = 20.0) -> None:
    """Until two reports 1.5 s apart agree (decisions written, default rewards swept)."""
    deadline = time.monotonic() + timeout
    previous = None
    while time.monotonic() < deadline:
        current = {
            name: [(a.arm, a.decisions, a.rewards, a.mean) for a in report.arms]
            for name, report in live.reports().items()
        }
        if current == previous:
            return
        previous = current
        time.sleep(1.5)
    raise TimeoutError("the statistics kept changing")


@contextlib.contextmanager
def live_server(tmp_path: Path, rounds: int = 150, metered: bool = False) -> Iterator[LiveServer]:
    experiments = tmp_path / "experiments.yaml"
    experiments.write_text(EXPERIMENTS)
    redis = RedisServer(appendonly=False).start()
    metrics_port, dashboard_port = free_port(), free_port()
    server = ServerProcess(
        "--redis-url",
        redis.url,
        "--experiments",
        str(experiments),
        "--metrics-address",
        f"127.0.0.1:{metrics_port}",
        "--dashboard-address",
        f"127.0.0.1:{dashboard_port}",
        "--sweep-interval",
        "0.5",
    )
    try:
        server.start()
        live = LiveServer(server, metrics_port, dashboard_port)
        with BanditClient(server.target) as client:
            send(client, random.Random(18), rounds, reward_share=0.7)
            client.admin.PinArm(
                admin_pb2.PinArmRequest(experiment="search", arm="dense", reason="launch"),
                timeout=10,
            )
            if metered:
                send_metered(client, random.Random(19))
        settle(live)
        yield live
    except BaseException:
        print(server.output()[-3000:])
        raise
    finally:
        server.stop()
        redis.stop()


class Traffic:
    """Background calls (about 20 per second, plus one NOT_FOUND a second) until stopped."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng = random.Random(4)
        with BanditClient(self.target, max_attempts=1) as client:
            while not self._stop.is_set():
                send(client, rng, 5, reward_share=0.7)
                with contextlib.suppress(grpc.RpcError):
                    client.route("no-such-experiment", "u")
                self._stop.wait(0.5)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)
