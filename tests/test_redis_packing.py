"""hiredis command packing for asyncio connections says exactly what redis-py would."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError
from redis.typing import EncodableT

from bandit_router.store.packing import use_hiredis_packing
from bandit_router.store.redis_store import connect

ARGUMENTS = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=40),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
)


def _python_packed(*args: EncodableT) -> bytes:
    return b"".join(Connection().pack_command(*args))


def _hiredis_connection() -> Connection:
    client = aioredis.Redis.from_url("redis://127.0.0.1:1/0", decode_responses=True)
    assert use_hiredis_packing(client)
    connection = client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
    assert isinstance(connection, Connection)
    return connection


@given(st.sampled_from(["SET", "EVALSHA", "CONFIG GET"]), st.lists(ARGUMENTS, max_size=12))
def test_same_bytes_as_the_python_packer(command: str, args: list[EncodableT]) -> None:
    connection = _hiredis_connection()
    assert b"".join(connection.pack_command(command, *args)) == _python_packed(command, *args)


def test_pipelines_and_memoryviews_pack_the_same() -> None:
    connection = _hiredis_connection()
    commands = [("SET", "k", memoryview(b"v" * 10_000)), ("EVALSHA", "abc", 2, "k1", "k2", 1.5)]
    python = Connection()
    assert b"".join(connection.pack_commands(commands)) == b"".join(python.pack_commands(commands))


def test_unpackable_arguments_are_a_data_error() -> None:
    with pytest.raises(DataError):
        _hiredis_connection().pack_command("SET", "k", None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("redis://127.0.0.1:1/0", Connection),
        ("rediss://127.0.0.1:1/0", SSLConnection),
        ("unix:///tmp/redis.sock", UnixDomainSocketConnection),
    ],
)
def test_the_store_client_keeps_its_transport(url: str, base: type) -> None:
    connection_class = connect(url).connection_pool.connection_class
    assert issubclass(connection_class, base)
    assert connection_class is not base


def test_other_text_encodings_keep_the_python_packer() -> None:
    client = aioredis.Redis.from_url("redis://127.0.0.1:1/0", encoding="latin-1")
    assert not use_hiredis_packing(client)
    assert client.connection_pool.connection_class is Connection
