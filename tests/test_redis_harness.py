"""The test harness's redis-server: a port taken between choosing and binding it is not
taken for the server (another worker or an outgoing connection can take a chosen port)."""

from __future__ import annotations

import socket

import redis

from .servers import RedisServer, free_port


def test_a_taken_port_is_replaced_not_mistaken_for_the_server() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken, free_port()])
        server = RedisServer(appendonly=False, choose_port=lambda: next(ports)).start()
        try:
            assert server.port != taken  # the redis-server on `taken` exited: bind failed
            assert server.proc is not None and server.proc.poll() is None
            client = redis.Redis(port=server.port)
            assert client.info("server")["process_id"] == server.proc.pid
            client.close()
        finally:
            server.stop()
