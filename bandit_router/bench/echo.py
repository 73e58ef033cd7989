"""The benchmark's baseline: a Router server that answers without deciding anything.

Built exactly like the real server (grpc.aio, the same loop, the same messages and options),
so the ratio real/echo measures what routing, learning and Redis cost, not what gRPC costs.
Run as ``python -m bandit_router.bench.echo --listen 127.0.0.1:PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from typing import Any

import grpc

from bandit_router.v1 import experiment_pb2, router_pb2, router_pb2_grpc


class EchoRouter(router_pb2_grpc.RouterServicer):
    async def Route(
        self, request: router_pb2.RouteRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> router_pb2.RouteResponse:
        return router_pb2.RouteResponse(
            decision_id="echo~" + request.experiment,
            arm="echo",
            propensity=1.0,
            reason=experiment_pb2.REASON_EXPLOIT,
            policy="echo",
        )

    async def Reward(
        self, request: router_pb2.RewardRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> router_pb2.RewardResponse:
        return router_pb2.RewardResponse(outcome=router_pb2.REWARD_OUTCOME_APPLIED)


async def serve(listen: str) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    router_pb2_grpc.add_RouterServicer_to_server(EchoRouter(), server)
    server.add_insecure_port(listen)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--no-uvloop", dest="use_uvloop", action="store_false")
    args = parser.parse_args()
    runner = asyncio.run
    if args.use_uvloop:
        with contextlib.suppress(ImportError):
            import uvloop

            runner = uvloop.run
    runner(serve(args.listen))


if __name__ == "__main__":
    main()
