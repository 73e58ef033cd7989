"""Stopping background tasks for real.

On Python 3.11 a cancellation can be lost: ``asyncio.wait_for`` racing an inner future that
completes at the same moment, or a library that catches ``CancelledError`` while it talks to
Redis. A loop that survives its cancellation keeps a server from ever finishing SIGTERM, so
stopping re-cancels until the task is done, and the loops also watch a stop flag.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], *, patience: float = 5.0) -> None:
    """Cancel ``tasks`` and wait until each is done, re-cancelling every 0.2 s."""
    loop = asyncio.get_running_loop()
    pending = [task for task in tasks if not task.done()]
    deadline = loop.time() + patience
    while pending and loop.time() < deadline:
        for task in pending:
            task.cancel()
        _, still = await asyncio.wait(pending, timeout=0.2)
        pending = list(still)
    for task in pending:
        log.error("background task %s did not stop within %.1f s", task.get_name(), patience)
    for task in tasks:
        if task.done() and not task.cancelled():
            with contextlib.suppress(BaseException):
                task.result()  # retrieved, so asyncio does not warn about it
