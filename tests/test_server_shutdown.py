"""A drained server exits even when a task swallows its cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

import pytest

from bandit_router import server


class Exited(Exception):
    pass


def test_leftover_tasks_are_cancelled_and_a_stuck_one_does_not_keep_the_process(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        raise Exited

    monkeypatch.setattr(os, "_exit", fake_exit)
    monkeypatch.setattr(logging, "shutdown", lambda: None)  # keep pytest's handlers
    released = False

    async def polite() -> None:
        await asyncio.sleep(3600)

    async def stubborn() -> None:
        while not released:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)

    async def scenario() -> tuple[asyncio.Task[None], asyncio.Task[None]]:
        tasks = (
            asyncio.create_task(polite(), name="polite"),
            asyncio.create_task(stubborn(), name="stubborn"),
        )
        await asyncio.sleep(0)
        with pytest.raises(Exited):
            await server.stop_leftover_tasks(patience=0.3)
        return tasks

    loop = asyncio.new_event_loop()
    try:
        polite_task, stubborn_task = loop.run_until_complete(scenario())
        assert polite_task.cancelled()
        assert not stubborn_task.done()
        assert codes == [0]
        assert "ignored cancellation" in caplog.text and "stubborn" in caplog.text
    finally:
        released = True  # the fake exit returned control: let the stubborn task end
        for task in asyncio.all_tasks(loop):
            task.cancel()
            with contextlib.suppress(BaseException):
                loop.run_until_complete(task)
        loop.close()


def test_without_stuck_tasks_nothing_exits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "_exit", lambda code: pytest.fail("exited"))

    async def scenario() -> asyncio.Task[None]:
        task = asyncio.create_task(asyncio.sleep(3600))
        await asyncio.sleep(0)
        await server.stop_leftover_tasks(patience=1.0)
        return task

    assert asyncio.run(scenario()).cancelled()
