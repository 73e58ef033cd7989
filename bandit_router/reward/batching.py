"""Group commit: many concurrent callers, one store round trip per event-loop tick.

A Reward is acknowledged only after its Lua script committed; running one script per call
costs a round trip each, while grouping the calls that arrive within a short linger (1 ms by
default, like a database's commit delay) into one pipeline keeps each caller's guarantee at
a fraction of the cost. Nobody is acknowledged early: each caller's future resolves with its
own script's reply.

Each caller may bound its wait (``submit(command, timeout)``). Callers' deadlines are kept in
slots of ``DEADLINE_SLOT`` seconds with one loop timer per slot, not one ``asyncio.timeout``
per caller: a timer per call cost a Reward about 4 µs of the event loop's time (uvloop), the
largest single item after the store call itself. A slot's timer is set for the slot's start,
so a caller's timer is due up to ``DEADLINE_SLOT`` before its deadline, never after it.
"""

from __future__ import annotations

import asyncio
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
        while self._queue:
            # Let concurrent callers join: gRPC hands the loop one call at a time, so without
            # a short linger nearly every flush would carry a single command.
            if len(self._queue) < self._max_batch:
                await asyncio.sleep(self._linger)
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
            live = [(command, future) for command, future in batch if not future.done()]
            if not live:
                continue
            try:
                results = await self._flush([command for command, _ in live])
            except BaseException as error:  # the whole flush failed: every caller learns it
                for _, future in live:
                    if not future.done():
                        future.set_exception(error)
                if isinstance(error, asyncio.CancelledError):
                    raise
                continue
            for (_, future), result in zip(live, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
