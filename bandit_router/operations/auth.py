"""Bearer tokens with roles: ``router`` may Route and Reward, ``operator`` may do anything.

Tokens are configured hashed (SHA-256), so a leaked config file does not leak credentials;
a presented token is hashed and compared against every entry with ``hmac.compare_digest``,
so the time taken does not depend on how much of a token matched.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bandit_router.errors import ErrorReason, InvalidArgument, PermissionDenied, Unauthenticated
from bandit_router.operations.yaml_files import load_json, load_yaml

ROUTER = "router"
OPERATOR = "operator"
ROLES = (ROUTER, OPERATOR)
ANONYMOUS = "anonymous"
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "brt_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class TokenEntry:
    principal: str
    role: str
    sha256: str
    expires_at: float = 0.0  # unix seconds; 0: never

    def grants(self, role: str) -> bool:
        return self.role == OPERATOR or self.role == role


ENTRY_KEYS = frozenset({"principal", "role", "sha256", "expires_at"})


def parse_entries(items: Iterable[Any], source: str) -> list[TokenEntry]:
    """Validated entries; errors name the entry (``file: tokens[2].role``), never a value
    that could be a credential."""
    entries = []
    for index, item in enumerate(items):
        where = f"{source}: tokens[{index}]"
        if not isinstance(item, dict):
            raise InvalidArgument("an entry is a mapping {principal, role, sha256}", where)
        if "token" in item:
            raise InvalidArgument(
                "plaintext tokens are not accepted; store the SHA-256 of the token as "
                "'sha256' (bandit-router token create --file writes entries this way)",
                f"{where}.token",
            )
        unknown = sorted(str(key) for key in set(item) - ENTRY_KEYS)
        if unknown:
            raise InvalidArgument(
                f"unknown key; known: {', '.join(sorted(ENTRY_KEYS))}", f"{where}.{unknown[0]}"
            )
        role = item.get("role")
        if role not in ROLES:
            raise InvalidArgument(f"must be one of {', '.join(ROLES)}", f"{where}.role")
        digest = item.get("sha256")
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise InvalidArgument("must be 64 hex characters (a SHA-256)", f"{where}.sha256")
        principal = item.get("principal")
        if not isinstance(principal, str) or not principal:
            raise InvalidArgument("needs a principal (who this token is)", f"{where}.principal")
        expires_at = item.get("expires_at", 0.0)
        if isinstance(expires_at, bool) or not isinstance(expires_at, int | float):
            raise InvalidArgument("must be unix seconds (a number)", f"{where}.expires_at")
        entries.append(TokenEntry(principal, role, digest.lower(), float(expires_at)))
    return entries


def parse_tokens_document(data: Any, source: str) -> list[TokenEntry]:
    """The entries of a loaded ``{tokens: [...]}`` document."""
    if data is None:
        return []
    if not isinstance(data, dict):
        raise InvalidArgument("expected a mapping with a 'tokens' list", source)
    unknown = sorted(str(key) for key in set(data) - {"tokens"})
    if unknown:
        raise InvalidArgument("unknown key; known: tokens", f"{source}: {unknown[0]}")
    items = data.get("tokens") or []
    if not isinstance(items, list):
        raise InvalidArgument("expected a list of entries", f"{source}: tokens")
    return parse_entries(items, source)


def read_tokens_file(path: str) -> Any:
    """The document of a tokens file (YAML, or JSON by its ``.json`` suffix), read strictly:
    a duplicate key is refused, since the loader would silently keep only the last."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise InvalidArgument(f"cannot read: {error.strerror}", path) from None
    return load_json(text, path) if path.endswith(".json") else load_yaml(text, path)


def load_tokens(path: str | None, env_value: str | None) -> list[TokenEntry]:
    """Tokens from a YAML/JSON file ``{tokens: [{principal, role, sha256, expires_at}]}`` and
    from ``BANDIT_ROUTER_TOKENS`` (``principal:role:sha256`` entries, comma separated)."""
    entries: list[TokenEntry] = []
    if path:
        entries += parse_tokens_document(read_tokens_file(path), path)
    if env_value:
        items = []
        for chunk in env_value.split(","):
            parts = chunk.strip().split(":")
            if len(parts) != 3:
                raise InvalidArgument(
                    "entries must be principal:role:sha256", "BANDIT_ROUTER_TOKENS"
                )
            items.append({"principal": parts[0], "role": parts[1], "sha256": parts[2]})
        entries += parse_entries(items, "BANDIT_ROUTER_TOKENS")
    return entries


class Authenticator:
    """Checks the ``authorization: Bearer <token>`` metadata of a call against a role."""

    def __init__(
        self, entries: Sequence[TokenEntry] = (), *, enabled: bool = False, router_auth: bool = True
    ):
        self.entries = list(entries)
        self.enabled = enabled
        self.router_required = enabled and router_auth

    @classmethod
    def from_environment(cls, path: str | None, router_auth: bool) -> Authenticator:
        """Auth is on as soon as a tokens file or ``BANDIT_ROUTER_TOKENS`` is configured.

        Fail closed: a configured but empty tokens file (a botched deploy) refuses every call
        rather than silently serving without auth.
        """
        env_value = os.environ.get("BANDIT_ROUTER_TOKENS")
        entries = load_tokens(path, env_value)
        return cls(entries, enabled=bool(path) or bool(env_value), router_auth=router_auth)

    def principal_for(self, header: str | None, role: str) -> str:
        if not self.enabled:
            return ANONYMOUS
        if header is None:
            raise Unauthenticated(
                "missing; send 'authorization: Bearer <token>'",
                "authorization",
                reason=ErrorReason.TOKEN_MISSING,
            )
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated(
                "malformed; expected 'Bearer <token>'",
                "authorization",
                reason=ErrorReason.TOKEN_INVALID,
            )
        presented = hash_token(token.strip())
        found: TokenEntry | None = None
        for entry in self.entries:  # no early exit: time independent of which entry matches
            if hmac.compare_digest(presented, entry.sha256):
                found = entry
        if found is None:
            raise Unauthenticated(
                "unknown token", "authorization", reason=ErrorReason.TOKEN_INVALID
            )
        if found.expires_at and time.time() > found.expires_at:
            raise Unauthenticated(
                "token expired", "authorization", reason=ErrorReason.TOKEN_EXPIRED
            )
        if not found.grants(role):
            raise PermissionDenied(
                f"principal {found.principal!r} has role {found.role!r}; this call needs {role!r}",
                "authorization",
            )
        return found.principal

    def authorize(self, context: Any, role: str) -> str:
        """The principal calling, or UNAUTHENTICATED / PERMISSION_DENIED."""
        if not self.enabled:
            return ANONYMOUS
        header = None
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                header = value if isinstance(value, str) else value.decode()
        return self.principal_for(header, role)
