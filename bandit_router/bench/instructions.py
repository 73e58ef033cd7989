"""``bandit-router bench --instructions``: CPU instructions per call, echo vs bandit-router.

Timings on a shared 2-core machine swing by ±10% from one run to the next, more than most
changes to the hot path are worth. Instructions executed by the server process swing far
less: under valgrind's callgrind the same calls cost nearly the same count whatever else the
machine is doing. So this mode runs each server under callgrind, with instrumentation
switched on only for the measured calls, and sends them one at a time (a sequential client:
the count then does not depend on how calls happen to batch), ``--rounds`` times per server
(medians). It complements the timed benchmark, it does not replace it: one call at a time is
not 64 in flight, and instructions are not cycles.

The real server runs with background refreshes and sweeps slowed down (under valgrind a call
takes milliseconds, and a 100 ms loop would be charged to a handful of calls) and with a
decision linger longer than the run, so decisions are written in full batches of 256, as a
busy server writes them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc

from bandit_router.bench.fixtures import (
    Fixture,
    create_experiments,
    free_port,
    process,
    redis_server,
    single_fixture,
)
from bandit_router.v1 import router_pb2, router_pb2_grpc

#: Calls before counting: imports, caches and the first pre-drawn block are not per call.
WARM_UP = 300
#: A server under valgrind starts ~50 times slower than without it.
START_SECONDS = 180.0


@dataclass
class InstructionCount:
    server: str
    mode: str
    calls: int
    instructions_per_call: float


def valgrind_tools() -> tuple[str, str, str]:
    tools = tuple(
        shutil.which(name) for name in ("valgrind", "callgrind_control", "callgrind_annotate")
    )
    if not all(tools):
        raise RuntimeError(
            "--instructions needs valgrind (callgrind_control, callgrind_annotate): "
            "install Debian's valgrind package"
        )
    return tools  # type: ignore[return-value]


def program_total(dump: Path, annotate: str) -> int:
    """The instruction count of one callgrind dump (``callgrind_annotate``'s program total)."""
    report = subprocess.run([annotate, str(dump)], capture_output=True, text=True, check=True)
    match = re.search(r"^\s*([\d,]+)\s.*PROGRAM TOTALS", report.stdout, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no program total in callgrind_annotate's report of {dump}")
    return int(match.group(1).replace(",", ""))


@contextlib.contextmanager
def under_callgrind(command: list[str], port: int, out_dir: Path) -> Iterator[int]:
    valgrind, _, _ = valgrind_tools()
    full = [
        valgrind,
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out_dir}/callgrind.%p",
        f"--log-file={out_dir}/valgrind.%p.log",
        *command,
    ]
    with process(full, port, start_seconds=START_SECONDS) as proc:
        yield proc.pid


def count_calls(pid: int, out_dir: Path, calls: int, call: Callable[[int], object]) -> float:
    """Instructions per ``call`` of the server ``pid``, instrumented only around the calls."""
    _, control, annotate = valgrind_tools()
    for dump in out_dir.glob(f"callgrind.{pid}*"):
        dump.unlink()
    subprocess.run([control, "--instr=on", str(pid)], capture_output=True, check=True)
    for index in range(calls):
        call(index)
    subprocess.run([control, "--instr=off", str(pid)], capture_output=True, check=True)
    subprocess.run([control, "--dump", str(pid)], capture_output=True, check=True)
    dumps = [path for path in out_dir.glob(f"callgrind.{pid}.*") if path.stat().st_size]
    if not dumps:
        raise RuntimeError(f"callgrind wrote no dump for process {pid}")
    return sum(program_total(dump, annotate) for dump in dumps) / calls


def _measure(
    target: str, pid: int, name: str, calls: int, rounds: int, out_dir: Path, fixture: Fixture
) -> list[InstructionCount]:
    """Route and Reward counts, each the median of ``rounds`` counts: the echo server's count
    varies by a few per cent with how often grpc's polling thread happens to wake."""
    routed, rewarded = [], []
    requests = fixture.route_requests(fixture.experiment_name(), 1)
    sent = 0

    def route(_: int) -> router_pb2.RouteResponse:
        nonlocal sent
        sent += 1
        response: router_pb2.RouteResponse = stub.Route(requests[sent % len(requests)], timeout=60)
        return response

    with grpc.insecure_channel(target) as channel:
        stub = router_pb2_grpc.RouterStub(channel)
        for _ in range(WARM_UP):
            route(0)
        for _ in range(rounds):
            routed.append(count_calls(pid, out_dir, calls, route))
            decisions = [route(0).decision_id for _ in range(calls)]
            rewards = [
                fixture.reward_request(decision, index) for index, decision in enumerate(decisions)
            ]
            rewarded.append(count_calls(pid, out_dir, calls, _rewarder(stub, rewards)))
    return [
        InstructionCount(name, "route x1", calls, statistics.median(routed)),
        InstructionCount(name, "reward x1", calls, statistics.median(rewarded)),
    ]


def _rewarder(
    stub: router_pb2_grpc.RouterStub, requests: list[router_pb2.RewardRequest]
) -> Callable[[int], object]:
    return lambda index: stub.Reward(requests[index], timeout=60)


def run_instructions(args: argparse.Namespace) -> list[InstructionCount]:
    fixture = single_fixture(args, "--instructions")
    calls = 64 if args.quick else args.instruction_calls
    rounds = 1 if args.quick else args.rounds
    python = sys.executable
    results: list[InstructionCount] = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        out_dir = Path(tmp)
        port = free_port()
        echo = [python, "-m", "bandit_router.bench.echo", "--listen", f"127.0.0.1:{port}"]
        with under_callgrind(echo, port, out_dir) as pid:
            results += _measure(f"127.0.0.1:{port}", pid, "echo", calls, rounds, out_dir, fixture)
        redis_url = args.redis_url or stack.enter_context(redis_server())
        port = free_port()
        real = [
            python,
            "-m",
            "bandit_router",
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--redis-url",
            redis_url,
            "--log-level",
            "WARNING",
            "--refresh-interval",
            "60",
            "--sweep-interval",
            "60",
            "--decision-linger-ms",
            "600000",
        ]
        with under_callgrind(real, port, out_dir) as pid:
            asyncio.run(
                create_experiments(f"127.0.0.1:{port}", [fixture], timeout=60.0, settle=1.0)
            )
            results += _measure(
                f"127.0.0.1:{port}", pid, "bandit-router", calls, rounds, out_dir, fixture
            )
    return results


def render(results: list[InstructionCount]) -> str:
    echo = {r.mode: r.instructions_per_call for r in results if r.server == "echo"}
    lines = [f"{'server':<14} {'mode':<12} {'calls':>6} {'instructions/call':>18} {'x echo':>7}"]
    for r in results:
        ratio = f"{r.instructions_per_call / echo[r.mode]:.2f}" if r.server != "echo" else ""
        lines.append(
            f"{r.server:<14} {r.mode:<12} {r.calls:>6} {r.instructions_per_call:>18,.0f} {ratio:>7}"
        )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    results = run_instructions(args)
    print(render(results))
    if args.json_out:
        with open(args.json_out, "w") as handle:
            json.dump([asdict(r) for r in results], handle, indent=2)
    return 0
