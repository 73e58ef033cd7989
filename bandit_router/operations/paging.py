"""Pages of the List* calls (https://google.aip.dev/158): page sizes and opaque page tokens.

A page token is a cursor: the key of the last item returned (an experiment name, a snapshot
or audit entry id), so a page is "the items after it" and stays correct while items are
added or removed between calls, unlike an offset. The token also names the listing it
belongs to (which call, which experiment): one from another listing, or bytes that are not a
token at all, are INVALID_ARGUMENT naming ``page_token``. Tokens are not secret: a forged
one only moves the cursor of a listing its caller may read anyway.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

from bandit_router.errors import ErrorReason, InvalidArgument

#: Items per page when the request says 0.
DEFAULT_PAGE_SIZE = 100
#: The most items per page; a larger page_size is reduced to it (AIP-158).
MAX_PAGE_SIZE = 1000
#: ListAudit's deprecated ``limit`` keeps its old bound when it sets the page size.
MAX_AUDIT_LIMIT = 10_000
#: Longer page tokens are refused before any decoding.
MAX_TOKEN_LENGTH = 1024


def page_size(requested: int, field: str = "page_size") -> int:
    if requested < 0:
        raise InvalidArgument("must not be negative", field)
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def audit_page_size(requested: int, limit: int) -> int:
    """ListAudit: ``page_size``, else the deprecated ``limit`` (as before pages), else 100."""
    if requested:
        return page_size(requested)
    if limit < 0:
        raise InvalidArgument("must not be negative", "limit")
    return min(limit, MAX_AUDIT_LIMIT) if limit else DEFAULT_PAGE_SIZE


@dataclass(frozen=True)
class Listing:
    """Which listing a token belongs to: the call and its experiment (if any)."""

    call: str
    experiment: str = ""

    def token(self, after: str) -> str:
        """The opaque token of the page after the item keyed ``after``."""
        document = json.dumps(
            {"c": self.call, "e": self.experiment, "a": after}, separators=(",", ":")
        )
        return base64.urlsafe_b64encode(document.encode()).decode().rstrip("=")

    def cursor(self, token: str, key: re.Pattern[str] | None = None) -> str | None:
        """The key after which the page starts (None: the first page); ``key``, when given,
        is the form a key must have (a Redis stream id), checked before the store sees it."""
        if not token:
            return None
        refused = InvalidArgument(
            "not a page token of this listing; start again without page_token",
            "page_token",
            reason=ErrorReason.INVALID_PAGE_TOKEN,
        )
        if len(token) > MAX_TOKEN_LENGTH:
            raise refused
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            document = json.loads(raw)
        except (binascii.Error, ValueError):
            raise refused from None
        if (
            not isinstance(document, dict)
            or set(document) != {"c", "e", "a"}
            or document["c"] != self.call
            or document["e"] != self.experiment
            or not isinstance(document["a"], str)
            or not document["a"]
            or (key is not None and not key.fullmatch(document["a"]))
        ):
            raise refused
        return document["a"]
