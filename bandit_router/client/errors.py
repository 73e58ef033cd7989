"""Typed errors of the Python clients, built from the gRPC status and its rich details.

A failed call raises a subclass of ``ClientError`` chosen by the status code (``NotFound``,
``InvalidArgument``, ...), so callers catch what they can act on instead of inspecting a raw
``grpc.RpcError``. The server's ``google.rpc.Status`` details are decoded: ``ErrorInfo``
(``reason``, one of ``ErrorReason``, and the field it is about), ``BadRequest`` field
violations (INVALID_ARGUMENT), ``ResourceInfo`` (``resource``: what was not found or already
exists) and ``RetryInfo`` (``retry_delay``: how long to wait before a retry may succeed).
``ClientError`` still is a ``grpc.RpcError`` with ``code()`` and ``details()``, so code
written against raw gRPC errors keeps working.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from bandit_router.errors import ERROR_DOMAIN, ErrorReason

#: The trailing metadata key gRPC uses for a serialized ``google.rpc.Status``.
STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    """One field of the request that the server refused, and why."""

    field: str
    description: str


@dataclass(frozen=True)
class ErrorInfo:
    """``google.rpc.ErrorInfo``: a machine-readable reason, its domain and metadata."""

    reason: str
    domain: str
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ResourceInfo:
    """``google.rpc.ResourceInfo``: the resource not found (or already existing).

    ``type`` is ``experiment``, ``arm``, ``pin`` or ``decision``; ``name`` its path, e.g.
    ``experiments/checkout/arms/b``."""

    type: str
    name: str
    description: str = ""


class ClientError(grpc.RpcError):
    """A call that failed; ``status_code``, ``message`` and the decoded details.

    ``field`` names the offending request field when the server said which (from a
    ``BadRequest`` violation or an ``ErrorInfo``), else it is empty.
    """

    def __init__(
        self,
        status_code: grpc.StatusCode,
        message: str,
        *,
        field_violations: tuple[FieldViolation, ...] = (),
        error_info: ErrorInfo | None = None,
        resource: ResourceInfo | None = None,
        retry_delay: float | None = None,
        trailing_metadata: Any = None,
    ) -> None:
        super().__init__(f"{status_code.name}: {message}")
        self._trailing_metadata = trailing_metadata
        self.status_code = status_code
        self.message = message
        self.field_violations = field_violations
        self.error_info = error_info
        #: ``ResourceInfo`` of NOT_FOUND and ALREADY_EXISTS, else None.
        self.resource = resource
        #: Seconds to wait before retrying (``RetryInfo``), or None when a retry of the same
        #: call is not expected to succeed (or the server did not say).
        self.retry_delay = retry_delay

    @property
    def reason(self) -> ErrorReason | str | None:
        """The server's ``ErrorInfo`` reason: an ``ErrorReason`` (a ``StrEnum``, so it also
        compares equal to its name), the raw string for a reason this client does not know
        (a newer server's), or None without an ErrorInfo of domain ``bandit-router``."""
        if self.error_info is None or self.error_info.domain != ERROR_DOMAIN:
            return None
        try:
            return ErrorReason(self.error_info.reason)
        except ValueError:
            return self.error_info.reason

    @property
    def field(self) -> str:
        if self.field_violations:
            return self.field_violations[0].field
        if self.error_info is not None:
            return self.error_info.metadata.get("field", "")
        return ""

    def code(self) -> grpc.StatusCode:
        """The status code, as ``grpc.RpcError`` (a ``grpc.Call``) spells it."""
        return self.status_code

    def details(self) -> str:
        """The status message, as ``grpc.RpcError`` spells it."""
        return self.message

    def trailing_metadata(self) -> Any:
        """The call's trailing metadata as gRPC gave it (the raw status details included)."""
        return self._trailing_metadata


class InvalidArgument(ClientError):
    """INVALID_ARGUMENT: the request is wrong; ``field_violations`` say where."""


class NotFound(ClientError):
    """NOT_FOUND: no such experiment, arm or (live) decision."""


class AlreadyExists(ClientError):
    """ALREADY_EXISTS: an experiment of that name exists."""


class FailedPrecondition(ClientError):
    """FAILED_PRECONDITION: valid, but not in the experiment's current state."""


class Aborted(ClientError):
    """ABORTED: a concurrent change won (stale ``expected_version``); read and retry."""


class Unavailable(ClientError):
    """UNAVAILABLE: the server or its Redis cannot answer now; safe to retry later."""


class ResourceExhausted(ClientError):
    """RESOURCE_EXHAUSTED: the server is overloaded; back off or use another replica."""


class DeadlineExceeded(ClientError):
    """DEADLINE_EXCEEDED: no answer within the call's deadline."""


class Cancelled(ClientError):
    """CANCELLED: the call was cancelled before it completed."""


class Unauthenticated(ClientError):
    """UNAUTHENTICATED: no token, or one the server does not know."""


class PermissionDenied(ClientError):
    """PERMISSION_DENIED: the token's role may not do this."""


_BY_CODE: dict[grpc.StatusCode, type[ClientError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ABORTED: Aborted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
}


def _status_details(metadata: Iterable[Any] | None) -> status_pb2.Status | None:
    """The ``google.rpc.Status`` in trailing metadata (sync tuples and aio.Metadata alike)."""
    for key, value in metadata or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except DecodeError:
                return None
    return None


def from_rpc_error(error: grpc.RpcError) -> ClientError:
    """The typed error for a raw ``grpc.RpcError`` (sync or asyncio)."""
    if isinstance(error, ClientError):
        return error
    call: Any = error
    code = call.code() if callable(getattr(call, "code", None)) else grpc.StatusCode.UNKNOWN
    message = call.details() if callable(getattr(call, "details", None)) else str(error)
    trailing = (
        call.trailing_metadata() if callable(getattr(call, "trailing_metadata", None)) else None
    )
    violations: list[FieldViolation] = []
    info: ErrorInfo | None = None
    resource: ResourceInfo | None = None
    retry_delay: float | None = None
    status = _status_details(trailing)
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad_request = error_details_pb2.BadRequest()
                detail.Unpack(bad_request)
                violations += [
                    FieldViolation(v.field, v.description) for v in bad_request.field_violations
                ]
            elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR) and info is None:
                unpacked = error_details_pb2.ErrorInfo()
                detail.Unpack(unpacked)
                info = ErrorInfo(unpacked.reason, unpacked.domain, dict(unpacked.metadata))
            elif detail.Is(error_details_pb2.ResourceInfo.DESCRIPTOR) and resource is None:
                found = error_details_pb2.ResourceInfo()
                detail.Unpack(found)
                resource = ResourceInfo(found.resource_type, found.resource_name, found.description)
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR) and retry_delay is None:
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                retry_delay = retry.retry_delay.ToTimedelta().total_seconds()
    kind = _BY_CODE.get(code, ClientError)
    return kind(
        code,
        message or "",
        field_violations=tuple(violations),
        error_info=info,
        resource=resource,
        retry_delay=retry_delay,
        trailing_metadata=trailing,
    )


@contextmanager
def typed_errors() -> Iterator[None]:
    """Re-raise a ``grpc.RpcError`` from the block as its typed ``ClientError``."""
    try:
        yield
    except ClientError:
        raise
    except grpc.RpcError as error:
        raise from_rpc_error(error) from error
