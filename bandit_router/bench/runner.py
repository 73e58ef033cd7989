"""``bandit-router bench``: Route/Reward throughput and latency, as ratios to an echo server.

Absolute timings on shared 2-core machines are noise; what is meaningful is how far the real
server is from the cheapest possible server built the same way, measured in the same run on
the same machine. The benchmark starts both as separate processes (an echo Router and a
bandit-router on a real redis-server), drives each closed-loop with a fixed number of calls in
flight, then open-loop at a steady offered rate (latency measured from each call's scheduled
start, so a stall is not hidden by the generator slowing down: no coordinated omission).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import shlex
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import numpy as np

from bandit_router.bench import native
from bandit_router.bench.fixtures import (
    FIXTURES,
    Fixture,
    create_experiments,
    free_port,
    process,
    redis_cluster,
    redis_server,
    selected_fixtures,
)
from bandit_router.client import channel_options
from bandit_router.v1 import router_pb2, router_pb2_grpc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calls", type=int, default=20_000, help="calls per closed-loop run")
    parser.add_argument("--concurrency", type=int, default=64, help="calls in flight")
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="open-loop offered calls/s (default: a third of echo's closed-loop Route rate, "
        "as 3,000/s is of a 9k/s echo server)",
    )
    parser.add_argument(
        "--overload-driver",
        choices=("auto", "cpp", "python", "none"),
        default="auto",
        help="who offers the overload: cpp, the C++ load generator (open loop at 4x each "
        "server's own capacity, 100 ms deadlines; needs Debian's g++ pkg-config "
        "protobuf-compiler-grpc libgrpc++-dev libprotobuf-dev); python, --overload-callers "
        "Python callers; auto: cpp where it can be built, else python",
    )
    parser.add_argument(
        "--overload-callers",
        type=int,
        default=512,
        help="Python overload: this many callers, 100 ms deadlines and a 10 ms pause "
        "after a refusal, as a polite client would",
    )
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="pass ARG to `bandit-router serve` (repeatable), e.g. "
        "--server-arg=--max-pending-rpcs=64",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="ARGS",
        help="also run a bandit-router with these extra serve arguments (repeatable), in the "
        "same rounds, e.g. --variant='--reward-linger-ms 0'",
    )
    parser.add_argument(
        "--fixture",
        action="append",
        choices=tuple(FIXTURES),
        default=[],
        metavar="NAME",
        help="the experiment to measure (repeatable; default plain): plain, Thompson sampling; "
        "gaussian, gaussian_thompson on rewards in [-1, 1]; guarded, that with four reward "
        "metrics, an objective, two guardrails and a traffic cap; contextual, lin_ts with 15 "
        "numeric context features (d = 16). Several run in the same alternating rounds, and "
        "each later one is also compared with the first",
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per server")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per open-loop run")
    parser.add_argument("--connections", type=int, default=1, help="HTTP/2 connections")
    parser.add_argument("--redis-url", help="use this Redis instead of starting redis-server")
    parser.add_argument(
        "--redis-cluster",
        type=int,
        default=0,
        metavar="N",
        help="start an N-master loopback Redis Cluster (no replicas) instead of one redis-server",
    )
    parser.add_argument(
        "--sizing",
        action="store_true",
        help="instead of timing, measure the Redis and server CPU per Route and per Reward "
        "and the Redis memory per decision and per experiment, and print the deployment "
        "1k, 10k and 100k decisions/s need (uses --calls, --concurrency)",
    )
    parser.add_argument(
        "--sizing-experiments",
        type=int,
        default=200,
        help="experiments created to measure the memory of one (--sizing)",
    )
    parser.add_argument(
        "--sizing-window",
        type=float,
        default=600.0,
        help="reward window in seconds the sizing table assumes (--sizing)",
    )
    parser.add_argument(
        "--sizing-log-retention",
        type=float,
        default=3600.0,
        help="seconds of decision log the sizing table keeps in Redis (--sizing)",
    )
    parser.add_argument(
        "--sizing-experiment-count",
        type=int,
        default=100,
        help="live experiments the sizing table assumes (--sizing)",
    )
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--json", dest="json_out", help="also write the results to this file")
    parser.add_argument("--quick", action="store_true", help="small counts (smoke test)")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="instead of timing, count the servers' CPU instructions per call under valgrind's "
        "callgrind, one call at a time (repeatable on a noisy machine)",
    )
    parser.add_argument(
        "--profile",
        type=int,
        metavar="SECONDS",
        help="instead of timing, sample one server with py-spy for SECONDS under Route-then-"
        "Reward load (--concurrency loops) and print where its CPU goes, per owner (module or "
        "library) in µs per pair; needs the profile extra and ptrace permission (root)",
    )
    parser.add_argument(
        "--instruction-calls", type=int, default=512, help="calls counted per mode (--instructions)"
    )


@dataclass
class Result:
    server: str
    mode: str
    calls: int
    seconds: float
    calls_per_second: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    errors: int
    #: CPU time of the server's processes per call (a Route-then-Reward pair counts once).
    server_cpu_us: float
    #: Calls refused at once with RESOURCE_EXHAUSTED (overload mode); not in ``errors``.
    shed: int = 0
    #: The experiment measured (``bench.fixtures.FIXTURES``).
    fixture: str = "plain"

    @classmethod
    def of(
        cls,
        server: str,
        mode: str,
        latencies: list[float],
        seconds: float,
        errors: int,
        cpu_seconds: float,
        shed: int = 0,
        fixture: str = "plain",
    ) -> Result:
        values = np.asarray(latencies) * 1000.0 if latencies else np.zeros(1)
        return cls(
            server,
            mode,
            len(latencies),
            seconds,
            len(latencies) / seconds if seconds else 0.0,
            float(np.percentile(values, 50)),
            float(np.percentile(values, 99)),
            float(np.percentile(values, 99.9)),
            errors,
            cpu_seconds * 1e6 / len(latencies) if latencies else 0.0,
            shed,
            fixture,
        )


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its descendants (workers), from /proc (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    pending += [int(child) for child in handle.read().split()]
        except OSError:
            continue
    return total / ticks


async def closed_loop(
    call: Callable[[int], Awaitable[Any]], calls: int, concurrency: int
) -> tuple[list[float], float, int]:
    latencies: list[float] = []
    errors = 0
    counter = iter(range(calls))

    async def worker() -> None:
        nonlocal errors
        for index in counter:
            started = time.perf_counter()
            try:
                await call(index)
            except grpc.RpcError:
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started, errors


async def overload_loop(
    call: Callable[[int], Awaitable[Any]], callers: int, duration: float
) -> tuple[list[float], float, int, int]:
    """``callers`` closed-loop callers for ``duration`` seconds; a refused call (shed:
    RESOURCE_EXHAUSTED, or CANCELLED from gRPC's own pending-call limit) pauses its caller
    10 ms. Returns OK latencies, seconds, other failures (mostly expired), refusals."""
    latencies: list[float] = []
    errors = 0
    shed = 0
    refused = {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED}
    begin = time.perf_counter()
    stop = begin + duration

    async def caller(first: int) -> None:
        nonlocal errors, shed
        index = first
        while time.perf_counter() < stop:
            started = time.perf_counter()
            try:
                await call(index)
                latencies.append(time.perf_counter() - started)
            except grpc.aio.AioRpcError as error:
                if error.code() in refused:
                    shed += 1
                    await asyncio.sleep(0.01)
                else:
                    errors += 1
            index += callers

    await asyncio.gather(*(caller(i) for i in range(callers)))
    return latencies, time.perf_counter() - begin, errors, shed


async def open_loop(
    call: Callable[[int], Awaitable[Any]], rate: float, duration: float
) -> tuple[list[float], float, int, int]:
    """Start calls on a fixed schedule; latency counts from the scheduled start. Returns the
    latencies of the calls answered OK, the seconds taken, the failed calls and, apart,
    those shed (RESOURCE_EXHAUSTED)."""
    latencies: list[float] = []
    errors = 0
    shed = 0
    total = int(rate * duration)
    interval = 1.0 / rate
    tasks: list[asyncio.Task[None]] = []

    async def one(index: int, scheduled: float) -> None:
        nonlocal errors, shed
        try:
            await call(index)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                shed += 1
            else:
                errors += 1
            return
        latencies.append(time.perf_counter() - scheduled)

    begin = time.perf_counter()
    index = 0
    while index < total:
        # Launch every call whose scheduled time has come, then sleep about a millisecond
        # (the event loop's timer resolution): sleeping once per call, or polling faster,
        # would cost the generator a whole core, taken from the server under test.
        due = min(total, int((time.perf_counter() - begin) * rate) + 1)
        while index < due:
            tasks.append(asyncio.create_task(one(index, begin + index * interval)))
            index += 1
        await asyncio.sleep(0.001)
    await asyncio.gather(*tasks)
    return latencies, time.perf_counter() - begin, errors, shed


async def _drive(
    target: str,
    server: str,
    args: argparse.Namespace,
    rate: float | None,
    pid: int,
    overload: bool = False,
    fixture: Fixture = FIXTURES["plain"],
    route_requests: list[router_pb2.RouteRequest] | None = None,
) -> list[Result]:
    """One round of one fixture against one server: closed-loop runs, open-loop runs at
    ``rate``, or (with ``overload``) one Route run by ``--overload-callers`` callers with
    100 ms deadlines. The ``index``-th Route sends ``route_requests[index % len]``."""
    channels = [
        grpc.aio.insecure_channel(target, channel_options(1, i + 1))
        for i in range(args.connections)
    ]
    stubs = [router_pb2_grpc.RouterStub(channel) for channel in channels]
    requests = route_requests or fixture.route_requests(fixture.experiment_name(), 1)
    reward_request = fixture.reward_request

    def stub(index: int) -> router_pb2_grpc.RouterStub:
        return stubs[index % len(stubs)]

    def route_request(index: int) -> router_pb2.RouteRequest:
        return requests[index % len(requests)]

    async def route(index: int) -> Any:
        return await stub(index).Route(route_request(index), timeout=10)

    async def route_with_deadline(index: int) -> Any:
        return await stub(index).Route(route_request(index), timeout=0.1)

    decisions: list[str] = []

    async def route_collect(index: int) -> Any:
        response = await stub(index).Route(route_request(index), timeout=10)
        decisions.append(response.decision_id)

    async def reward(index: int) -> Any:
        return await stub(index).Reward(reward_request(decisions[index], index), timeout=10)

    async def route_then_reward(index: int) -> Any:
        response = await stub(index).Route(route_request(index), timeout=10)
        return await stub(index).Reward(reward_request(response.decision_id, index), timeout=10)

    results = []
    await closed_loop(route, min(1000, args.calls), args.concurrency)  # warm up
    gc.collect()
    gc.freeze()  # the generator's own full collections would show up as server latency
    if overload:
        cpu = tree_cpu_seconds(pid)
        latencies, seconds, errors, shed = await overload_loop(
            route_with_deadline, args.overload_callers, args.duration
        )
        cpu = tree_cpu_seconds(pid) - cpu
        label = f"route overload x{args.overload_callers}"
        results.append(
            Result.of(server, label, latencies, seconds, errors, cpu, shed, fixture.name)
        )
    elif rate is None:
        for mode, call in (
            ("route", route),
            ("reward", reward),
            ("route+reward", route_then_reward),
        ):
            if mode == "reward":
                decisions.clear()
                await closed_loop(route_collect, args.calls, args.concurrency)
            cpu = tree_cpu_seconds(pid)
            calls = len(decisions) if mode == "reward" else args.calls  # Routes answered
            latencies, seconds, errors = await closed_loop(call, calls, args.concurrency)
            cpu = tree_cpu_seconds(pid) - cpu
            label = f"{mode} x{args.concurrency}"
            results.append(
                Result.of(server, label, latencies, seconds, errors, cpu, fixture=fixture.name)
            )
    else:
        # route+reward makes two calls per pair: offer half as many pairs, the same RPC rate.
        for mode, call, pairs in (
            ("route", route, rate),
            ("route+reward", route_then_reward, rate / 2),
        ):
            cpu = tree_cpu_seconds(pid)
            latencies, seconds, errors, _ = await open_loop(call, pairs, args.duration)
            cpu = tree_cpu_seconds(pid) - cpu
            label = f"{mode} @{pairs:.0f}/s"
            results.append(
                Result.of(server, label, latencies, seconds, errors, cpu, fixture=fixture.name)
            )
    for channel in channels:
        await channel.close()
    return results


def _run(coroutine: Awaitable[Any]) -> Any:
    try:
        import uvloop

        return uvloop.run(coroutine)  # type: ignore[arg-type]
    except ImportError:
        return asyncio.run(coroutine)  # type: ignore[arg-type]


def run_benchmark(args: argparse.Namespace) -> list[Result]:
    """Both servers up at once; rounds alternate echo and bandit-router, medians reported.

    Alternating the two in every round means slow drifts of a shared machine (other jobs,
    thermal, noisy neighbours) hit both alike, so their ratio stays meaningful. Each round
    runs every fixture against every server in turn, so fixtures are compared the same way.
    """
    if args.quick:
        args.calls, args.duration, args.rounds = 2000, 1.0, 1
    fixtures = selected_fixtures(args)
    driver = overload_driver(args.overload_driver, fixtures)  # refuses before starting anything
    requests = {f.name: f.route_requests(f.experiment_name(), 1) for f in fixtures}
    python = sys.executable
    rounds: list[Result] = []
    with contextlib.ExitStack() as stack:
        echo_port = free_port()
        echo_target = f"127.0.0.1:{echo_port}"
        echo = stack.enter_context(
            process([python, "-m", "bandit_router.bench.echo", "--listen", echo_target], echo_port)
        )
        redis_url = args.redis_url or stack.enter_context(
            redis_cluster(args.redis_cluster) if args.redis_cluster else redis_server()
        )
        servers = [("echo", echo_target, echo.pid)]
        for label, extra in (("bandit-router", []), *variant_servers(args.variant)):
            port = free_port()
            target = f"127.0.0.1:{port}"
            command = [python, "-m", "bandit_router", "serve", "--listen", target, "--redis-url"]
            command += [redis_url, "--workers", str(args.workers), "--log-level", "WARNING"]
            command += [*args.server_arg, *extra]
            real = stack.enter_context(process(command, port))
            servers.append((label, target, real.pid))
        _run(create_experiments(servers[1][1], fixtures))  # one Redis: every server sees them

        def each(rate: float | None, overload: bool = False) -> list[Result]:
            return [
                result
                for name, address, pid in servers
                for fixture in fixtures
                for result in _run(
                    _drive(
                        address, name, args, rate, pid, overload, fixture, requests[fixture.name]
                    )
                )
            ]

        for _ in range(args.rounds):
            rounds += each(None)
        rate = args.rate
        if rate is None:  # a steady rate, not saturation: a third of what echo sustains here
            echo_routes = [
                r.calls_per_second
                for r in rounds
                if r.server == "echo"
                and r.fixture == fixtures[0].name
                and r.mode == f"route x{args.concurrency}"
            ]
            rate = statistics.median(echo_routes) / 3
        for _ in range(args.rounds):
            rounds += each(rate)
        for _ in range(args.rounds):
            baseline: Result | None = None
            echo_pairs: Result | None = None
            for name, address, pid in servers:  # echo first: its pair rate sets the steady one
                if isinstance(driver, Path):
                    runs = outside_overload(driver, name, address, pid, args, baseline)
                    if name == "bandit-router":
                        baseline = runs[0]
                    pairs = outside_pairs(driver, name, address, pid, args, echo_pairs)
                    if name == "echo":
                        echo_pairs = pairs[0]
                    rounds += runs + pairs
            if driver == "python" and args.overload_callers > 0:
                rounds += each(None, overload=True)
    return median_results(rounds)


def variant_servers(variants: list[str]) -> list[tuple[str, list[str]]]:
    """``--variant`` values as (label, extra serve arguments): one more bandit-router each,
    on the same Redis and in the same alternating rounds, so an A/B of a setting is measured
    in one run rather than across runs whose machines differ."""
    return [(f"bandit-router {variant}", shlex.split(variant)) for variant in variants]


def overload_driver(choice: str, fixtures: list[Fixture] | None = None) -> Path | str:
    """The built C++ driver, or "python" or "none"; "auto" falls back to Python, saying so.

    The C++ driver sends only the plain fixture's Route and Reward (no context, no metrics), so
    it is refused with any other fixture; "auto" then uses Python callers, saying so."""
    others = [f.name for f in fixtures or [] if f.name != "plain"]
    if others and choice == "cpp":
        raise RuntimeError(
            f"--overload-driver cpp sends only the plain fixture's Route and Reward; with "
            f"--fixture {', '.join(others)} use --overload-driver python or none"
        )
    if others and choice == "auto":
        print(
            f"note: overload offered by Python callers: the C++ driver cannot send the "
            f"{', '.join(others)} fixture's requests",
            file=sys.stderr,
        )
        return "python"
    if choice == "auto":
        missing = native.missing_tools()
        if missing:
            print(
                f"note: overload offered by Python callers; for the C++ load generator "
                f"install {' '.join(missing)}",
                file=sys.stderr,
            )
            return "python"
        choice = "cpp"
    return native.build() if choice == "cpp" else choice


#: Labels of the outside driver's runs; rates differ by server, so they are not in the label.
OUTSIDE_CAPACITY, OUTSIDE_STEADY, OUTSIDE_OVERLOAD = (
    "outside route x64",
    "outside route @cap/3",
    "outside overload @4x",
)
#: The outside driver's Route-then-Reward runs: closed loop, and every server at a third of
#: echo's pair capacity of the same round (one rate for all, so the p99s compare).
OUTSIDE_PAIRS, OUTSIDE_PAIRS_STEADY = "outside route+reward x64", "outside route+reward @echo/3"


def outside_overload(
    binary: Path,
    server: str,
    target: str,
    pid: int,
    args: argparse.Namespace,
    baseline: Result | None = None,
) -> list[Result]:
    """Three runs of the C++ driver against one server: its capacity (closed loop, 64 in
    flight), a steady third of that (the unloaded latency), and four times that capacity with
    100 ms deadlines, open loop, so refusals are not retried and the offer never slows.

    A ``--variant`` gets the rates of ``baseline`` (the plain bandit-router's capacity run of
    the same round): the variants run the same code, so their capacity is the same, and a
    variant with a small pending limit refuses part of a 64-deep closed loop, which would
    understate its capacity and inflate its goodput ratio."""

    def measured(label: str, **options: Any) -> Result:
        return _outside_run(binary, server, target, pid, args, label, **options)

    capacity = measured(OUTSIDE_CAPACITY, concurrency=64, deadline_ms=10_000)
    if capacity.calls == 0:  # a rate of 0 would mean closed loop to the driver
        raise RuntimeError(f"{server} answered no Route in the capacity run")
    offered = (baseline or capacity).calls_per_second
    steady = measured(OUTSIDE_STEADY, rate=offered / 3, deadline_ms=10_000)
    overload = measured(OUTSIDE_OVERLOAD, rate=offered * 4, deadline_ms=100)
    return [capacity, steady, overload]


def outside_pairs(
    binary: Path,
    server: str,
    target: str,
    pid: int,
    args: argparse.Namespace,
    echo: Result | None = None,
) -> list[Result]:
    """Route-then-Reward from the C++ driver: closed loop with 64 pairs in flight, then an
    open loop at a third of ``echo``'s closed-loop pair rate (this server's own when it is
    echo). Each pair's latency runs from its due time to the Reward's answer.

    The Python driver spends about as much CPU per call as a server, on the same two cores;
    this one a fraction of it, so the ratios to echo say more about the servers."""
    capacity = _outside_run(
        binary,
        server,
        target,
        pid,
        args,
        OUTSIDE_PAIRS,
        pairs=True,
        deadline_ms=10_000,
        concurrency=64,
    )
    if capacity.calls == 0:
        raise RuntimeError(f"{server} completed no Route-then-Reward pair in the capacity run")
    rate = (echo or capacity).calls_per_second / 3
    steady = _outside_run(
        binary,
        server,
        target,
        pid,
        args,
        OUTSIDE_PAIRS_STEADY,
        pairs=True,
        rate=rate,
        deadline_ms=10_000,
    )
    return [capacity, steady]


def _outside_run(
    binary: Path,
    server: str,
    target: str,
    pid: int,
    args: argparse.Namespace,
    label: str,
    **options: Any,
) -> Result:
    """One run of the C++ driver against ``target`` (``--duration`` seconds over
    ``--connections`` connections), with the server process tree's CPU per OK call."""
    cpu = tree_cpu_seconds(pid)
    run = native.run(binary, target, seconds=args.duration, connections=args.connections, **options)
    cpu = tree_cpu_seconds(pid) - cpu
    quantiles = run.ok_us or {"p50": 0.0, "p99": 0.0, "p999": 0.0}
    return Result(
        server=server,
        mode=label,
        calls=run.ok,
        seconds=run.seconds,
        calls_per_second=run.ok / run.seconds,
        p50_ms=quantiles["p50"] / 1000,
        p99_ms=quantiles["p99"] / 1000,
        p999_ms=quantiles["p999"] / 1000,
        errors=run.failed,
        server_cpu_us=cpu * 1e6 / max(1, run.ok),
        shed=run.refused,
    )


def median_results(rounds: list[Result]) -> list[Result]:
    """One result per (server, fixture, mode): the median of each measure over the rounds."""
    grouped: dict[tuple[str, str, str], list[Result]] = {}
    for result in rounds:
        grouped.setdefault((result.server, result.fixture, result.mode), []).append(result)
    merged = []
    for (server, fixture, mode), results in grouped.items():
        merged.append(
            Result(
                server=server,
                mode=mode,
                calls=sum(r.calls for r in results),
                seconds=sum(r.seconds for r in results),
                calls_per_second=statistics.median(r.calls_per_second for r in results),
                p50_ms=statistics.median(r.p50_ms for r in results),
                p99_ms=statistics.median(r.p99_ms for r in results),
                p999_ms=statistics.median(r.p999_ms for r in results),
                errors=sum(r.errors for r in results),
                server_cpu_us=statistics.median(r.server_cpu_us for r in results),
                shed=sum(r.shed for r in results),
                fixture=fixture,
            )
        )
    order = {server: index for index, server in enumerate(dict.fromkeys(r.server for r in rounds))}
    fixtures = {name: index for index, name in enumerate(dict.fromkeys(r.fixture for r in rounds))}
    return sorted(
        merged,
        key=lambda r: (order[r.server], fixtures[r.fixture], "overload" in r.mode, "@" in r.mode),
    )


def render(results: list[Result]) -> str:
    echo = {(r.fixture, r.mode): r for r in results if r.server == "echo"}
    width = max(14, *(len(r.server) for r in results))
    lines = [
        f"{'server':<{width}} {'fixture':<10} {'mode':<28} {'calls/s':>9} {'p50 ms':>8} "
        f"{'p99 ms':>8} "
        f"{'p99.9 ms':>9} {'errors':>6} {'shed':>6} {'srv us/call':>11} {'x echo (thr)':>12} "
        f"{'x echo (p99)':>12}"
    ]
    for r in results:
        base = echo.get((r.fixture, r.mode))
        ratio = (
            f"{r.calls_per_second / base.calls_per_second:.2f}"
            if base and r.server != "echo" and base.calls_per_second
            else ""  # echo answered nothing (it has no overload protection): no ratio
        )
        p99 = f"{r.p99_ms / base.p99_ms:.2f}" if base and r.server != "echo" and base.p99_ms else ""
        lines.append(
            f"{r.server:<{width}} {r.fixture:<10} {r.mode:<28} {r.calls_per_second:>9.0f} "
            f"{r.p50_ms:>8.2f} "
            f"{r.p99_ms:>8.2f} {r.p999_ms:>9.2f} {r.errors:>6} {r.shed:>6} "
            f"{r.server_cpu_us:>11.0f} "
            f"{ratio:>12} {p99:>12}"
        )
    lines += fixture_summary(results)
    lines += overload_summary(results)
    return "\n".join(lines)


def fixture_summary(results: list[Result]) -> list[str]:
    """Each later fixture against the first on the same server and mode, measured in the same
    rounds: e.g. ``--fixture gaussian --fixture guarded`` gives what the guarded fixture's
    metrics, guardrails and cap cost against the same policy without them."""
    fixtures = list(dict.fromkeys(r.fixture for r in results))
    if len(fixtures) < 2:
        return []
    by_key = {(r.server, r.fixture, r.mode): r for r in results}
    lines = []
    for r in results:
        base = by_key.get((r.server, fixtures[0], r.mode))
        if r.server == "echo" or r.fixture == fixtures[0] or base is None:
            continue
        if not base.calls_per_second or not base.p99_ms:
            continue
        lines.append(
            f"fixture {r.fixture} against {fixtures[0]}, {r.server} {r.mode}: throughput "
            f"{r.calls_per_second / base.calls_per_second:.2f}x, p99 {r.p99_ms / base.p99_ms:.2f}x"
        )
    return lines


def overload_summary(results: list[Result]) -> list[str]:
    """Each server under overload against itself: goodput over its closed-loop Route rate
    (its capacity; a variant's, the plain server's), and accepted p99 over its p99 at the
    steady open-loop rate. Latencies
    are the client's: on a shared machine they include the load generator's own queue."""
    lines = []
    # Variants were offered the plain server's rates (``outside_overload``): same yardstick.
    capacities = {r.server: r for r in results if r.mode == OUTSIDE_CAPACITY}
    for server, fixture in dict.fromkeys((r.server, r.fixture) for r in results):
        own = {r.mode: r for r in results if r.server == server and r.fixture == fixture}
        python_runs = (
            next((r for mode, r in own.items() if mode.startswith("route overload")), None),
            next((r for mode, r in own.items() if mode.startswith("route x")), None),
            next((r for mode, r in own.items() if mode.startswith("route @")), None),
        )
        outside_runs = (
            own.get(OUTSIDE_OVERLOAD),
            own.get(OUTSIDE_CAPACITY),
            own.get(OUTSIDE_STEADY),
        )
        if server.startswith("bandit-router ") and "bandit-router" in capacities:
            outside_runs = (outside_runs[0], capacities["bandit-router"], outside_runs[2])
        for driver, (over, capacity, steady) in (
            ("python callers", python_runs),
            ("C++ driver", outside_runs),
        ):
            if over is None or steady is None or capacity is None:
                continue
            if not steady.p99_ms or not capacity.calls_per_second:
                continue
            goodput = over.calls_per_second / capacity.calls_per_second
            which = "" if fixture == "plain" else f" [{fixture}]"
            lines.append(
                f"overload {server}{which} ({driver}): goodput {goodput:.2f}x capacity, "
                f"accepted p99 {over.p99_ms / steady.p99_ms:.2f}x the steady-rate p99, "
                f"refused {over.shed}, failed (expired) {over.errors}"
            )
    return lines


def main(args: argparse.Namespace) -> int:
    if args.profile:
        from bandit_router.bench.profile import main as profile_main

        return profile_main(args)
    if args.instructions:
        from bandit_router.bench.instructions import main as instructions_main

        return instructions_main(args)
    if args.sizing:
        from bandit_router.bench.sizing import main as sizing_main

        return sizing_main(args)
    results = run_benchmark(args)
    print(render(results))
    if args.json_out:
        with open(args.json_out, "w") as handle:
            json.dump([asdict(r) for r in results], handle, indent=2)
    # Under overload some calls expire by design; elsewhere any failure is a failed run.
    return 0 if all(r.errors == 0 for r in results if "overload" not in r.mode) else 1
