"""Shared fixtures: a session redis-server, in-process servers and a client factory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bandit_router.client import BanditClient

from .servers import RedisServer, ServerThread


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server for the whole session; tests flush it when they need it empty."""
    try:
        server = RedisServer().start()
    except RuntimeError as error:
        pytest.fail(str(error))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis_server.flush()
    return redis_server.url


@pytest.fixture
def embedded_server() -> Iterator[ServerThread]:
    """The real server on the embedded store, over a real loopback gRPC port."""
    server = ServerThread(refresh_interval=0.05, sweep_interval=0.1).start()
    yield server
    server.stop()


@pytest.fixture
def redis_backed_server(redis_url: str) -> Iterator[ServerThread]:
    """The real server on the session redis-server, over a real loopback gRPC port."""
    server = ServerThread(redis_url=redis_url, refresh_interval=0.05, sweep_interval=0.1).start()
    yield server
    server.stop()


@pytest.fixture(params=["embedded", "redis"])
def any_server(request: pytest.FixtureRequest) -> ServerThread:
    """Both stores: the same behaviour is required of each."""
    name = "embedded_server" if request.param == "embedded" else "redis_backed_server"
    server: ServerThread = request.getfixturevalue(name)
    return server


@pytest.fixture
def client(embedded_server: ServerThread) -> Iterator[BanditClient]:
    with BanditClient(embedded_server.target, timeout=5.0) as c:
        yield c
