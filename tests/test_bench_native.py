"""The C++ load generator counts what the server did, and says what it needs when it can't."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bandit_router.bench import native
from bandit_router.bench.fixtures import bench_experiment
from bandit_router.client import BanditClient

from .servers import RedisServer, ServerProcess, server_processes

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(redis_server: RedisServer) -> Iterator[ServerProcess]:
    redis_server.flush()
    # These tests check what the driver counts, not admission: a machine that stalls the
    # server for a moment must not make it shed calls (gRPC's pending limit, 64 by default,
    # answers the excess CANCELLED: 17 of 500 calls once, in CI, after a 240 ms stall).
    args = ("--redis-url", redis_server.url, "--max-pending-rpcs", "100000")
    with server_processes(1, *args) as (server,):
        with BanditClient(server.target, timeout=5) as client:
            client.call_admin("CreateExperiment", bench_experiment())
        yield server


def test_every_ok_the_driver_counts_is_a_decision_the_server_stored(
    served: ServerProcess,
) -> None:
    binary = native.build()
    run = native.run(binary, served.target, concurrency=8, seconds=1.0, warmup_seconds=0.0)
    assert run.codes == {"OK": run.ok} and run.ok > 100
    assert run.ok_us is not None and 0 < run.ok_us["p50"] <= run.ok_us["p99"]
    with BanditClient(served.target, timeout=5) as client:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # decisions are flushed every 25 ms
            decisions = sum(s.decisions for s in client.get_experiment("bench").statistics)
            if decisions == run.ok:
                break
            time.sleep(0.05)
    assert decisions == run.ok


def test_an_open_loop_run_offers_its_rate_and_counts_only_its_window(
    served: ServerProcess,
) -> None:
    run = native.run(native.build(), served.target, rate=500, seconds=1.0, warmup_seconds=0.2)
    assert sum(run.codes.values()) == 500
    assert run.ok == 500


def test_every_pair_the_driver_counts_is_a_reward_the_server_applied(
    served: ServerProcess,
) -> None:
    """Route then Reward of its decision id: every OK pair is one credited reward, and the
    rewards are the driver's own law (value 1 for the pairs whose index is a multiple of 3)."""

    def rewards() -> tuple[float, float]:
        with BanditClient(served.target, timeout=5) as client:
            statistics = client.get_experiment("bench").statistics
        return sum(s.n for s in statistics), sum(s.sum for s in statistics)

    count_before, sum_before = rewards()
    run = native.run(
        native.build(), served.target, concurrency=8, seconds=1.0, warmup_seconds=0.0, pairs=True
    )
    assert run.codes == {"OK": run.ok} and run.ok > 50
    count, total = rewards()
    assert count - count_before == run.ok  # a Reward is acknowledged only once it is stored
    assert total - sum_before == (run.ok + 2) // 3


def _connections_to(port: int) -> set[int]:
    """Local ports of established TCP connections to 127.0.0.1:``port``, as IPv4 sockets
    (/proc/net/tcp) or IPv4-mapped IPv6 ones (/proc/net/tcp6), which gRPC opens."""
    remotes = {f"0100007F:{port:04X}", f"0000000000000000FFFF00000100007F:{port:04X}"}
    local_ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if state == "01" and remote in remotes:
                local_ports.add(int(local.split(":")[1], 16))
    return local_ports


def test_the_driver_opens_as_many_connections_as_asked(served: ServerProcess) -> None:
    """--connections N: N HTTP/2 connections, so that `serve --workers` processes, which the
    kernel hands whole connections, all get calls."""
    port = int(served.target.rsplit(":", 1)[1])
    before = _connections_to(port)
    seen: set[int] = set()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(
            native.run, native.build(), served.target, rate=200, seconds=1.5, connections=3
        )
        while not running.done():
            seen |= _connections_to(port) - before
            time.sleep(0.05)
        run = running.result()
    assert run.ok == 300
    assert len(seen) == 3


def test_without_the_toolchain_the_build_names_the_debian_packages(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no g++, protoc, plugin or pkg-config
    assert native.missing_tools() == sorted(set(native.PROGRAMS.values()))
    with pytest.raises(RuntimeError, match=r"apt-get install .*libgrpc\+\+-dev"):
        native.build(tmp_path)
