"""The contract as users get it: the sdist ships proto/ (the .proto files, buf.yaml,
buf.gen.yaml and the release images), and `buf generate` with the shipped buf.gen.yaml
generates a client from the unpacked sdist, offline (local plugins: protoc's C++ generator
and grpc_cpp_plugin, Debian's protobuf-compiler-grpc)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from .test_contract import buf_binary, uv_binary

ROOT = Path(__file__).resolve().parent.parent


def run(*command: str, cwd: Path) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
    return result.stdout


def test_sdist_ships_the_protos_and_buf_generate_works_from_it(tmp_path: Path) -> None:
    for tool in ("protoc", "grpc_cpp_plugin"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: apt install protobuf-compiler-grpc")
    # The files git would ship (tracked, and new ones not ignored), copied: building in the
    # checkout would leave build/ and an egg-info behind.
    source = tmp_path / "src"
    listed = run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    run(
        uv_binary(), "build", "--sdist", "--offline", "-q", "-o", str(tmp_path / "dist"), cwd=source
    )
    (sdist,) = (tmp_path / "dist").glob("bandit_router-*.tar.gz")
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    (top,) = (tmp_path / "unpacked").iterdir()

    shipped = {str(p.relative_to(top)) for p in (top / "proto").rglob("*") if p.is_file()}
    expected = {str(p.relative_to(ROOT)) for p in (ROOT / "proto").rglob("*") if p.is_file()}
    expected = {name for name in expected if not name.startswith("proto/gen/")}
    assert shipped == expected
    assert {"proto/buf.yaml", "proto/buf.gen.yaml", "proto/releases/v0.1.0.binpb"} <= shipped

    env = {**os.environ, "BUF_CACHE_DIR": str(tmp_path / "buf-cache")}
    result = subprocess.run(
        [buf_binary(), "generate"],
        cwd=top / "proto",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    generated = top / "proto/gen/cpp/bandit_router/v1"
    for name in ("router", "admin", "experiment"):
        assert (generated / f"{name}.pb.h").is_file()
    assert "class Router final" in (generated / "router.grpc.pb.h").read_text()
    assert "class Admin final" in (generated / "admin.grpc.pb.h").read_text()
