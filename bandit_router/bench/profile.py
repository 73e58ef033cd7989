"""Where a bandit-router server's CPU goes under Route-then-Reward load (``bench --profile``).

A ratio to echo says how much slower the server is, not why. This samples the server with
py-spy (PyPI; ``pip install 'bandit-router[profile]'``) while Python callers drive Route then
Reward pairs, with native frames (``--native``: time inside gRPC's Cython layer and C core,
numpy, hiredis is attributed to them rather than to the Python line that called them) and
only samples that hold the GIL (``--gil``: the event loop's CPU, not threads waiting in
epoll). Each sample is charged to its innermost owner: a module of this project, or one of
the libraries in ``LIBRARIES``, whichever is nearer the leaf; time in the interpreter itself
is charged to the project frame that was running. With the server's measured CPU per pair,
a share becomes microseconds per pair.

py-spy attaches to the running server, which needs ptrace permission over it: root, or
``kernel.yama.ptrace_scope`` 0 (it is not py-spy's child).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
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
from bandit_router.bench.runner import tree_cpu_seconds
from bandit_router.client import channel_options
from bandit_router.v1 import router_pb2_grpc

#: Frame substring -> owner, for frames outside this project (first match wins).
LIBRARIES: tuple[tuple[str, str], ...] = (
    ("grpc/", "gRPC (Cython layer and C core)"),
    ("cygrpc", "gRPC (Cython layer and C core)"),
    ("libgrpc", "gRPC (Cython layer and C core)"),
    ("redis/", "redis-py"),
    ("hiredis", "redis-py"),
    ("google/protobuf", "protobuf"),
    ("_upb", "protobuf"),
    ("prometheus_client", "prometheus-client"),
    ("numpy", "numpy"),
    ("scipy", "scipy"),
    ("json/", "json"),
    ("_json", "json"),
    ("asyncio/", "asyncio and uvloop"),
    ("uvloop", "asyncio and uvloop"),
    ("loop.c", "asyncio and uvloop"),
    ("_asynciomodule", "asyncio and uvloop"),
)
PROJECT_FRAME = re.compile(r"\(((?:bandit_router|policies|simulations)/[^:]+):\d+\)")
#: Frames of the server's entry point and loop runner, which every sample passes through.
OUTER_FRAMES = ("bandit_router/serving/server.py", "bandit_router/cli.py", "bandit_router/__main__")
OTHER = "interpreter and other"


def owner_of(stack: str) -> tuple[str, str]:
    """The innermost owner of one collapsed stack (``frame;frame;...``, root first), and for a
    library the project module that called into it ('' when none did)."""
    owner = ""
    for frame in reversed(stack.split(";")):
        project = PROJECT_FRAME.search(frame)
        if project is not None and not project.group(1).startswith(OUTER_FRAMES):
            return (owner, project.group(1)) if owner else (project.group(1), "")
        if not owner:
            owner = next((library for needle, library in LIBRARIES if needle in frame), "")
    return (owner or OTHER, "")


def shares(
    raw_lines: Iterable[str],
) -> tuple[int, list[tuple[str, float]], dict[str, list[tuple[str, float]]]]:
    """From py-spy's raw output: the samples, each owner's share (largest first) and, per
    library, the shares of the project modules that called into it."""
    counts: Counter[str] = Counter()
    callers: dict[str, Counter[str]] = {}
    for line in raw_lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        owner, caller = owner_of(stack)
        counts[owner] += int(count)
        if caller:
            callers.setdefault(owner, Counter())[caller] += int(count)
    total = sum(counts.values())
    if not total:
        return 0, [], {}
    by_caller = {
        owner: [(module, n / total) for module, n in found.most_common()]
        for owner, found in callers.items()
    }
    return total, [(owner, n / total) for owner, n in counts.most_common()], by_caller


@dataclass(frozen=True)
class Profile:
    pairs: int
    seconds: float
    server_cpu_seconds: float
    samples: int
    owners: list[tuple[str, float]]
    callers: dict[str, list[tuple[str, float]]]

    @property
    def cpu_us_per_pair(self) -> float:
        return self.server_cpu_seconds * 1e6 / max(1, self.pairs)

    def render(self, top: int = 20) -> str:
        lines = [
            f"{self.pairs} Route-then-Reward pairs in {self.seconds:.1f} s "
            f"({self.pairs / self.seconds:.0f}/s); server CPU {self.cpu_us_per_pair:.0f} µs "
            f"per pair; {self.samples} samples holding the GIL",
            f"{'share':>7} {'µs/pair':>8}  owner",
        ]
        for owner, share in self.owners[:top]:
            lines.append(f"{100 * share:6.1f}% {share * self.cpu_us_per_pair:8.1f}  {owner}")
            for module, part in self.callers.get(owner, [])[:3]:
                lines.append(f"{'':>16}  {100 * part:5.1f}% from {module}")
        rest = sum(share for _, share in self.owners[top:])
        if rest:
            lines.append(f"{100 * rest:6.1f}% {rest * self.cpu_us_per_pair:8.1f}  (the rest)")
        return "\n".join(lines)


def py_spy_binary() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise RuntimeError("py-spy is not installed: pip install 'bandit-router[profile]'")
    return found


async def _pairs(target: str, concurrency: int, seconds: float, fixture: Fixture) -> int:
    """Route then Reward (the fixture's) in ``concurrency`` loops for ``seconds``; the pairs
    completed."""
    done = 0
    requests = fixture.route_requests(fixture.experiment_name(), 1)
    async with grpc.aio.insecure_channel(target, channel_options(1)) as channel:
        stub = router_pb2_grpc.RouterStub(channel)
        end = time.monotonic() + seconds

        async def loop(index: int) -> None:
            nonlocal done
            while time.monotonic() < end:
                count = done + index
                decision = await stub.Route(requests[count % len(requests)])
                await stub.Reward(fixture.reward_request(decision.decision_id, count))
                done += 1

        await asyncio.gather(*(loop(i) for i in range(concurrency)))
    return done


def run_profile(args: argparse.Namespace) -> Profile:
    """Start Redis and a server, drive pairs, sample the server for ``args.profile`` s."""
    fixture = single_fixture(args, "--profile")
    py_spy = py_spy_binary()
    seconds = int(args.profile)  # py-spy takes whole seconds
    warmup = 1.0
    port = free_port()
    target = f"127.0.0.1:{port}"
    with contextlib.ExitStack() as stack:
        url = args.redis_url or stack.enter_context(redis_server())
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        command = [sys.executable, "-m", "bandit_router", "serve", "--listen", target]
        command += ["--redis-url", url, "--log-level", "WARNING", *args.server_arg]
        with process(command, port) as server:
            asyncio.run(create_experiments(target, [fixture]))
            out = Path(tmp) / "profile.raw"
            recorder_command = [py_spy, "record", "--native", "--gil", "--format", "raw"]
            recorder_command += ["--rate", "250", "--duration", str(seconds)]
            recorder_command += ["--pid", str(server.pid), "--output", str(out)]

            async def measured() -> tuple[int, float, float]:
                load = asyncio.create_task(
                    _pairs(target, args.concurrency, seconds + warmup, fixture)
                )
                await asyncio.sleep(warmup)
                cpu_before, started = tree_cpu_seconds(server.pid), time.monotonic()
                sampler = await asyncio.create_subprocess_exec(
                    *recorder_command, stdout=subprocess.PIPE, stderr=subprocess.PIPE
                )
                _, errors = await sampler.communicate()
                cpu = tree_cpu_seconds(server.pid) - cpu_before
                elapsed = time.monotonic() - started
                pairs = await load
                if sampler.returncode != 0:
                    raise RuntimeError(
                        "py-spy failed to sample the server (it needs ptrace permission: run as "
                        f"root or set kernel.yama.ptrace_scope=0): {errors.decode()[-500:]}"
                    )
                # The pairs of the sampled window, pro rata (the load ran warm-up + window).
                return round(pairs * seconds / (seconds + warmup)), cpu, elapsed

            pairs, cpu, elapsed = asyncio.run(measured())
            samples, owners, callers = shares(out.read_text().splitlines())
    return Profile(pairs, elapsed, cpu, samples, owners, callers)


def main(args: argparse.Namespace) -> int:
    print(run_profile(args).render())
    return 0
