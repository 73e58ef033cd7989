"""After draining, leftover tasks are stopped, and one that will not stop is named."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys

import pytest

from bandit_router.serving import server


def test_leftover_tasks_are_cancelled_and_a_stuck_one_is_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    released = False

    async def polite() -> None:
        await asyncio.sleep(3600)

    async def stubborn() -> None:
        while not released:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)

    async def scenario() -> None:
        nonlocal released
        polite_task = asyncio.create_task(polite(), name="polite")
        stubborn_task = asyncio.create_task(stubborn(), name="stubborn")
        await asyncio.sleep(0)
        stuck = await server.stop_leftover_tasks(patience=0.3)
        assert polite_task.cancelled()
        assert stuck == [stubborn_task] and not stubborn_task.done()
        released = True  # let it end, or this test's own loop would wait for it forever
        stubborn_task.cancel()
        await asyncio.wait([stubborn_task])

    asyncio.run(scenario())
    assert "ignored cancellation" in caplog.text and "stubborn" in caplog.text


def test_without_stuck_tasks_nothing_is_reported() -> None:
    async def scenario() -> tuple[list[asyncio.Task[object]], asyncio.Task[None]]:
        task = asyncio.create_task(asyncio.sleep(3600))
        await asyncio.sleep(0)
        return await server.stop_leftover_tasks(patience=1.0), task

    stuck, task = asyncio.run(scenario())
    assert stuck == [] and task.cancelled()


STUCK_SERVER = """
import asyncio, contextlib, logging, os, signal
from bandit_router.serving.config import ServerConfig
from bandit_router.serving.server import serve

logging.basicConfig(level=logging.INFO)

async def stubborn():
    while True:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)

async def main():
    ready = asyncio.Event()

    async def terminate_when_ready():
        await ready.wait()
        os.kill(os.getpid(), signal.SIGTERM)

    loop = asyncio.get_running_loop()
    loop.create_task(stubborn(), name="stubborn")
    loop.create_task(terminate_when_ready())
    await serve(ServerConfig(listen="127.0.0.1:0"), ready=ready, exit_if_stuck=True)

asyncio.run(main())
print("asyncio.run returned")  # it cannot: it would wait for the stubborn task forever
"""


def test_a_server_process_exits_after_sigterm_despite_a_stuck_task() -> None:
    done = subprocess.run(
        [sys.executable, "-c", STUCK_SERVER], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "ignored cancellation" in done.stderr and "stubborn" in done.stderr
    assert "asyncio.run returned" not in done.stdout
