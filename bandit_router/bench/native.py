"""The outside load generator: builds ``native/route_load.cc`` against gRPC C++ and runs it.

Why a second driver: on a 2-core machine the Python client spends as much CPU per call as the
server it measures (~150 µs), so under overload the generator, not the server, set the
latencies it reported. The C++ driver costs a fraction of that per call and reads each call's
status, which an HTTP/2 load tool cannot (gRPC answers every refusal with HTTP 200).

The driver is compiled on first use from the installed package: the C++ stubs are generated
from the descriptors the Python ``v1`` modules carry (so no ``proto/`` checkout is needed)
and cached under ``$XDG_CACHE_HOME/bandit-router`` by a hash of everything that goes into
the build. It needs Debian's g++, pkg-config, protobuf-compiler-grpc, libgrpc++-dev and
libprotobuf-dev; without them ``build`` raises RuntimeError naming the missing packages.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor

from bandit_router.v1 import router_pb2

#: Program -> the Debian package that provides it.
PROGRAMS = {
    "g++": "g++",
    "pkg-config": "pkg-config",
    "protoc": "protobuf-compiler",
    "grpc_cpp_plugin": "protobuf-compiler-grpc",
}
#: pkg-config module -> the Debian package that provides it.
LIBRARIES = {"grpc++": "libgrpc++-dev", "protobuf": "libprotobuf-dev"}
DEBIAN_PACKAGES = " ".join(sorted({*PROGRAMS.values(), *LIBRARIES.values()}))
GENERATED = ("bandit_router/v1/router.proto", "bandit_router/v1/experiment.proto")


@dataclass(frozen=True)
class DriverRun:
    """One run of the driver: calls by final status and latency quantiles in microseconds."""

    seconds: float
    cpu_seconds: float
    codes: dict[str, int]
    ok_us: dict[str, float] | None
    all_us: dict[str, float] | None

    @property
    def ok(self) -> int:
        return self.codes.get("OK", 0)

    @property
    def refused(self) -> int:
        """Refused at once: RESOURCE_EXHAUSTED by admission, CANCELLED by gRPC's own limit."""
        return self.codes.get("RESOURCE_EXHAUSTED", 0) + self.codes.get("CANCELLED", 0)

    @property
    def failed(self) -> int:
        """Neither answered nor refused at once (expired deadlines, anything else)."""
        return sum(self.codes.values()) - self.ok - self.refused


def missing_tools() -> list[str]:
    """The Debian packages the build needs and this machine lacks."""
    missing = [package for program, package in PROGRAMS.items() if not shutil.which(program)]
    if shutil.which("pkg-config"):
        for module, package in LIBRARIES.items():
            found = subprocess.run(["pkg-config", "--exists", module], check=False)
            if found.returncode != 0:
                missing.append(package)
    return sorted(set(missing))


def _descriptor_set() -> bytes:
    """The protos the stubs are generated from, as the Python modules carry them."""
    files = descriptor_pb2.FileDescriptorSet()
    seen: set[str] = set()

    def add(descriptor: FileDescriptor) -> None:
        if descriptor.name in seen:
            return
        for dependency in descriptor.dependencies:
            add(dependency)
        seen.add(descriptor.name)
        files.file.append(descriptor_pb2.FileDescriptorProto.FromString(descriptor.serialized_pb))

    add(router_pb2.DESCRIPTOR)
    return files.SerializeToString()


def _output(*command: str) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "bandit-router"


def build(cache_dir: Path | None = None) -> Path:
    """The driver binary, compiled unless an identical build is cached."""
    missing = missing_tools()
    if missing:
        raise RuntimeError(
            f"the C++ load generator needs {', '.join(missing)} (Debian: apt-get install "
            f"{DEBIAN_PACKAGES}); or run with --overload-driver python"
        )
    source = resources.files("bandit_router.bench").joinpath("native/route_load.cc").read_bytes()
    descriptors = _descriptor_set()
    flags = _output("pkg-config", "--cflags", "--libs", "grpc++", "protobuf").split()
    digest = hashlib.sha256()
    for part in (source, descriptors, _output("g++", "--version").encode(), " ".join(flags)):
        digest.update(part if isinstance(part, bytes) else part.encode())
    binary = (cache_dir or _cache_dir()) / f"route_load-{digest.hexdigest()[:16]}"
    if binary.exists():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "protos.pb").write_bytes(descriptors)
        (work / "route_load.cc").write_bytes(source)
        plugin = shutil.which("grpc_cpp_plugin")
        subprocess.run(
            [
                "protoc",
                f"--descriptor_set_in={work / 'protos.pb'}",
                f"--cpp_out={work}",
                f"--grpc_out={work}",
                f"--plugin=protoc-gen-grpc={plugin}",
                *GENERATED,
            ],
            check=True,
            cwd=work,
        )
        sources = [str(path) for path in sorted(work.glob("bandit_router/v1/*.cc"))]
        partial = work / "route_load"
        compile_command = ["g++", "-O2", "-std=c++17", f"-I{work}", str(work / "route_load.cc")]
        compiled = subprocess.run(
            [*compile_command, *sources, "-o", str(partial), *flags],
            capture_output=True,
            text=True,
            check=False,
        )
        if compiled.returncode != 0:
            raise RuntimeError(f"building the C++ load generator failed:\n{compiled.stderr}")
        shutil.move(partial, binary)  # whole or absent: a crash mid-build caches nothing
    return binary


def run(
    binary: Path,
    target: str,
    *,
    rate: float = 0.0,
    concurrency: int = 64,
    seconds: float = 5.0,
    deadline_ms: int = 10_000,
    warmup_seconds: float = 0.5,
    experiment: str = "bench",
    pairs: bool = False,
    connections: int = 1,
) -> DriverRun:
    """Route on ``target``: open loop at ``rate`` calls/s, or closed loop with ``concurrency``
    calls in flight when ``rate`` is 0. Calls due in the warm-up are made but not counted.

    With ``pairs`` each call is a Route then a Reward of its decision id (value 1 for every
    third pair, as ``fixtures.bench_reward``), timed together; ``rate`` is then pairs per
    second. ``connections`` HTTP/2 connections share the calls round-robin.

    Every call carries ``deadline_ms``. The default is long, so that what the driver counts
    is what the server did even when a loaded machine stalls a call for a while; overload runs
    pass a short one, as a caller that would rather fail than wait does."""
    command = [str(binary), "--target", target, "--experiment", experiment]
    command += ["--pairs", "1" if pairs else "0", "--connections", str(connections)]
    command += ["--rate", f"{rate:.3f}", "--concurrency", str(concurrency)]
    command += ["--seconds", str(seconds), "--warmup-seconds", str(warmup_seconds)]
    command += ["--deadline-ms", str(deadline_ms)]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + warmup_seconds + 60
    )
    if done.returncode != 0:
        raise RuntimeError(f"the C++ load generator failed: {done.stderr.strip()}")
    data: dict[str, Any] = json.loads(done.stdout)
    return DriverRun(
        seconds=float(data["seconds"]),
        cpu_seconds=float(data["cpu_seconds"]),
        codes={str(code): int(count) for code, count in data["codes"].items()},
        ok_us=data["ok_us"],
        all_us=data["all_us"],
    )
