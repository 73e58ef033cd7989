"""DecisionRecorder: batches by linger or by size, loses nothing to a failed flush, and
writes nothing twice when a flush's reply was lost."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError

from bandit_router.route import recorder as recorder_module
from bandit_router.route.decision_log import decode
from bandit_router.route.recorder import DecisionRecorder
from bandit_router.route.router import Reason
from bandit_router.route.tokens import DecisionSigner
from bandit_router.serving.config import add_server_arguments, config_from_args
from bandit_router.store.redis_store import DecisionFlush, PendingDecision

ISSUER = DecisionSigner(b"k" * 32).issuer("exp", "inc1", "a", 0.5, 3, True)
TABLE = {"a": 0.5, "b": 0.5}


class FakeStore:
    """Writes flushes as ``lua/record_decisions.lua`` does (a writer's number at or below its
    last written one writes nothing). The first ``failures`` round trips fail like a Redis
    outage, the next ``lost_replies`` write and then fail (a reply lost to a timeout), and
    experiments in ``refusing`` get an error reply for their flush (e.g. OOM)."""

    def __init__(self, failures: int = 0, lost_replies: int = 0) -> None:
        self.flushes: list[DecisionFlush] = []
        self.sent: list[tuple[str, int]] = []
        self.last_number: dict[tuple[str, str], int] = {}
        self.failures = failures
        self.lost_replies = lost_replies
        self.refusing: set[str] = set()
        self.flushed = asyncio.Event()
        self.forgotten: list[tuple[str, list[str]]] = []

    async def record_decisions(
        self, writer: str, flushes: Sequence[DecisionFlush]
    ) -> list[BaseException | None]:
        self.sent += [(flush.experiment, flush.number) for flush in flushes]
        if self.failures:
            self.failures -= 1
            raise RedisConnectionError("redis is away")
        replies: list[BaseException | None] = []
        for flush in flushes:
            if flush.experiment in self.refusing:
                replies.append(OutOfMemoryError("OOM command not allowed"))
                continue
            if flush.number > self.last_number.get((writer, flush.experiment), 0):
                self.last_number[writer, flush.experiment] = flush.number
                self.flushes.append(flush)
            replies.append(None)
        self.flushed.set()
        if self.lost_replies:
            self.lost_replies -= 1
            raise TimeoutError("Timeout reading from socket")
        return replies

    async def forget_writer(self, writer: str, experiments: Sequence[str]) -> None:
        self.forgotten.append((writer, list(experiments)))


def record(recorder: DecisionRecorder, index: int, experiment: str = "exp") -> None:
    nonce = f"{index:024x}"
    decision_id = ISSUER.issue(1_000 + index, 601_000 + index, nonce)
    recorder.record(
        experiment,
        "inc1",
        "a",
        (decision_id, Reason.EXPLOIT, "", TABLE, None),
        PendingDecision(nonce, "a", 601_000 + index),
    )


def flushed_nonces(store: FakeStore, experiment: str = "exp") -> list[str]:
    nonces = []
    for flush in store.flushes:
        if flush.experiment != experiment:
            continue
        assert flush.incarnation == "inc1"
        logged = [record["nonce"] for record in decode(flush.log_data)]
        assert logged == [decision.nonce for decision in flush.pending]
        assert flush.counts == {"a": len(flush.pending)}
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


@pytest.mark.parametrize(
    "store",
    [FakeStore(failures=2), FakeStore(lost_replies=2)],
    ids=["failed before writing", "written but its reply lost"],
)
def test_a_failed_flush_is_sent_again_unchanged_and_written_once(store: FakeStore) -> None:
    asyncio.run(_failed_flush(store))


async def _failed_flush(store: FakeStore) -> None:
    recorder = DecisionRecorder(store, linger=0.01)  # type: ignore[arg-type]
    for index in range(5):
        record(recorder, index)
    while not store.sent:  # the first flush fails; more decisions arrive meanwhile
        await asyncio.sleep(0.005)
    for index in range(5, 9):  # these wait for a flush of their own, numbered after it
        record(recorder, index)
    assert await recorder.flush(timeout=5.0) == 0
    assert flushed_nonces(store) == [f"{index:024x}" for index in range(9)]
    first = store.sent[0]
    assert store.sent[:3] == [first] * 3  # the same flush, under its number, until answered
    assert store.sent[3:] == [("exp", first[1] + 1)]
    assert store.forgotten == [(recorder.writer, ["exp"])]  # nothing left to send again


def test_an_experiment_whose_flush_is_refused_holds_up_only_itself() -> None:
    asyncio.run(_refused_experiment())


async def _refused_experiment() -> None:
    store = FakeStore()
    store.refusing.add("full")
    recorder = DecisionRecorder(store, linger=0.01)  # type: ignore[arg-type]
    record(recorder, 0, "full")
    record(recorder, 1)
    await asyncio.sleep(0.1)  # "full" is retried; "exp" is written meanwhile
    record(recorder, 2, "full")  # waits behind the refused flush, in order
    record(recorder, 3)
    for _ in range(100):
        if len(flushed_nonces(store)) == 2:
            break
        await asyncio.sleep(0.02)
    assert flushed_nonces(store) == [f"{1:024x}", f"{3:024x}"]
    assert flushed_nonces(store, "full") == []
    store.refusing.clear()  # the store takes writes again
    assert await recorder.flush(timeout=5.0) == 0
    assert flushed_nonces(store, "full") == [f"{0:024x}", f"{2:024x}"]


def test_the_lingers_and_budgets_are_configurable() -> None:
    parser = argparse.ArgumentParser()
    add_server_arguments(parser)
    defaults = config_from_args(parser.parse_args([]))
    assert defaults.decision_linger == pytest.approx(0.025)
    assert defaults.sticky_lookup == pytest.approx(0.05)
    args = parser.parse_args(["--decision-linger-ms", "5", "--sticky-lookup-ms", "200"])
    assert config_from_args(args).decision_linger == pytest.approx(0.005)
    assert config_from_args(args).sticky_lookup == pytest.approx(0.2)
