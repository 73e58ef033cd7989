"""Arbitrary requests to every RPC, as an attacker without a token would send them: 2,000
structured (random values in every field of the right message) and 2,000 raw byte strings
per method. None answers INTERNAL or UNKNOWN, and Redis executes no write for them (read
from ``INFO commandstats`` before and after).

The server runs with auth on; Route and Reward carry a valid router token (so their
validation is reached), Admin calls none (so every one must be refused before it acts).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis
import yaml
from google.protobuf import descriptor
from google.protobuf.message import Message

from bandit_router.client import BanditClient
from bandit_router.operations.auth import hash_token, new_token
from bandit_router.v1 import admin_pb2, router_pb2

from .servers import RedisServer, ServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PER_METHOD = 2000
#: Commands that change data. SET is left out: health writes its probe key every 0.5 s.
WRITES = {
    "evalsha", "eval", "hset", "hsetnx", "hincrby", "hincrbyfloat", "hdel", "xadd", "sadd",
    "srem", "zadd", "zrem", "del", "unlink", "lpush", "ltrim", "expire", "publish",
}  # fmt: skip
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}

_SCALARS = [0.0, -0.0, 1.0, -1.0, 0.5, 1e308, -1e308, 5e-324, float("nan"), float("inf"), 2e154]
_TEXT = ["", "a", "exp", "x" * 65, "x" * 5000, "a\n", "../..", "{br}", "é", "\x00", "b" * 300]


def _string(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return rng.choice(_TEXT)
    alphabet = "abcAB_.-\n\t {}|;:*?\x00é😀"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 80)))


def _fill(message: Message, rng: random.Random, depth: int = 0) -> Message:
    """Random values in random fields of ``message`` (recursively, bounded depth)."""
    FD = descriptor.FieldDescriptor
    fields: Any = message.DESCRIPTOR.fields
    for field in fields:
        if rng.random() < 0.4:
            continue
        repeated = field.is_repeated
        count = rng.randrange(0, 4) if repeated else 1
        for _ in range(count):
            if field.type == FD.TYPE_MESSAGE:
                if depth > 3:
                    break
                if field.message_type.GetOptions().map_entry:
                    entry = getattr(message, field.name)
                    key = _string(rng)
                    value_field = field.message_type.fields_by_name["value"]
                    if value_field.type == FD.TYPE_MESSAGE:
                        _fill(entry[key], rng, depth + 1)
                    else:
                        entry[key] = _scalar(value_field, rng)
                    continue
                target = getattr(message, field.name).add() if repeated else None
                if target is None:
                    target = getattr(message, field.name)
                    _fill(target, rng, depth + 1)
                    target.SetInParent()
                else:
                    _fill(target, rng, depth + 1)
                continue
            value = _scalar(field, rng)
            if repeated:
                getattr(message, field.name).append(value)
            else:
                setattr(message, field.name, value)
    return message


def _scalar(field: Any, rng: random.Random) -> Any:
    FD = descriptor.FieldDescriptor
    if field.type == FD.TYPE_STRING:
        return _string(rng)
    if field.type == FD.TYPE_BYTES:
        return rng.randbytes(rng.randrange(0, 40))
    if field.type in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return rng.choice(_SCALARS) if rng.random() < 0.7 else rng.uniform(-1e6, 1e6)
    if field.type == FD.TYPE_BOOL:
        return rng.random() < 0.5
    if field.type == FD.TYPE_ENUM:
        return rng.choice([v.number for v in field.enum_type.values] + [99])
    if field.type in (FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64):
        return rng.choice([0, -1, 1, 2**62, -(2**62), rng.randrange(-(10**6), 10**6)])
    if field.type in (FD.TYPE_UINT64, FD.TYPE_FIXED64):
        return rng.choice([0, 1, 2**63, rng.randrange(0, 10**6)])
    if field.type in (FD.TYPE_UINT32, FD.TYPE_FIXED32):
        return rng.choice([0, 1, 2**31, rng.randrange(0, 10**6)])
    return rng.choice([0, -1, 1, 2**30, -(2**30), rng.randrange(-1000, 1000)])


def _methods() -> list[tuple[str, Any, bool]]:
    """(full method name, request class, server-streaming) of every RPC of both services."""
    found = []
    for module, service in ((router_pb2, "Router"), (admin_pb2, "Admin")):
        desc = module.DESCRIPTOR.services_by_name[service]
        for method in desc.methods:
            request_class = getattr(
                admin_pb2 if method.input_type.file.name.endswith("admin.proto") else router_pb2,
                method.input_type.name,
                None,
            )
            if request_class is None:  # defined in another file of the package
                from bandit_router.v1 import experiment_pb2

                request_class = getattr(experiment_pb2, method.input_type.name)
            found.append(
                (f"/{desc.full_name}/{method.name}", request_class, method.server_streaming)
            )
    return found


def _writes(store: redis.Redis) -> int:
    stats: dict[str, Any] = store.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k.removeprefix("cmdstat_") in WRITES)


async def _one(
    caller: Any,
    payload: bytes,
    metadata: tuple[tuple[str, str], ...],
    streaming: bool,
    method: str,
    codes: Counter[str],
    bad: list[tuple[str, str]],
) -> None:
    try:
        call = caller(payload, timeout=10, metadata=metadata)
        if streaming:
            async for _ in call:
                pass
        else:
            await call
        codes["OK"] += 1
    except grpc.aio.AioRpcError as error:
        codes[error.code().name] += 1
        if error.code() in FORBIDDEN:
            bad.append((method, f"{error.code().name}: {error.details()}"))


async def _hammer(
    target: str, router_token: str, seed: int
) -> tuple[Counter[str], list[tuple[str, str]]]:
    rng = random.Random(seed)
    codes: Counter[str] = Counter()
    bad: list[tuple[str, str]] = []
    async with grpc.aio.insecure_channel(target) as channel:
        for method, request_class, streaming in _methods():
            metadata = (
                (("authorization", f"Bearer {router_token}"),) if "/Router/" in method else ()
            )
            caller: Any = (channel.unary_stream if streaming else channel.unary_unary)(method)
            payloads = [
                _fill(request_class(), rng).SerializeToString() for _ in range(PER_METHOD)
            ] + [rng.randbytes(rng.randrange(0, 200)) for _ in range(PER_METHOD)]

            for start in range(0, len(payloads), 64):
                await asyncio.gather(
                    *(
                        _one(caller, p, metadata, streaming, method, codes, bad)
                        for p in payloads[start : start + 64]
                    )
                )
    return codes, bad


def test_no_input_to_any_rpc_is_internal_or_writes(tmp_path: Path) -> None:
    router_token, operator_token = new_token(), new_token()
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(
        yaml.safe_dump(
            {
                "tokens": [
                    {"principal": "svc", "role": "router", "sha256": hash_token(router_token)},
                    {"principal": "ops", "role": "operator", "sha256": hash_token(operator_token)},
                ]
            }
        )
    )
    store = RedisServer().start()
    # A server process, not a thread: the 4,000 requests per RPC and the server then run on
    # both cores instead of sharing one interpreter.
    server = ServerProcess(
        "--redis-url", store.url, "--refresh-interval", "0.05", "--tokens-file", str(tokens)
    ).start()
    direct = redis.Redis(port=store.port, decode_responses=True)
    try:
        with BanditClient(server.target, timeout=5, token=operator_token) as client:
            client.create_experiment("exp", ["a", "b"], reward_window=600, default_reward=0.0)
        asyncio.run(asyncio.sleep(0.3))  # let the creation's own writes settle
        before = _writes(direct)
        codes, bad = asyncio.run(_hammer(server.target, router_token, seed=20261204))
        after = _writes(direct)
    finally:
        direct.close()
        server.stop()
        store.stop()
    assert bad == [], bad[:5]
    assert sum(codes.values()) == len(_methods()) * 2 * PER_METHOD
    assert "INVALID_ARGUMENT" in codes and "UNAUTHENTICATED" in codes, codes
    # No request above was valid enough to act (no token on Admin; random names and ids on
    # Route and Reward), so Redis executed no write for any of them.
    assert codes["OK"] == 0, codes
    assert before > 0  # the creation's writes were counted: the measure is live
    assert after == before
