"""A domain error as the ``google.rpc.Status`` a client reads, and the abort that sends it.

Every refusal carries an ``ErrorInfo`` (domain ``bandit-router``, a specific ``ErrorReason``
and the request's field path in ``metadata["field"]``) so clients branch on the reason rather
than parse messages; INVALID_ARGUMENT adds a ``BadRequest`` naming the field, a missing or
duplicate resource a ``ResourceInfo``, and a refusal that a later retry may get past a
``RetryInfo`` with the delay to wait.
"""

from __future__ import annotations

import math
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2

from bandit_router.errors import ERROR_DOMAIN, BanditRouterError
from bandit_router.telemetry.logs import clip

#: A status message is cut to this many characters: some echo what the client sent.
MAX_STATUS_MESSAGE = 1024

#: The trailing metadata key gRPC uses for a serialized ``google.rpc.Status``.
STATUS_DETAILS_KEY = "grpc-status-details-bin"


def _packed(detail: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(detail)
    return packed


def _duration(seconds: float) -> duration_pb2.Duration:
    whole = math.floor(seconds)
    return duration_pb2.Duration(seconds=whole, nanos=round((seconds - whole) * 1e9))


def status_of(error: BanditRouterError) -> status_pb2.Status:
    """The rich status of ``error``: code, bounded message and details."""
    message = clip(str(error), MAX_STATUS_MESSAGE)
    status = status_pb2.Status(code=getattr(code_pb2, error.code), message=message)
    field = clip(error.field, MAX_STATUS_MESSAGE)
    if error.code == "INVALID_ARGUMENT" and field:  # first, where clients before 0.2 look
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=field, description=clip(error.message, MAX_STATUS_MESSAGE)
        )
        status.details.append(_packed(error_details_pb2.BadRequest(field_violations=[violation])))
    metadata = {"field": field} if field else {}
    status.details.append(
        _packed(
            error_details_pb2.ErrorInfo(
                reason=error.reason.value, domain=ERROR_DOMAIN, metadata=metadata
            )
        )
    )
    if error.resource is not None:
        status.details.append(
            _packed(
                error_details_pb2.ResourceInfo(
                    resource_type=error.resource.type,
                    resource_name=clip(error.resource.name, MAX_STATUS_MESSAGE),
                    description=message,
                )
            )
        )
    if error.retry_delay is not None:
        status.details.append(
            _packed(error_details_pb2.RetryInfo(retry_delay=_duration(error.retry_delay)))
        )
    return status


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], error: BanditRouterError) -> None:
    """End the call with ``error``'s status and its details in the trailing metadata."""
    status = status_of(error)
    await context.abort(
        grpc.StatusCode[error.code],
        status.message,
        trailing_metadata=((STATUS_DETAILS_KEY, status.SerializeToString()),),
    )
