"""Sticky assignments: the first valid one stored wins, and a replica that decided afresh
(its look-up timed out) adopts it instead of overwriting it."""

from __future__ import annotations

import asyncio
import time

from bandit_router.model.experiments import Arm, Experiment, PolicySpec
from bandit_router.route.sticky import StickyStore
from bandit_router.store.redis_store import Store

ARMS = ("a", "b", "c")


async def _replicas() -> tuple[Store, StickyStore, StickyStore, str]:
    store = Store.from_url(None)
    experiment = await store.create_experiment(
        Experiment("sticky", tuple(Arm(arm) for arm in ARMS), PolicySpec("thompson", {}))
    )
    return store, StickyStore(store), StickyStore(store), experiment.incarnation


async def _settle(*replicas: StickyStore) -> None:
    for replica in replicas:
        await asyncio.gather(*replica._tasks)


def test_a_fresh_decision_does_not_overwrite_a_valid_assignment() -> None:
    async def scenario() -> None:
        _, first, second, incarnation = await _replicas()
        now = time.time()
        first.assign("sticky", incarnation, "u1", "a", 0.4, now + 600, False, ARMS)
        await _settle(first)
        # The second replica's look-up timed out: it decided "b" and tries to store it.
        second.assign("sticky", incarnation, "u1", "b", 0.3, now + 600, False, ARMS)
        assert second.get("sticky", incarnation, "u1", now) == ("b", 0.3, False)
        await _settle(second)
        assert second.get("sticky", incarnation, "u1", now) == ("a", 0.4, False)
        third = StickyStore(second.store)
        await third.lookup("sticky", incarnation, "u1", now)
        assert third.get("sticky", incarnation, "u1", now) == ("a", 0.4, False)

    asyncio.run(scenario())


def test_an_expired_or_inactive_assignment_is_replaced() -> None:
    async def scenario() -> None:
        _, first, second, incarnation = await _replicas()
        now = time.time()
        first.assign("sticky", incarnation, "old", "a", 0.4, now - 1, False, ARMS)
        first.assign("sticky", incarnation, "off", "c", 0.2, now + 600, False, ARMS)
        await _settle(first)
        second.assign("sticky", incarnation, "old", "b", 0.3, now + 600, False, ARMS)
        second.assign("sticky", incarnation, "off", "b", 0.5, now + 600, False, ("a", "b"))
        await _settle(second)
        reader = StickyStore(second.store)
        for unit in ("old", "off"):
            await reader.lookup("sticky", incarnation, unit, now)
        assert reader.get("sticky", incarnation, "old", now) == ("b", 0.3, False)
        assert reader.get("sticky", incarnation, "off", now) == ("b", 0.5, False)

    asyncio.run(scenario())


def test_a_holdout_assignment_keeps_its_flag() -> None:
    async def scenario() -> None:
        _, first, second, incarnation = await _replicas()
        now = time.time()
        first.assign("sticky", incarnation, "h1", "a", 1.0, now + 600, True, ARMS)
        await _settle(first)
        second.assign("sticky", incarnation, "h1", "b", 0.3, now + 600, False, ARMS)
        await _settle(second)
        assert second.get("sticky", incarnation, "h1", now) == ("a", 1.0, True)

    asyncio.run(scenario())
