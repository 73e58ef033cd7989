"""Group commit: many concurrent callers, one store round trip per event-loop tick.

A Reward is acknowledged only after its Lua script committed; running one script per call
costs a round trip each, while grouping the calls that arrive within a short linger (1 ms by
default, like a database's commit delay) into one pipeline keeps each caller's guarantee at
a fraction of the cost. Nobody is acknowledged early: each caller's future resolves with its
own script's reply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

C = TypeVar("C")
R = TypeVar("R")


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

    async def submit(self, command: C) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((command, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        return await future

    async def _run(self) -> None:
        while self._queue:
            # Let concurrent callers join: gRPC hands the loop one call at a time, so without
            # a short linger nearly every flush would carry a single command.
            if len(self._queue) < self._max_batch:
                await asyncio.sleep(self._linger)
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
            live = [(command, future) for command, future in batch if not future.cancelled()]
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
