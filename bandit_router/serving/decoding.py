"""Undecodable request bytes become INVALID_ARGUMENT with one log line, for every method.

grpc.aio calls a method's request deserializer before any of our code runs; when it raises
(``DecodeError`` for bytes that are not the method's message), grpc answers UNKNOWN and logs
the traceback at ERROR, for any caller, before authentication. A client that sends bad bytes
made a mistake (or is probing): that is INVALID_ARGUMENT, and worth one line, not a stack.

The wrapped deserializer never raises: it returns an ``Undecodable`` marker, and the wrapped
behaviour, which has the call's context, refuses it with the canonical status and a
``google.rpc.BadRequest`` naming the field ``request``. Checking the marker costs a class
comparison per call.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from bandit_router.errors import InvalidArgument
from bandit_router.serving.statuses import abort_with
from bandit_router.telemetry.logs import clip

if TYPE_CHECKING:
    _Handler = grpc.RpcMethodHandler[Any, Any]
else:
    _Handler = grpc.RpcMethodHandler

log = logging.getLogger(__name__)


class Undecodable:
    """What a request deserializer returns for bytes it cannot decode."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _safe(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except Exception as error:  # any failure to decode is the caller's bytes, not ours
            return Undecodable(f"{type(error).__name__}: {error}")

    return deserialize


async def _refuse(
    request: Undecodable, context: grpc.aio.ServicerContext[Any, Any], method: str, message: str
) -> None:
    log.info(
        "%s refused: INVALID_ARGUMENT undecodable request (%s)",
        method,
        clip(request.reason),
        extra={"method": method, "code": "INVALID_ARGUMENT", "field": "request"},
    )
    await abort_with(context, InvalidArgument(f"not a valid {message} message", "request"))


def _message_name(deserializer: Callable[[bytes], Any] | None) -> str:
    """``bandit_router.v1.RouteRequest`` for ``RouteRequest.FromString``."""
    owner = getattr(deserializer, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", "request"))


def guard_decoding(handler: _Handler, method: str) -> _Handler:
    """``handler`` with a deserializer that cannot raise and a behaviour that refuses
    undecodable requests with INVALID_ARGUMENT (unary-unary and unary-stream methods)."""
    message = _message_name(handler.request_deserializer)
    deserializer = _safe(handler.request_deserializer)
    if handler.unary_unary is not None:
        unary_behavior: Any = handler.unary_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            if request.__class__ is Undecodable:
                await _refuse(request, context, method, message)
            return await unary_behavior(request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary,
            request_deserializer=deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:
        stream_behavior: Any = handler.unary_stream

        async def stream(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            if request.__class__ is Undecodable:
                await _refuse(request, context, method, message)
            async for item in stream_results(stream_behavior(request, context)):
                yield item

        return grpc.unary_stream_rpc_method_handler(
            stream,
            request_deserializer=deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler  # client or bidi streaming: none of our services has one


async def stream_results(result: Any) -> AsyncIterator[Any]:
    """The items of a server-streaming behaviour, which grpc.aio lets be an async generator
    or a coroutine that writes with ``context.write()`` (then there are none to yield)."""
    if hasattr(result, "__aiter__"):
        async for item in result:
            yield item
    else:
        await result
