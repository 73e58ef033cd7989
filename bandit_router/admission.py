"""Admission control for the hot path: shed excess calls at once instead of queueing them.

A grpc.aio server never refuses work by itself: calls wait inside gRPC until the event loop
takes them, so under overload every call gets slower until most expire, and the server
then spends its time on answers nobody waits for (512 callers with 100 ms deadlines: 82% of
calls expired and useful throughput fell by half). grpc.aio's ``maximum_concurrent_rpcs``
counts only handlers already running and stops taking calls rather than refusing them.

Where the queue forms: grpc.aio takes one call at a time from gRPC's C core, so under
overload the backlog waits in the core, unseen by Python. ``--max-pending-rpcs`` bounds it
there (gRPC's ``grpc.server.max_pending_requests``: random early refusal above the limit,
all above 4x), at no cost to the event loop. gRPC answers those refusals CANCELLED, not
RESOURCE_EXHAUSTED (grpc/grpc#41785, the same path as calls pending at shutdown); the
clients here retry CANCELLED on Router, with gRPC's retry throttling.

Then three checks in Python, each before any work is done:

* **Expired deadline**: a call whose deadline already passed is answered
  DEADLINE_EXCEEDED without being handled (its caller has gone).
* **Work in progress**: at most ``max_concurrent`` handlers at once (a Reward waiting for
  its group commit counts); the excess hears RESOURCE_EXHAUSTED.
* **Queueing delay**: the loop's lag (how late a timer that should fire every
  ``PROBE_INTERVAL`` runs) is what a new call waits before its handler starts. While it is
  above ``target_delay``, the share of calls admitted is cut multiplicatively, and once it
  is below, restored additively (AIMD, as TCP's congestion window and Netflix's
  concurrency-limits AIMD limit do). Refusals are random draws against that share, so the
  admitted calls are an unbiased sample of the traffic.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

PROBE_INTERVAL = 0.005
#: Share admitted after one probe above the target: x0.8; each probe below: +0.02.
DECREASE = 0.8
INCREASE = 0.02
MIN_SHARE = 0.02


@dataclass
class Admission:
    max_concurrent: int
    target_delay: float
    rng: random.Random = field(default_factory=random.Random)
    in_flight: int = 0
    share: float = 1.0
    lag: float = 0.0

    def refusal(self, time_remaining: float | None) -> str | None:
        """Why this call must not start (``expired``, ``concurrency``, ``queue``), or None:
        then the caller must call ``release`` once the call is done."""
        if time_remaining is not None and time_remaining <= 0:
            return "expired"
        if self.in_flight >= self.max_concurrent:
            return "concurrency"
        if self.share < 1.0 and self.rng.random() >= self.share:
            return "queue"
        self.in_flight += 1
        return None

    def release(self) -> None:
        self.in_flight -= 1

    def observe_lag(self, lag: float) -> None:
        """One probe's lateness: adjust the admitted share (AIMD)."""
        self.lag = lag
        if lag > self.target_delay:
            self.share = max(MIN_SHARE, self.share * DECREASE)
        elif self.share < 1.0:
            self.share = min(1.0, self.share + INCREASE)

    async def watch_loop(self) -> None:
        """Measure the event loop's lag every PROBE_INTERVAL, for as long as the server runs."""
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + PROBE_INTERVAL
            await asyncio.sleep(PROBE_INTERVAL)
            self.observe_lag(max(0.0, loop.time() - expected))
