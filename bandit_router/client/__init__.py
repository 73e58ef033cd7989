"""Python clients for bandit-router: ``BanditClient`` (blocking) and ``AsyncBanditClient``.

This package needs only grpcio, protobuf and grpcio-status: ``pip install bandit-router``
installs it without the server. Both clients set a deadline on every call, retry
UNAVAILABLE through gRPC's retry policy (``channels``), return typed results (``RouteResult``
with a ``Reason``, an ``Outcome`` from ``reward``, protobuf messages from the Admin calls;
``ArmState`` and ``GuardrailOverride`` name an arm's state and an operator's override) and
raise typed errors (``errors``) built from the status and its details. Retrying Reward is
safe because the server credits each decision at most once and answers DUPLICATE to a retry.
"""

from bandit_router.client.aio import AsyncBanditClient
from bandit_router.client.channels import ChannelOptions, channel_options, service_config
from bandit_router.client.errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    ClientError,
    DeadlineExceeded,
    ErrorInfo,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    ResourceInfo,
    Unauthenticated,
    Unavailable,
    from_rpc_error,
)
from bandit_router.client.results import (
    ArmState,
    GuardrailOverride,
    Outcome,
    Reason,
    RouteResult,
    outcome_name,
)
from bandit_router.client.sync import ADMIN_TIMEOUT, DEFAULT_TIMEOUT, BanditClient
from bandit_router.errors import ErrorReason

__all__ = [
    "ADMIN_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "Aborted",
    "AlreadyExists",
    "ArmState",
    "AsyncBanditClient",
    "BanditClient",
    "Cancelled",
    "ChannelOptions",
    "ClientError",
    "DeadlineExceeded",
    "ErrorInfo",
    "ErrorReason",
    "FailedPrecondition",
    "FieldViolation",
    "GuardrailOverride",
    "InvalidArgument",
    "NotFound",
    "Outcome",
    "PermissionDenied",
    "Reason",
    "ResourceExhausted",
    "ResourceInfo",
    "RouteResult",
    "Unauthenticated",
    "Unavailable",
    "channel_options",
    "from_rpc_error",
    "outcome_name",
    "service_config",
]
