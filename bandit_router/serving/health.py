"""Standard gRPC health checking whose Watch streams end when the server drains.

grpcio's asyncio ``HealthServicer`` keeps every ``Health.Watch`` stream open until the client
leaves, and ``server.stop(grace)`` waits for open streams: one load balancer watching held
every SIGTERM for the whole grace period. Here shutdown first says NOT_SERVING to every
watcher (so it stops sending), then ends their streams with OK, so only real calls are
waited for.

The service name ``liveness`` answers SERVING whenever the event loop answers at all, whatever
Redis does and through the drain: a liveness probe must restart a wedged process, never one
that keeps routing from its cache while Redis is down (every other name follows Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVING = health_pb2.HealthCheckResponse.SERVING
#: The health service name for liveness probes (``grpc: {port, service: liveness}``).
LIVENESS = "liveness"


class DrainingHealthServicer(health_aio.HealthServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self._closing = asyncio.Event()

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: Any
    ) -> health_pb2.HealthCheckResponse:
        """``liveness``: SERVING from the loop that answers; other names as set."""
        if request.service == LIVENESS:
            return health_pb2.HealthCheckResponse(status=SERVING)
        return await super().Check(request, context)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        """The base class's Watch (it writes through ``context``) until shutdown closes it;
        then a last NOT_SERVING and the end of the stream."""
        if not self._closing.is_set():
            watch = asyncio.ensure_future(super().Watch(request, context))
            closing = asyncio.ensure_future(self._closing.wait())
            try:
                await asyncio.wait({watch, closing}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (watch, closing):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        await context.write(health_pb2.HealthCheckResponse(status=NOT_SERVING))

    async def close_watches(self) -> None:
        """NOT_SERVING to every watcher, then end the streams (graceful shutdown)."""
        await self.enter_graceful_shutdown()
        self._closing.set()
