"""The C++ load generator counts what the server did, and says what it needs when it can't."""

from __future__ import annotations

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
    with server_processes(1, "--redis-url", redis_server.url) as (server,):
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


def test_without_the_toolchain_the_build_names_the_debian_packages(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no g++, protoc, plugin or pkg-config
    assert native.missing_tools() == sorted(set(native.PROGRAMS.values()))
    with pytest.raises(RuntimeError, match=r"apt-get install .*libgrpc\+\+-dev"):
        native.build(tmp_path)
