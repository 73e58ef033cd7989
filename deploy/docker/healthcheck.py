"""The image's HEALTHCHECK: exit 0 only while this container's server reports ``SERVING``.

``grpc_health_probe`` is a Go binary that is not on PyPI; this asks the same standard
``grpc.health.v1`` question with grpcio-health-checking, which the service already depends
on. The server answers ``SERVING`` only while its store takes writes, so an unhealthy
container means "this replica cannot record rewards", not merely "the process is up".

It speaks plaintext gRPC to the port of ``BANDIT_ROUTER_LISTEN`` on the loopback interface;
with TLS configured it cannot verify the server, says so and fails (disable the image's
health check and use an exec or TCP probe instead; docs/deploying.md).
"""

from __future__ import annotations

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

TIMEOUT_SECONDS = 3.0


def target(listen: str) -> str:
    """The loopback address of the port the server listens on (``0.0.0.0:50051`` ->
    ``127.0.0.1:50051``): the check runs beside the server, whatever interface it binds."""
    _, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"BANDIT_ROUTER_LISTEN is not host:port: {listen!r}")
    return f"127.0.0.1:{port}"


def main() -> int:
    if os.environ.get("BANDIT_ROUTER_TLS_CERT"):
        print("unhealthy: TLS is on; this check speaks plaintext gRPC", file=sys.stderr)
        return 1
    try:
        address = target(os.environ.get("BANDIT_ROUTER_LISTEN", "127.0.0.1:50051"))
    except ValueError as error:
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT_SECONDS)
        except grpc.RpcError as error:
            print(f"unhealthy: {address}: {error.code().name}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        print(f"unhealthy: {address}: {status}", file=sys.stderr)
        return 1
    print(f"healthy: {address}: {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
