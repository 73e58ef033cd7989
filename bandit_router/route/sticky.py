"""Sticky assignment: the same unit keeps the same arm for a while, on every replica.

Assignments live in Redis (one hash per experiment) so all replicas agree, and in a small
per-replica LRU so a returning unit costs no round trip. The first request of a unit on a
replica that has not seen it costs one bounded HGET: that is the price of stickiness across
replicas, paid only by experiments that turn it on. The logged propensity of a sticky
decision is the one of the original assignment, which is what off-policy evaluation needs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from bandit_router.store.errors import STORE_ERRORS
from bandit_router.store.keys import ExperimentKeys
from bandit_router.store.redis_store import Store

log = logging.getLogger(__name__)

LOCAL_CAPACITY = 100_000
#: How long a unit's first Route on a replica waits for its assignment in Redis by default
#: (``--sticky-lookup-ms``); past it the policy decides, and the unit may change arm.
LOOKUP_TIMEOUT = 0.05


class StickyStore:
    def __init__(self, store: Store, *, lookup_timeout: float = LOOKUP_TIMEOUT) -> None:
        self.store = store
        self.lookup_timeout = lookup_timeout
        self._local: OrderedDict[tuple[str, str, str], tuple[str, float, float, bool]] = (
            OrderedDict()
        )
        self._tasks: set[asyncio.Task[Any]] = set()

    def get(
        self, experiment: str, incarnation: str, unit_id: str, now: float
    ) -> tuple[str, float, bool] | None:
        """(arm, propensity of the original assignment, whether it was a holdout) or None."""
        held = self._local.get((experiment, incarnation, unit_id))
        if held is None:
            return None
        arm, propensity, expires, holdout = held
        if now >= expires:
            del self._local[(experiment, incarnation, unit_id)]
            return None
        return arm, propensity, holdout

    async def lookup(self, experiment: str, incarnation: str, unit_id: str, now: float) -> None:
        """Load a unit's assignment from Redis into the local cache (bounded wait)."""
        if (experiment, incarnation, unit_id) in self._local:
            return
        try:
            raw = await asyncio.wait_for(
                self.store.client.hget(
                    ExperimentKeys(experiment).sticky, f"{incarnation}|{unit_id}"
                ),
                self.lookup_timeout,
            )
        except STORE_ERRORS:
            return  # Route never fails because of stickiness: the policy decides instead
        if raw:
            self._adopt(experiment, incarnation, unit_id, str(raw), now)

    def _remember(
        self,
        experiment: str,
        incarnation: str,
        unit_id: str,
        arm: str,
        propensity: float,
        expires: float,
        holdout: bool,
    ) -> None:
        self._local[(experiment, incarnation, unit_id)] = (arm, propensity, expires, holdout)
        self._local.move_to_end((experiment, incarnation, unit_id))
        if len(self._local) > LOCAL_CAPACITY:
            self._local.popitem(last=False)

    def assign(
        self,
        experiment: str,
        incarnation: str,
        unit_id: str,
        arm: str,
        propensity: float,
        expires: float,
        holdout: bool = False,
        active_arms: Sequence[str] = (),
    ) -> None:
        """Remember a fresh assignment here and store it, unless Redis holds a valid one
        (``active_arms``: the arms an assignment may still name); then adopt that one."""
        self._remember(experiment, incarnation, unit_id, arm, propensity, expires, holdout)
        value = f"{arm}|{propensity!r}|{expires!r}|{'h' if holdout else 'b'}"
        task = asyncio.get_running_loop().create_task(
            self._write(experiment, incarnation, unit_id, value, expires, active_arms or (arm,))
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(
        self,
        experiment: str,
        incarnation: str,
        unit_id: str,
        value: str,
        expires: float,
        active_arms: Sequence[str],
    ) -> None:
        now = time.time()
        try:
            kept = await self.store.assign_sticky(
                experiment,
                f"{incarnation}|{unit_id}",
                value,
                now,
                max(1, int(expires - now) + 60),
                active_arms,
            )
        except STORE_ERRORS as error:
            log.warning("sticky assignment not stored: %s", error)
            return
        if kept is not None:  # another decision got there first: follow it from now on
            self._adopt(experiment, incarnation, unit_id, kept, now)

    def _adopt(
        self, experiment: str, incarnation: str, unit_id: str, stored: str, now: float
    ) -> None:
        """Remember an assignment as stored in Redis (``assign``'s format), unless expired."""
        arm, propensity, expires, *flags = stored.split("|")
        if float(expires) > now:
            self._remember(
                experiment,
                incarnation,
                unit_id,
                arm,
                float(propensity),
                float(expires),
                flags == ["h"],
            )

    def observe(self, old: Any, new: Any) -> None:
        """Forget local assignments to arms that are no longer active."""
        if old is None or old.active == new.active:
            return
        name = new.experiment.name
        active = {new.experiment.arm_names[i] for i in new.active}
        for key in [k for k, v in self._local.items() if k[0] == name and v[0] not in active]:
            del self._local[key]
