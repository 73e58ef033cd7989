"""What a caller hears when the store fails: UNAVAILABLE, safe to retry, never INTERNAL.

A store call that fails with an error reply (READONLY after a failover, OOM under
``maxmemory``, NOPERM, MASTERDOWN, LOADING, BUSY, MISCONF) wrote nothing: the Lua scripts
check before they write. One that timed out or lost its connection may have been applied,
and its retry is still safe: a Reward's dedupe marker answers DUPLICATE, a decision flush's
number is written once, an Admin change's script recognises its own repeat (a client's
retry is a new change, applied again or refused for what it finds: docs/clients.md). So
each one is UNAVAILABLE, with the reply's code (not its text, which can name keys and
scripts) in the message. The full text goes to the log, once per code and interval, so a
store that refuses every call does not flood it.
"""

from __future__ import annotations

import logging
import time

from redis.exceptions import (
    AskError,
    AuthenticationError,
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    MovedError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)

from bandit_router.errors import Unavailable

log = logging.getLogger(__name__)

#: At most one log line per error code in this many seconds (plus a count of the others).
LOG_INTERVAL = 10.0


#: What a store call raises when the store, or the way to it, fails. redis-py's cluster
#: client raises ``RedisClusterException`` (not a ``RedisError``) when no node serves a slot
#: yet or none of its nodes answers, both of them normal while a master fails over.
STORE_ERRORS: tuple[type[BaseException], ...] = (
    RedisError,
    RedisClusterException,
    OSError,
    TimeoutError,
)


def is_store_error(error: BaseException) -> bool:
    """A failure of the store or of the way to it, as opposed to a bug of ours."""
    return isinstance(error, STORE_ERRORS)


#: redis-py turns these replies into their own classes and drops the code from the message.
_CODES: tuple[tuple[type[BaseException], str], ...] = (
    (MovedError, "MOVED"),  # a slot moved more often than the cluster client follows it
    (AskError, "ASK"),
    (OutOfMemoryError, "OOM"),
    (ReadOnlyError, "READONLY"),
    (NoPermissionError, "NOPERM"),
    (BusyLoadingError, "LOADING"),
    (MasterDownError, "MASTERDOWN"),
    (TryAgainError, "TRYAGAIN"),
    (ClusterDownError, "CLUSTERDOWN"),
    (SlotNotCoveredError, "slot-not-covered"),
    (AuthenticationError, "NOAUTH"),
)


def error_code(error: BaseException) -> str:
    """``OOM``, ``READONLY``, ``NOPERM``, ``BUSY``... for an error reply; the exception's
    name for anything else."""
    for cls, code in _CODES:
        if isinstance(error, cls):
            return code
    if isinstance(error, ResponseError):
        words = str(error).split(maxsplit=1)
        if words and words[0].isupper():
            return words[0]
        return "ERR"
    if isinstance(error, TimeoutError):
        return "timeout"
    return type(error).__name__


def unavailable(error: BaseException, what: str) -> BaseException:
    """The UNAVAILABLE a caller of ``what`` should hear about a store error (logged at most
    once per code and interval); anything that is not a store error, unchanged."""
    if not is_store_error(error):
        return error
    code = error_code(error)
    _throttled.warn(code, what, error)
    if code == "timeout":
        return Unavailable(
            f"store did not answer {what} in time (it may have been applied); safe to retry"
        )
    if isinstance(error, ResponseError):
        return Unavailable(f"store refused {what} ({code}); nothing was written; safe to retry")
    return Unavailable(f"store unavailable during {what} ({code}); safe to retry")


class ThrottledWarnings:
    """One WARNING per key and interval; the ones held back are counted in the next."""

    def __init__(self, interval: float = LOG_INTERVAL) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warn(self, code: str, what: str, error: BaseException) -> None:
        now = time.monotonic()
        last = self._last.get(code)
        if last is not None and now - last < self.interval:
            self._held[code] = self._held.get(code, 0) + 1
            return
        self._last[code] = now
        held = self._held.pop(code, 0)
        more = f" (and {held} more in the last {self.interval:g} s)" if held else ""
        log.warning("store error %s during %s: %s%s", code, what, error, more)


# One per process: the point is to bound what a failing store writes to this process's log.
_throttled = ThrottledWarnings()
