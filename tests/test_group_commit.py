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
        # Two callers in one tick form a batch: the next flush lingers.
        assert list(await asyncio.gather(commit.submit(0, 5.0), commit.submit(3, 5.0))) == [0, 30]
        slow = asyncio.ensure_future(commit.submit(2, timeout=5.0))
        with pytest.raises(TimeoutError):
            await commit.submit(1, timeout=0.02)
        assert await slow == 20
        assert flushes.batches == [[0, 3], [2]]

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


def test_an_isolated_command_is_flushed_at_once_without_the_linger() -> None:
    """An idle commit does not wait: with an hour's linger the call still returns at once."""

    async def scenario() -> None:
        flushes = Flushes()
        commit: GroupCommit[int, int] = GroupCommit(flushes, linger=3600.0)
        assert await asyncio.wait_for(commit.submit(1, timeout=5.0), 5.0) == 10
        assert flushes.batches == [[1]]

    asyncio.run(scenario())


def test_commands_arriving_while_batches_form_linger_and_share_a_flush() -> None:
    """Right after a flush of several, a new command waits the linger and one arriving
    meanwhile joins it; after a flush of one, the next is not held back. A command submitted
    while a flush is in flight waits for the next flush."""

    async def scenario() -> None:
        flushes = Flushes()
        commit: GroupCommit[int, int] = GroupCommit(flushes, linger=0.2)
        assert list(await asyncio.gather(commit.submit(0, 5.0), commit.submit(3, 5.0))) == [0, 30]
        first = asyncio.ensure_future(commit.submit(1, timeout=5.0))
        await asyncio.sleep(0.05)  # well inside the 0.2 s linger
        assert await commit.submit(2, timeout=5.0) == 20
        assert await first == 10
        assert flushes.batches == [[0, 3], [1, 2]]

        single = Flushes()
        alone: GroupCommit[int, int] = GroupCommit(single, linger=3600.0)
        assert await alone.submit(1, timeout=5.0) == 10
        assert await asyncio.wait_for(alone.submit(2, timeout=5.0), 5.0) == 20
        assert single.batches == [[1], [2]]

        hanging = Flushes(hang=True)
        busy: GroupCommit[int, int] = GroupCommit(hanging, linger=0.0)
        in_flight = asyncio.ensure_future(busy.submit(1, timeout=5.0))
        await asyncio.sleep(0.01)
        queued = asyncio.ensure_future(busy.submit(2, timeout=5.0))
        await asyncio.sleep(0.01)
        assert hanging.batches == [[1]]  # one flush in flight; 2 waits for the next
        hanging.release.set()
        assert (await in_flight, await queued) == (10, 20)
        assert hanging.batches == [[1], [2]]

    asyncio.run(scenario())
