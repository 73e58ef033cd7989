"""Admission control for the hot path: refuse what cannot be served well, before any work.

A grpc.aio server never refuses work by itself: calls wait until the event loop takes them,
so under overload every call gets slower until most expire, and the server then spends its
time on answers nobody waits for (512 callers with 100 ms deadlines: 82% of calls expired
and useful throughput fell by half). Two checks in Python, before a handler runs:

* **Expired deadline**: a call whose deadline already passed is answered
  DEADLINE_EXCEEDED without being handled (its caller has gone).
* **Work in progress**: at most ``max_concurrent`` Route/Reward handlers at once (a
  Reward waiting for its group commit counts); the excess hears RESOURCE_EXHAUSTED at once.

Where the backlog of an overload waits: grpc.aio takes one call at a time from gRPC's C
core, so excess calls queue in the core, unseen by Python (a probe of the event loop's lag
stays low while they wait there; shedding on it refused calls during harmless stalls and
missed the real queue). ``--max-pending-rpcs`` bounds that queue in the core itself
(gRPC's ``grpc.server.max_pending_requests``: random early refusal above the limit, all
above 3x), off the event loop: at 512 callers with 100 ms deadlines, a limit of 64 kept
goodput at 0.88x capacity, gRPC's default of 1000 let it fall to 0.10x (README,
Overload). gRPC answers those refusals CANCELLED, not RESOURCE_EXHAUSTED (grpc/grpc#41785,
the same path as calls pending at shutdown); the clients here retry CANCELLED on Router.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

_monotonic = time.monotonic


@dataclass
class Admission:
    max_concurrent: int
    in_flight: int = 0
    #: ``time.monotonic()`` when the last Route/Reward reached admission: shutdown waits for
    #: a quiet moment, so calls already queued inside gRPC are taken, not cancelled.
    last_arrival: float = 0.0

    def refusal(self, time_remaining: float | None) -> str | None:
        """Why this call must not start (``expired``, ``concurrency``), or None: then the
        caller must call ``release`` once the call is done."""
        self.last_arrival = _monotonic()
        if time_remaining is not None and time_remaining <= 0:
            return "expired"
        if self.in_flight >= self.max_concurrent:
            return "concurrency"
        self.in_flight += 1
        return None

    def release(self) -> None:
        self.in_flight -= 1
