"""Channels for the clients: the retry policy, the channel arguments, and how a channel is
made from a target or taken as given.

Retries go through gRPC's own retry policy: UNAVAILABLE everywhere and, on Router, a
server's CANCELLED at shutdown, with exponential backoff. The service config has no
timeout: grpcio fails every call at once when a service-config timeout is <= 1 s
(grpc/grpc#34547); the clients set a deadline on every call instead.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import grpc
import grpc.aio

#: Channel arguments as grpcio takes them: ``("grpc.keepalive_time_ms", 30000)``.
ChannelOptions = Sequence[tuple[str, Any]]


def service_config(max_attempts: int = 4) -> str:
    """Retry UNAVAILABLE everywhere; on Router also CANCELLED sent by the server.

    A server shutting down answers CANCELLED to calls it received but had not yet handed to
    a handler (grpc/grpc#41785: it should be UNAVAILABLE). Those calls did nothing, so a
    retry is the right answer; a call this client cancels itself is never retried. Route
    and Reward are safe to retry (a Reward is credited once); Admin calls are not retried
    on CANCELLED, since a grace period that expired may have cut one short after it acted.
    They are retried on UNAVAILABLE: mostly a server out of reach; after a store timeout
    the change may have been applied, and its retry applies it again or reports what it
    finds (ALREADY_EXISTS for a create: docs/clients.md).
    """

    def retry(*codes: str) -> dict[str, Any]:
        return {
            "maxAttempts": max_attempts,
            "initialBackoff": "0.02s",
            "maxBackoff": "0.5s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": list(codes),
        }

    return json.dumps(
        {
            # gRPC's retry throttling: each failure costs a token, each success gives back
            # 0.1; below 50 tokens no call is retried, so a sustained overload or outage
            # does not get a retry storm on top, while a burst of failures is retried.
            "retryThrottling": {"maxTokens": 100, "tokenRatio": 0.1},
            "methodConfig": [
                {
                    "name": [{"service": "bandit_router.v1.Router"}],
                    "retryPolicy": retry("UNAVAILABLE", "CANCELLED"),
                },
                {
                    "name": [{"service": "bandit_router.v1.Admin"}],
                    "retryPolicy": retry("UNAVAILABLE"),
                },
            ],
        }
    )


def channel_options(
    max_attempts: int, connection_id: int = 0, extra: ChannelOptions = ()
) -> list[tuple[str, Any]]:
    """Channel arguments; ``max_attempts`` 1 turns retries off (gRPC needs >= 2 in a policy).

    ``extra`` comes last and wins over the defaults for the same key (gRPC takes the last
    value of a repeated argument), so a caller can change e.g. the keepalive or the service
    config without losing the rest.
    """
    options: list[tuple[str, Any]] = [("grpc.keepalive_time_ms", 30_000)]
    if max_attempts >= 2:
        options += [
            ("grpc.service_config", service_config(max_attempts)),
            ("grpc.enable_retries", 1),
        ]
    else:
        options.append(("grpc.enable_retries", 0))
    if connection_id:  # a distinct channel arg gives a distinct HTTP/2 connection
        options.append(("bandit_router.connection_id", connection_id))
    options += list(extra)
    return options


def sync_channel(
    target: str,
    credentials: grpc.ChannelCredentials | None,
    options: ChannelOptions,
    interceptors: Sequence[Any],
) -> grpc.Channel:
    """A blocking channel to ``target``, wrapped by ``interceptors`` (outermost first)."""
    channel = (
        grpc.secure_channel(target, credentials, options)
        if credentials is not None
        else grpc.insecure_channel(target, options)
    )
    return grpc.intercept_channel(channel, *interceptors) if interceptors else channel


def aio_channel(
    target: str,
    credentials: grpc.ChannelCredentials | None,
    options: ChannelOptions,
    interceptors: Sequence[grpc.aio.ClientInterceptor],
) -> grpc.aio.Channel:
    """An asyncio channel to ``target`` with ``interceptors``."""
    if credentials is not None:
        return grpc.aio.secure_channel(target, credentials, options, interceptors=interceptors)
    return grpc.aio.insecure_channel(target, options, interceptors=interceptors or None)
