"""Domain errors, one per canonical gRPC status, raised by the logic and mapped at the edge.

The logic below the servicers never imports grpc; it raises these, and the servicer turns
each into its status code with the message, which always names the offending field.
"""

from __future__ import annotations


class BanditRouterError(Exception):
    """Base class; ``code`` is the name of the grpc.StatusCode it maps to."""

    code = "INTERNAL"

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


class InvalidArgument(BanditRouterError):
    code = "INVALID_ARGUMENT"


class NotFound(BanditRouterError):
    code = "NOT_FOUND"


class AlreadyExists(BanditRouterError):
    code = "ALREADY_EXISTS"


class FailedPrecondition(BanditRouterError):
    code = "FAILED_PRECONDITION"


class Aborted(BanditRouterError):
    code = "ABORTED"


class Unavailable(BanditRouterError):
    code = "UNAVAILABLE"


class Unauthenticated(BanditRouterError):
    code = "UNAUTHENTICATED"


class PermissionDenied(BanditRouterError):
    code = "PERMISSION_DENIED"
