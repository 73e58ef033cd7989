"""Domain errors, one per canonical gRPC status, raised by the logic and mapped at the edge.

The logic below the servicers never imports grpc; it raises these, and the servicer turns
each into its status code with the message, which always names the offending field, and the
rich details a client can act on: a ``google.rpc.ErrorInfo`` whose ``reason`` is one of
``ErrorReason`` (domain ``bandit-router``), a ``ResourceInfo`` for what was not found or
already exists, a ``RetryInfo`` when retrying later may succeed, and a ``BadRequest`` for
INVALID_ARGUMENT.

``ErrorReason`` is part of the public contract (clients branch on it, and the Python client
re-exports it), so a reason is never renamed; ``REASONS`` documents each one, and the reasons
table of docs/clients.md is ``reasons_table()`` verbatim (a test keeps them equal).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Self

#: ``google.rpc.ErrorInfo.domain`` of every error this service answers.
ERROR_DOMAIN = "bandit-router"

#: Seconds a client should wait before retrying when the store cannot answer: a Redis
#: failover (Sentinel or Cluster) takes a few seconds, and replicas re-read their experiments
#: every second, so sooner than one second mostly hits the same outage.
STORE_RETRY_DELAY = 1.0
#: Seconds before retrying a call shed by admission control: a Route or Reward holds its
#: slot for milliseconds, so a tenth of a second frees many slots without hammering the server.
OVERLOAD_RETRY_DELAY = 0.1
#: Seconds before retrying an update that lost the compare-and-set race 20 times in a row.
CONFLICT_RETRY_DELAY = 0.05


class ErrorReason(StrEnum):
    """Machine-readable ``ErrorInfo.reason`` values (stable: clients branch on them)."""

    INVALID_FIELD = "INVALID_FIELD"
    INVALID_PAGE_TOKEN = "INVALID_PAGE_TOKEN"
    DUPLICATE_ARM = "DUPLICATE_ARM"
    EXPERIMENT_NOT_FOUND = "EXPERIMENT_NOT_FOUND"
    ARM_NOT_FOUND = "ARM_NOT_FOUND"
    DECISION_NOT_FOUND = "DECISION_NOT_FOUND"
    DECISION_EXPIRED = "DECISION_EXPIRED"
    DECISION_STALE = "DECISION_STALE"
    PIN_NOT_FOUND = "PIN_NOT_FOUND"
    DUPLICATE_EXPERIMENT = "DUPLICATE_EXPERIMENT"
    LAST_ACTIVE_ARM = "LAST_ACTIVE_ARM"
    ARM_DISABLED = "ARM_DISABLED"
    ARM_QUARANTINED = "ARM_QUARANTINED"
    NO_ELIGIBLE_ARM = "NO_ELIGIBLE_ARM"
    RESET_REQUIRED = "RESET_REQUIRED"
    VERSION_MISMATCH = "VERSION_MISMATCH"
    CONCURRENT_UPDATE = "CONCURRENT_UPDATE"
    STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
    OVERLOADED = "OVERLOADED"
    TOKEN_MISSING = "TOKEN_MISSING"
    TOKEN_INVALID = "TOKEN_INVALID"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    ROLE_NOT_GRANTED = "ROLE_NOT_GRANTED"


@dataclass(frozen=True)
class ReasonDoc:
    """What a reason means and what a client does about it (the docs' reasons table)."""

    code: str
    meaning: str
    action: str
    details: str


_BAD_REQUEST = "BadRequest"
_RESOURCE = "ResourceInfo"
_RETRY = "RetryInfo"

#: Every reason with its status code, meaning, what to do and the details sent with it.
REASONS: dict[ErrorReason, ReasonDoc] = {
    ErrorReason.INVALID_FIELD: ReasonDoc(
        "INVALID_ARGUMENT",
        "A request field is invalid",
        "Fix the field that `BadRequest` names; do not retry unchanged",
        _BAD_REQUEST,
    ),
    ErrorReason.INVALID_PAGE_TOKEN: ReasonDoc(
        "INVALID_ARGUMENT",
        "`page_token` is not one this listing returned (or its request changed)",
        "Restart the listing without `page_token`",
        _BAD_REQUEST,
    ),
    ErrorReason.DUPLICATE_ARM: ReasonDoc(
        "INVALID_ARGUMENT",
        "The experiment already has an arm of that name",
        "Choose another arm name",
        _BAD_REQUEST,
    ),
    ErrorReason.EXPERIMENT_NOT_FOUND: ReasonDoc(
        "NOT_FOUND",
        "No experiment of that name (for Reward: the decision's experiment was deleted)",
        "Create it, or check the name",
        _RESOURCE,
    ),
    ErrorReason.ARM_NOT_FOUND: ReasonDoc(
        "NOT_FOUND",
        "The experiment has no such arm (for Reward: the decision's arm was removed)",
        "Check the arm name; a reward for a removed arm is dropped",
        _RESOURCE,
    ),
    ErrorReason.DECISION_NOT_FOUND: ReasonDoc(
        "NOT_FOUND",
        "The decision belongs to an experiment since deleted and re-created",
        "Drop the reward: it cannot count for the new experiment",
        _RESOURCE,
    ),
    ErrorReason.DECISION_EXPIRED: ReasonDoc(
        "NOT_FOUND",
        "The decision's reward window and late grace have passed",
        "Drop the reward, or lengthen the experiment's reward window",
        _RESOURCE,
    ),
    ErrorReason.DECISION_STALE: ReasonDoc(
        "NOT_FOUND",
        "The decision was made before its experiment changed its context features or kind "
        "of policy (with a reset): its features no longer fit the statistics",
        "Drop the reward",
        _RESOURCE,
    ),
    ErrorReason.PIN_NOT_FOUND: ReasonDoc(
        "NOT_FOUND",
        "The unit is not pinned",
        "Nothing to undo",
        _RESOURCE,
    ),
    ErrorReason.DUPLICATE_EXPERIMENT: ReasonDoc(
        "ALREADY_EXISTS",
        "An experiment of that name exists",
        "Update it, or choose another name",
        _RESOURCE,
    ),
    ErrorReason.LAST_ACTIVE_ARM: ReasonDoc(
        "FAILED_PRECONDITION",
        "Removing or disabling this arm would leave no active arm",
        "Enable or add another arm first",
        "",
    ),
    ErrorReason.ARM_DISABLED: ReasonDoc(
        "FAILED_PRECONDITION",
        "The arm is disabled, so it cannot be pinned",
        "Enable the arm first",
        "",
    ),
    ErrorReason.ARM_QUARANTINED: ReasonDoc(
        "FAILED_PRECONDITION",
        "The arm is quarantined by a guardrail; enabling is for disabled arms",
        "Hold it active (`bandit-router guardrail hold`) or let its probe data release it",
        "",
    ),
    ErrorReason.NO_ELIGIBLE_ARM: ReasonDoc(
        "FAILED_PRECONDITION",
        "Every active arm is excluded by `excluded_arms` or disabled",
        "Exclude fewer arms, or serve your own default",
        "",
    ),
    ErrorReason.RESET_REQUIRED: ReasonDoc(
        "FAILED_PRECONDITION",
        "The change (context features, or a contextual policy for a plain one or back) would "
        "leave statistics that no longer mean anything",
        "Repeat the update with `reset_statistics` (`apply --reset-statistics`)",
        "",
    ),
    ErrorReason.VERSION_MISMATCH: ReasonDoc(
        "ABORTED",
        "`expected_version` is not the experiment's current version",
        "Read the experiment again, re-apply the change, retry",
        "",
    ),
    ErrorReason.CONCURRENT_UPDATE: ReasonDoc(
        "ABORTED",
        "Too many concurrent updates of the experiment",
        "Retry after the delay",
        _RETRY,
    ),
    ErrorReason.STORE_UNAVAILABLE: ReasonDoc(
        "UNAVAILABLE",
        "Redis did not answer, refused, or too few replicas acknowledged",
        "Retry after the delay (Reward is exactly-once, so retrying it is safe)",
        _RETRY,
    ),
    ErrorReason.OVERLOADED: ReasonDoc(
        "RESOURCE_EXHAUSTED",
        "The server sheds load: too many calls in progress",
        "Retry after the delay with backoff, or on another replica",
        _RETRY,
    ),
    ErrorReason.TOKEN_MISSING: ReasonDoc(
        "UNAUTHENTICATED",
        "No `authorization` metadata",
        "Send `authorization: Bearer <token>`",
        "",
    ),
    ErrorReason.TOKEN_INVALID: ReasonDoc(
        "UNAUTHENTICATED",
        "The `authorization` metadata is malformed or its token is unknown",
        "Check the token",
        "",
    ),
    ErrorReason.TOKEN_EXPIRED: ReasonDoc(
        "UNAUTHENTICATED",
        "The token has expired",
        "Get a new token",
        "",
    ),
    ErrorReason.ROLE_NOT_GRANTED: ReasonDoc(
        "PERMISSION_DENIED",
        "The token's role may not make this call (Admin needs `operator`)",
        "Use a token with the role the message names",
        "",
    ),
}


def reasons_table() -> str:
    """The Markdown table of every reason (docs/clients.md holds it verbatim)."""
    lines = [
        "| Reason | Code | Meaning | What to do | Details besides ErrorInfo |",
        "|---|---|---|---|---|",
    ]
    for reason, doc in REASONS.items():
        lines.append(
            f"| `{reason}` | {doc.code} | {doc.meaning} | {doc.action} | {doc.details or '-'} |"
        )
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Resource:
    """What was not found or already exists: ``google.rpc.ResourceInfo``'s type and name.

    Names are resource paths (``experiments/checkout/arms/b``): names are restricted to
    ``[A-Za-z0-9_.-]``, so the slashes are unambiguous."""

    type: str
    name: str

    @classmethod
    def experiment(cls, name: str) -> Resource:
        return cls("experiment", f"experiments/{name}")

    @classmethod
    def arm(cls, experiment: str, arm: str) -> Resource:
        return cls("arm", f"experiments/{experiment}/arms/{arm}")

    @classmethod
    def pin(cls, experiment: str, unit_id: str) -> Resource:
        return cls("pin", f"experiments/{experiment}/pins/{unit_id}")

    @classmethod
    def decision(cls, decision_id: str) -> Resource:
        return cls("decision", f"decisions/{decision_id}")


class BanditRouterError(Exception):
    """Base class; ``code`` is the name of the grpc.StatusCode it maps to, ``reason`` the
    ``ErrorInfo`` reason (``default_reason`` unless the raiser is more specific)."""

    code = "INTERNAL"
    default_reason: ErrorReason | None = None
    #: Seconds to wait before a retry may succeed, sent as ``RetryInfo`` (None: do not).
    default_retry_delay: float | None = None

    def __init__(
        self,
        message: str,
        field: str = "",
        *,
        reason: ErrorReason | None = None,
        resource: Resource | None = None,
        retry_delay: float | None = None,
    ) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message
        chosen = reason or self.default_reason
        if chosen is None:
            raise TypeError(f"{type(self).__name__} needs a specific reason")
        self.reason: ErrorReason = chosen
        self.resource = resource
        self.retry_delay = self.default_retry_delay if retry_delay is None else retry_delay

    def at(self, field: str) -> Self:
        """The same error about another field path (the request's own name for it)."""
        moved = type(self).__new__(type(self))
        moved.__dict__.update(self.__dict__)
        moved.field = field
        moved.args = (f"{field}: {self.message}" if field else self.message,)
        return moved


class InvalidArgument(BanditRouterError):
    code = "INVALID_ARGUMENT"
    default_reason = ErrorReason.INVALID_FIELD


class NotFound(BanditRouterError):
    """Always with a specific reason and the resource that was not found."""

    code = "NOT_FOUND"

    def __init__(
        self, message: str, field: str, *, reason: ErrorReason, resource: Resource
    ) -> None:
        super().__init__(message, field, reason=reason, resource=resource)


def experiment_not_found(name: str, field: str = "experiment") -> NotFound:
    """NOT_FOUND for an experiment name (``field``: where the request carried it)."""
    return NotFound(
        f"no experiment named {name!r}",
        field,
        reason=ErrorReason.EXPERIMENT_NOT_FOUND,
        resource=Resource.experiment(name),
    )


class AlreadyExists(BanditRouterError):
    code = "ALREADY_EXISTS"
    default_reason = ErrorReason.DUPLICATE_EXPERIMENT


class FailedPrecondition(BanditRouterError):
    """Always with a specific reason: the precondition the client can go and satisfy."""

    code = "FAILED_PRECONDITION"

    def __init__(self, message: str, field: str, *, reason: ErrorReason) -> None:
        super().__init__(message, field, reason=reason)


class Aborted(BanditRouterError):
    code = "ABORTED"
    default_reason = ErrorReason.VERSION_MISMATCH


class Unavailable(BanditRouterError):
    code = "UNAVAILABLE"
    default_reason = ErrorReason.STORE_UNAVAILABLE
    default_retry_delay = STORE_RETRY_DELAY


class ResourceExhausted(BanditRouterError):
    code = "RESOURCE_EXHAUSTED"
    default_reason = ErrorReason.OVERLOADED
    default_retry_delay = OVERLOAD_RETRY_DELAY


class Unauthenticated(BanditRouterError):
    code = "UNAUTHENTICATED"

    def __init__(self, message: str, field: str, *, reason: ErrorReason) -> None:
        super().__init__(message, field, reason=reason)


class PermissionDenied(BanditRouterError):
    code = "PERMISSION_DENIED"
    default_reason = ErrorReason.ROLE_NOT_GRANTED
