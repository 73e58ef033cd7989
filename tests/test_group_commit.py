"""GroupCommit: one flush for concurrent callers, each answered with its own result, and
callers' deadlines kept without a timer per call."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from bandit_router.reward.batching import DEADLINE_SLOT, GroupCommit


class Flushes:
    """A flush that records its batches; ``hang`` makes it wait until released."""

    def __init__(self, *, hang: bool = False, error: BaseException | None = None) -> None:
        self.batches: list[list[int]] = []
        self.hang = hang
        self.error = error
        self.release = asyncio.Event()

    async def __call__(self, commands: Sequence[int]) -> Sequence[int | BaseException]:
        self.batches.append(list(commands))
        if self.hang:
            await self.release.wait()
        if self.error is not None:
            raise self.error
        return [command * 10 if command >= 0 else ValueError(command) for command in commands]


def test_concurrent_callers_share_one_flush_and_get_their_own_results() -> None:
    async def scenario() -> None:
        flushes = Flushes()
        commit: GroupCommit[int, int] = GroupCommit(flushes, linger=0.01)
        results = await asyncio.gather(
            *(commit.submit(i, timeout=5.0) for i in range(5)), return_exceptions=True
        )
        assert results == [0, 10, 20, 30, 40]
        assert flushes.batches == [[0, 1, 2, 3, 4]]
        failed = await asyncio.gather(commit.submit(-1), return_exceptions=True)
        assert isinstance(failed[0], ValueError)  # a command's own error reaches only its caller

    asyncio.run(scenario())


def test_a_failed_flush_reaches_every_caller_of_it() -> None:
    async def scenario() -> None:
        commit: GroupCommit[int, int] = GroupCommit(
            Flushes(error=ConnectionError("gone")), linger=0.01
        )
        results = await asyncio.gather(
            *(commit.submit(i, timeout=5.0) for i in range(3)), return_exceptions=True
        )
        assert all(isinstance(result, ConnectionError) for result in results)

    asyncio.run(scenario())


def test_a_caller_whose_flush_hangs_hears_timeout_by_its_deadline() -> None:
    async def scenario() -> None:
        flushes = Flushes(hang=True)
        commit: GroupCommit[int, int] = GroupCommit(flushes)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await commit.submit(1, timeout=0.1)
        waited = loop.time() - started
        # Never after the deadline (plus the loop's own scheduling), at most a slot before it.
        assert 0.1 - DEADLINE_SLOT - 0.002 <= waited < 0.1 + 1.0
        assert flushes.batches == [[1]]  # it was in flight: it may still commit (retry-safe)
        flushes.release.set()

    asyncio.run(scenario())


def test_a_command_that_timed_out_before_its_flush_is_never_flushed() -> None:
    async def scenario() -> None:
        flushes = Flushes()
        commit: GroupCommit[int, int] = GroupCommit(flushes, linger=0.2)
        slow = asyncio.ensure_future(commit.submit(2, timeout=5.0))
        with pytest.raises(TimeoutError):
            await commit.submit(1, timeout=0.02)
        assert await slow == 20
        assert flushes.batches == [[2]]

    asyncio.run(scenario())


def test_callers_deadlines_share_timers_per_slot() -> None:
    async def scenario() -> None:
        flushes = Flushes()
        commit: GroupCommit[int, int] = GroupCommit(flushes, linger=0.01)
        results = await asyncio.gather(*(commit.submit(i, timeout=60.0) for i in range(100)))
        assert results == [i * 10 for i in range(100)]
        # A hundred callers in one tick: one or two slots, not a hundred timers.
        assert len(commit._deadlines) <= 2

    asyncio.run(scenario())
