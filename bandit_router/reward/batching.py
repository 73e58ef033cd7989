"""Group commit: many concurrent callers, one store round trip per event-loop tick.

A Reward is acknowledged only after its Lua script committed; running one script per call
costs a round trip each, while grouping the calls that arrive within a short linger (like a
database's commit delay) into one pipeline keeps each caller's guarantee at a fraction of the
cost. Nobody is acknowledged early: each caller's future resolves with its own script's reply.

The linger is adaptive. Only one flush is in flight at a time; what arrives meanwhile goes in
the next one (a write-ahead log's group commit). A flush lingers only while batches are
forming: the previous flush carried more than one command and ended less than a linger ago.
Otherwise it starts at once, with whatever arrived in the same event-loop tick, so at a
modest rate a Reward pays one round trip and no wait. Under concurrency the linger matters:
gRPC hands the loop one call at a time and a flush's fixed cost is CPU, not I/O wait, so
without it batches stay near one command and the server spends its time on flushes
(measured with ``bandit-router bench --variant``: see docs/architecture.md).

Each caller may bound its wait (``submit(command, timeout)``). Callers' deadlines are kept in
slots of ``DEADLINE_SLOT`` seconds with one loop timer per slot, not one ``asyncio.timeout``
per caller: a timer per call cost a Reward about 4 µs of the event loop's time (uvloop), the
largest single item after the store call itself. A slot's timer is set for the slot's start,
so a caller's timer is due up to ``DEADLINE_SLOT`` before its deadline, never after it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

C = TypeVar("C")
R = TypeVar("R")

DEADLINE_SLOT = 0.005


class GroupCommit(Generic[C, R]):
    """Collects commands submitted during a tick and flushes them with one call."""

    def __init__(
        self,
        flush: Callable[[Sequence[C]], Awaitable[Sequence[R | BaseException]]],
        *,
        max_batch: int = 512,
        linger: float = 0.0,
    ) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._linger = linger
        self._queue: list[tuple[C, asyncio.Future[R]]] = []
        self._runner: asyncio.Task[None] | None = None
        #: Deadline slot -> the futures that time out when it fires.
        self._deadlines: dict[int, list[asyncio.Future[R]]] = {}
        #: When the last flush ended and how many commands it carried: batches are forming
        #: while it carried several and ended less than a linger ago.
        self._last_flush_end = -math.inf
        self._last_batch = 0

    async def submit(self, command: C, timeout: float | None = None) -> R:
        """The command's own result, once its flush committed; TimeoutError after ``timeout``
        seconds (a command not yet flushed then never is; one in flight may still commit)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append((command, future))
        if timeout is not None:
            slot = int((loop.time() + timeout) / DEADLINE_SLOT)
            waiters = self._deadlines.get(slot)
            if waiters is None:
                waiters = self._deadlines[slot] = []
                loop.call_at(slot * DEADLINE_SLOT, self._expire, slot)
            waiters.append(future)
        if self._runner is None or self._runner.done():
            self._runner = loop.create_task(self._run())
        return await future

    def _expire(self, slot: int) -> None:
        for future in self._deadlines.pop(slot, ()):
            if not future.done():
                future.set_exception(TimeoutError())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            if len(self._queue) < self._max_batch:
                # Lingers only while batches are forming; otherwise only the callers of this
                # event-loop tick join (see the module docstring).
                recent = loop.time() - self._last_flush_end < self._linger
                forming = recent and self._last_batch > 1
                await asyncio.sleep(self._linger if forming else 0.0)
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
            live = [(command, future) for command, future in batch if not future.done()]
            if not live:
                continue
            self._last_batch = len(live)
            try:
                results = await self._flush([command for command, _ in live])
            except BaseException as error:  # the whole flush failed: every caller learns it
                self._last_flush_end = loop.time()
                for _, future in live:
                    if not future.done():
                        future.set_exception(error)
                if isinstance(error, asyncio.CancelledError):
                    raise
                continue
            self._last_flush_end = loop.time()
            for (_, future), result in zip(live, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
