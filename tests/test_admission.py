"""Admission control: the rule itself (exact, on a fake lag sequence) and a real server
shedding at once with RESOURCE_EXHAUSTED, never INTERNAL, and losing nothing it answered."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter

import grpc
import pytest

from bandit_router.client import AsyncBanditClient, BanditClient, ClientError, ErrorReason
from bandit_router.errors import OVERLOAD_RETRY_DELAY, STORE_RETRY_DELAY
from bandit_router.serving.admission import Admission

from .servers import RedisServer, ServerThread


def test_refusals_expired_first_then_concurrency() -> None:
    admission = Admission(max_concurrent=2)
    assert admission.refusal(0.0) == "expired"
    assert admission.refusal(-1.0) == "expired"
    assert admission.in_flight == 0  # a refusal holds no place
    assert admission.refusal(None) is None and admission.refusal(1.0) is None
    assert admission.in_flight == 2
    assert admission.refusal(1.0) == "concurrency"
    admission.release()
    assert admission.refusal(1.0) is None


@pytest.mark.integration
def test_calls_beyond_the_limit_are_refused_at_once_while_rewards_wait() -> None:
    """A frozen Redis holds Rewards in progress: with --max-concurrent-rpcs 4, the fifth
    and sixth concurrent calls are RESOURCE_EXHAUSTED at once; the four in progress end
    UNAVAILABLE before their deadline, as any Reward on a frozen store."""
    store = RedisServer().start()
    server = ServerThread(redis_url=store.url, refresh_interval=0.05, max_concurrent_rpcs=4).start()
    try:
        with BanditClient(server.target, timeout=5, max_attempts=1) as client:
            client.create_experiment("cap", ["a", "b"], reward_window=60)
            decisions = [client.route("cap").decision_id for _ in range(6)]
        assert store.proc is not None
        store.proc.send_signal(signal.SIGSTOP)

        async def load() -> list[str]:
            async with AsyncBanditClient(server.target, timeout=3, max_attempts=1) as c:

                async def one(decision_id: str, delay: float) -> str:
                    await asyncio.sleep(delay)
                    started = time.monotonic()
                    try:
                        await c.reward(decision_id, 1.0)
                        return "OK"
                    except ClientError as error:
                        took = time.monotonic() - started
                        if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                            assert took < 1.0, took  # at once, not after a wait
                            # What a client acts on: the reason and when to come back.
                            assert error.reason is ErrorReason.OVERLOADED
                            assert error.retry_delay == OVERLOAD_RETRY_DELAY
                        elif error.code() == grpc.StatusCode.UNAVAILABLE:
                            assert error.reason is ErrorReason.STORE_UNAVAILABLE
                            assert error.retry_delay == STORE_RETRY_DELAY
                        return error.code().name

                return list(
                    await asyncio.gather(
                        *(one(d, 0.0 if i < 4 else 0.3) for i, d in enumerate(decisions))
                    )
                )

        try:
            codes = asyncio.run(load())
        finally:
            store.proc.send_signal(signal.SIGCONT)
        assert Counter(codes)["RESOURCE_EXHAUSTED"] == 2, codes
        assert Counter(codes)["UNAVAILABLE"] == 4, codes
    finally:
        server.stop()
        store.stop()


@pytest.mark.integration
def test_overload_is_refused_and_nothing_answered_is_lost(redis_url: str) -> None:
    """256 callers without pause against --max-pending-rpcs 8: gRPC refuses the excess at
    once (CANCELLED, grpc/grpc#41785), nothing fails otherwise, and the decisions stored
    are exactly the Routes answered: a refused call did nothing."""
    server = ServerThread(redis_url=redis_url, refresh_interval=0.05, max_pending_rpcs=8).start()
    codes: Counter[str] = Counter()
    try:
        with BanditClient(server.target, timeout=5) as client:
            client.create_experiment("busy", ["a", "b"], reward_window=600)

        async def load() -> None:
            async with AsyncBanditClient(server.target, timeout=5, max_attempts=1) as c:
                stop = time.monotonic() + 2.0

                async def caller() -> None:
                    while time.monotonic() < stop:
                        try:
                            await c.route("busy")
                            codes["OK"] += 1
                        except ClientError as error:
                            codes[error.code().name] += 1

                await asyncio.gather(*(caller() for _ in range(256)))

        asyncio.run(load())
        time.sleep(0.5)  # the decision flush
        with BanditClient(server.target, timeout=5) as client:
            stored = sum(s.decisions for s in client.get_experiment("busy").statistics)
    finally:
        server.stop()
    assert set(codes) <= {"OK", "CANCELLED"}, codes
    assert codes["CANCELLED"] > 0 and codes["OK"] > 0, codes
    assert stored == codes["OK"]
