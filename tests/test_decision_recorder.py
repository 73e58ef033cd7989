"""DecisionRecorder: batches by linger or by size, and loses nothing to a failed flush."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from bandit_router.route import recorder as recorder_module
from bandit_router.route.decision_log import decode
from bandit_router.route.recorder import DecisionRecorder
from bandit_router.route.router import Reason
from bandit_router.route.tokens import DecisionSigner
from bandit_router.serving.config import add_server_arguments, config_from_args
from bandit_router.store.redis_store import PendingDecision

ISSUER = DecisionSigner(b"k" * 32).issuer("exp", "inc1", "a", 0.5, 3, True)
TABLE = {"a": 0.5, "b": 0.5}


class FakeStore:
    """Keeps every flush; fails the first ``failures`` of them like a Redis outage."""

    def __init__(self, failures: int = 0) -> None:
        self.flushes: list[Mapping[str, tuple[str, Sequence[PendingDecision], str, Any]]] = []
        self.failures = failures
        self.flushed = asyncio.Event()

    async def record_decisions(
        self, batches: Mapping[str, tuple[str, Sequence[PendingDecision], str, Any]]
    ) -> None:
        if self.failures:
            self.failures -= 1
            raise RedisConnectionError("redis is away")
        self.flushes.append(batches)
        self.flushed.set()


def record(recorder: DecisionRecorder, index: int) -> None:
    nonce = f"{index:024x}"
    decision_id = ISSUER.issue(1_000 + index, 601_000 + index, nonce)
    recorder.record(
        "exp",
        "inc1",
        "a",
        (decision_id, Reason.EXPLOIT, "", TABLE, None),
        PendingDecision(nonce, "a", 601_000 + index),
    )


def flushed_nonces(store: FakeStore) -> list[str]:
    nonces = []
    for batches in store.flushes:
        incarnation, pending, log_data, counts = batches["exp"]
        assert incarnation == "inc1"
        logged = [record["nonce"] for record in decode(log_data)]
        assert logged == [decision.nonce for decision in pending]
        assert counts == {"a": len(pending)}
        nonces += logged
    return nonces


def test_a_lone_decision_waits_for_the_linger() -> None:
    asyncio.run(_lone_decision())


async def _lone_decision() -> None:
    store = FakeStore()
    recorder = DecisionRecorder(store, linger=0.05)  # type: ignore[arg-type]
    record(recorder, 0)
    await asyncio.sleep(0)
    assert store.flushes == []  # not written at once: it waits for company
    await asyncio.wait_for(store.flushed.wait(), 5.0)
    assert flushed_nonces(store) == [f"{0:024x}"]


def test_a_full_batch_is_written_without_waiting_for_the_linger() -> None:
    asyncio.run(_full_batch())


async def _full_batch() -> None:
    store = FakeStore()
    recorder = DecisionRecorder(store, linger=3600.0)  # type: ignore[arg-type]
    for index in range(recorder_module.FLUSH_AT + 10):
        record(recorder, index)
        if index == 0:
            await asyncio.sleep(0)  # the flush task starts lingering
    await asyncio.wait_for(store.flushed.wait(), 5.0)
    assert len(flushed_nonces(store)) == recorder_module.FLUSH_AT + 10


def test_a_failed_flush_is_retried_in_order_and_loses_nothing() -> None:
    asyncio.run(_failed_flush())


async def _failed_flush() -> None:
    store = FakeStore(failures=2)
    recorder = DecisionRecorder(store, linger=0.01)  # type: ignore[arg-type]
    for index in range(5):
        record(recorder, index)
    await asyncio.sleep(0.02)  # the first flush fails; more decisions arrive meanwhile
    for index in range(5, 9):
        record(recorder, index)
    for _ in range(200):
        if len(flushed_nonces(store)) == 9:
            break
        await asyncio.sleep(0.05)
    assert flushed_nonces(store) == [f"{index:024x}" for index in range(9)]


def test_the_lingers_and_budgets_are_configurable() -> None:
    parser = argparse.ArgumentParser()
    add_server_arguments(parser)
    defaults = config_from_args(parser.parse_args([]))
    assert defaults.decision_linger == pytest.approx(0.025)
    assert defaults.sticky_lookup == pytest.approx(0.05)
    args = parser.parse_args(["--decision-linger-ms", "5", "--sticky-lookup-ms", "200"])
    assert config_from_args(args).decision_linger == pytest.approx(0.005)
    assert config_from_args(args).sticky_lookup == pytest.approx(0.2)
