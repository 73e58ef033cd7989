"""Adds services to a grpc.aio server with every method timed and counted by final status.

Why not a server interceptor: grpc.aio runs interceptors on every call (a coroutine and a
``HandlerCallDetails`` per RPC, before the handler is even found), whereas wrapping each
method handler once, when the service is added, leaves a call with only the measurements.

Why some services are not *registered*: grpc.aio keeps one pending request task per
registered method and, for every incoming call, waits on all of them (``asyncio.wait``,
linear in their number). Only the hot services (Router) are registered; Admin, health and
reflection are served through their generic handlers, which costs their rare calls a
dictionary look-up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from bandit_router.errors import ResourceExhausted
from bandit_router.serving.admission import Admission
from bandit_router.serving.decoding import guard_decoding, stream_results
from bandit_router.serving.grpc_logs import quiet_cancellations
from bandit_router.serving.statuses import abort_with
from bandit_router.telemetry.metrics import Metrics, RpcInstruments

if TYPE_CHECKING:
    _Handler = grpc.RpcMethodHandler[Any, Any]
else:
    _Handler = grpc.RpcMethodHandler


class InstrumentedServer:
    """Stands in for a grpc.aio server in the generated ``add_*Servicer_to_server`` calls.

    ``register=False`` adds the service through its generic handler only (see the module
    docstring); both ways every method is wrapped with its metrics exactly once.
    """

    def __init__(
        self,
        server: grpc.aio.Server,
        metrics: Metrics,
        *,
        register: bool,
        admission: Admission | None = None,
    ) -> None:
        self._server = server
        self._metrics = metrics
        self._register = register
        self._admission = admission
        quiet_cancellations()

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(
            [
                _InstrumentedGenericHandler(handler, self._metrics, self._admission)
                for handler in handlers
            ]
        )

    def add_registered_method_handlers(
        self, service_name: str, handlers: dict[str, _Handler]
    ) -> None:
        if self._register:
            self._server.add_registered_method_handlers(
                service_name,
                {
                    method: instrument(
                        handler, self._metrics, service_name, method, self._admission
                    )
                    for method, handler in handlers.items()
                },
            )


class _InstrumentedGenericHandler(grpc.GenericRpcHandler):
    """A generic handler whose method handlers come back wrapped (once per method)."""

    def __init__(
        self, inner: grpc.GenericRpcHandler, metrics: Metrics, admission: Admission | None
    ) -> None:
        self._inner = inner
        self._metrics = metrics
        self._admission = admission
        self._wrapped: dict[str, tuple[_Handler, _Handler]] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> _Handler | None:
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None
        full_method: str = handler_call_details.method
        cached = self._wrapped.get(full_method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        service, method = split_method(full_method)
        wrapped = instrument(handler, self._metrics, service, method, self._admission)
        self._wrapped[full_method] = (handler, wrapped)
        return wrapped


def split_method(full_method: str) -> tuple[str, str]:
    """``/bandit_router.v1.Router/Route`` -> (``bandit_router.v1.Router``, ``Route``)."""
    _, _, rest = full_method.partition("/")
    service, _, method = rest.rpartition("/")
    return (service or "unknown", method or full_method)


def instrument(
    handler: _Handler,
    metrics: Metrics,
    service: str,
    method: str,
    admission: Admission | None = None,
) -> _Handler:
    """The same handler, timed and counted: started, handled by code, handling seconds;
    with ``admission``, unary calls are admitted or shed first (see ``admission``).

    Undecodable requests are refused inside the timing (see ``decoding``), so they are
    counted as INVALID_ARGUMENT like any other refusal.
    """
    handler = guard_decoding(handler, f"{service}/{method}")
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _timed_unary(metrics.rpc_instruments(service, method), handler.unary_unary, admission),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _timed_stream(
                metrics.rpc_instruments(service, method, "server_stream"), handler.unary_stream
            ),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler  # client or bidi streaming: none of our services has one


def _timed_unary(
    instruments: RpcInstruments, behavior: Any, admission: Admission | None = None
) -> Any:
    perf_counter = time.perf_counter
    ok = grpc.StatusCode.OK
    unknown = grpc.StatusCode.UNKNOWN

    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        instruments.started.inc()
        start = perf_counter()
        outcome = unknown
        admitted = False
        try:
            if admission is not None:
                refusal = admission.refusal(context.time_remaining())
                if refusal is not None:
                    await _shed(context, refusal, admission)
                admitted = True
            response = await behavior(request, context)
            outcome = ok
            return response
        except grpc.aio.AbortError:
            outcome = unknown  # the code was set by abort(); read it below
            raise
        except BaseException as exc:
            outcome = grpc.StatusCode.CANCELLED if _is_cancel(exc) else unknown
            raise
        finally:
            if admitted and admission is not None:
                admission.release()
            instruments.finish(_code_of(context, outcome), perf_counter() - start)

    return unary


async def _shed(
    context: grpc.aio.ServicerContext[Any, Any], refusal: str, admission: Admission
) -> None:
    """Refuse a call before any work: DEADLINE_EXCEEDED when its caller has gone, else
    RESOURCE_EXHAUSTED (retry with backoff, or on another replica)."""
    if refusal == "expired":
        await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline passed before handling")
    await abort_with(
        context,
        ResourceExhausted(
            f"server overloaded ({admission.max_concurrent} calls in progress); retry with "
            "backoff or on another replica"
        ),
    )


def _timed_stream(instruments: RpcInstruments, behavior: Any) -> Any:
    perf_counter = time.perf_counter

    async def stream(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        instruments.started.inc()
        start = perf_counter()
        outcome = grpc.StatusCode.UNKNOWN
        try:
            async for item in stream_results(behavior(request, context)):
                yield item
            outcome = grpc.StatusCode.OK
        except BaseException as exc:
            if _is_cancel(exc):
                outcome = grpc.StatusCode.CANCELLED
            raise
        finally:
            instruments.finish(_code_of(context, outcome), perf_counter() - start)

    return stream


def _code_of(
    context: grpc.aio.ServicerContext[Any, Any], default: grpc.StatusCode
) -> grpc.StatusCode:
    """The status the call ends with: what the handler set (or aborted with), else ``default``."""
    try:
        code = context.code()
    except Exception:  # an implementation without code(): trust the outcome we saw
        return default
    if isinstance(code, int):  # the cython context reports the raw integer status
        return _STATUS_OF_INT.get(code, default)
    if isinstance(code, grpc.StatusCode):
        return code
    return default


_STATUS_OF_INT: dict[int, grpc.StatusCode] = {status.value[0]: status for status in grpc.StatusCode}


def _is_cancel(exc: BaseException) -> bool:
    return isinstance(exc, asyncio.CancelledError)
