"""grpc.aio's own log records about cancelled calls, reduced to one DEBUG line each.

When a client cancels a call (or its deadline passes, or SIGTERM's grace runs out) while the
server is still writing, grpc.aio logs the failed write (``ExecuteBatchError``) or the
cancellation at ERROR with a traceback, unless it noticed the client had gone first, which is
a race. A cancellation is the client's decision, not a server error: operators paged by
these lines learn nothing. This filter keeps them, at DEBUG, as one line without traceback;
every other record of the grpc logger passes unchanged.
"""

from __future__ import annotations

import asyncio
import logging

GRPC_AIO_LOGGER = "grpc._cython.cygrpc"
_CANCEL_NAMES = frozenset({"ExecuteBatchError", "CancelledError"})


def _is_cancellation(record: logging.LogRecord) -> bool:
    if record.exc_info and record.exc_info[0] is not None:
        kind = record.exc_info[0]
        return issubclass(kind, asyncio.CancelledError) or kind.__name__ in _CANCEL_NAMES
    try:
        message = record.getMessage()
    except Exception:
        return False
    return any(name in message for name in _CANCEL_NAMES)


class CancellationFilter(logging.Filter):
    """Demotes grpc.aio's records of cancelled calls to one DEBUG line (see module doc)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG or not _is_cancellation(record):
            return True
        kind = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        record.msg = f"call cancelled by its client or by shutdown ({kind or 'cancelled'}): "
        record.msg += message.splitlines()[0] if message else ""
        record.args = None
        record.exc_info = None
        record.exc_text = None
        record.levelno = logging.DEBUG
        record.levelname = logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def quiet_cancellations() -> None:
    """Install the filter on grpc.aio's logger once per process."""
    logger = logging.getLogger(GRPC_AIO_LOGGER)
    if not any(isinstance(existing, CancellationFilter) for existing in logger.filters):
        logger.addFilter(CancellationFilter())
