"""Operator actions from the dashboard page: pin, unpin, disable, enable, pause, resume.

The page is read-only unless a request carries an operator token: each action is a POST of
JSON with ``authorization: Bearer <token>``, checked by the same ``Authenticator`` as the
Admin service and carried out by the same ``AdminOperations``, so it is validated, applied
atomically and audited under the token's principal exactly as ``bandit-router pin`` is.

A server without tokens (no ``--tokens-file``) refuses every action: there is no principal
to audit, and an open dashboard port must never be a way around a missing auth setup. The
bearer header (never a cookie) and the JSON content type, which a cross-site form cannot
send without a CORS preflight this server never grants, keep other sites from acting with
an operator's browser.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bandit_router.errors import ErrorReason, InvalidArgument, PermissionDenied
from bandit_router.model.experiments import ArmState
from bandit_router.operations.admin import AdminOperations
from bandit_router.operations.auth import Authenticator

ACTIONS = ("pin", "unpin", "disable", "enable", "pause", "resume")
#: Actions that name an arm.
ARM_ACTIONS = ("pin", "disable", "enable")


class DashboardActions:
    def __init__(self, operations: AdminOperations, auth: Authenticator) -> None:
        self.operations = operations
        self.auth = auth

    @property
    def enabled(self) -> bool:
        """Whether the page may offer actions at all (the server has tokens)."""
        return self.auth.enabled

    async def perform(self, authorization: str | None, body: Mapping[str, Any]) -> dict[str, Any]:
        """Carry out one action; the experiment's new version. Errors are the Admin service's
        (InvalidArgument naming the field, NotFound, FailedPrecondition, Unauthenticated...)."""
        if not self.auth.enabled:
            raise PermissionDenied(
                "this server runs without tokens, so the dashboard is read-only; start it with "
                "--tokens-file to act from the page",
                "authorization",
                reason=ErrorReason.ROLE_NOT_GRANTED,
            )
        principal = self.auth.principal_for(authorization, "operator")
        action = _text(body, "action")
        if action not in ACTIONS:
            raise InvalidArgument(f"must be one of {', '.join(ACTIONS)}, got {action!r}", "action")
        experiment = _text(body, "experiment")
        arm = _text(body, "arm") if action in ARM_ACTIONS else ""
        reason = _text(body, "reason")
        ops = self.operations
        if action == "pin":
            after = await ops.pin(experiment, arm, principal, reason=reason)
        elif action == "unpin":
            after = await ops.unpin(experiment, principal, reason=reason)
        elif action in ("disable", "enable"):
            state = ArmState.DISABLED if action == "disable" else ArmState.ACTIVE
            after = await ops.set_arm_state(experiment, arm, state, principal, reason)
        elif action == "pause":
            after = await ops.pause(experiment, principal, reason=reason)
        else:
            after = await ops.resume(experiment, principal, reason=reason)
        return {"ok": True, "action": action, "experiment": experiment, "version": after.version}


def _text(body: Mapping[str, Any], field: str) -> str:
    value = body.get(field, "")
    if not isinstance(value, str):
        raise InvalidArgument(f"expected a string, got {type(value).__name__}", field)
    return value
