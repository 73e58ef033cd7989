"""The decision log as records: decisions joined with their rewards, in the export format.

The stream holds decision events and reward events (real or default) in commit order; a
record is a decision with its reward, if any arrived. Records are what ``bandit-router
export`` writes as JSON lines or Vowpal Wabbit DSJSON, and what replay reads.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from .convert import timestamp_of
from .errors import InvalidArgument
from .experiments import check_name
from .store import Store
from .v1 import admin_pb2

CHUNK = 1000


async def decision_records(
    store: Store, experiment: str, since_ms: int = 0, limit: int = 0
) -> AsyncIterator[admin_pb2.DecisionRecord]:
    check_name(experiment, "experiment")
    if limit < 0:
        raise InvalidArgument("must not be negative", "limit")
    await store.require_experiment(experiment)
    records: dict[str, admin_pb2.DecisionRecord] = {}
    order: list[str] = []
    start = f"{since_ms}-0" if since_ms else "-"
    while True:
        entries = await store.read_decision_log(experiment, start, CHUNK)
        for _, fields in entries:
            kind = fields.get("type", "decision")
            nonce = fields.get("nonce", "")
            if kind == "decision":
                records[nonce] = admin_pb2.DecisionRecord(
                    decision_id=fields.get("decision_id", ""),
                    experiment=experiment,
                    arm=fields.get("arm", ""),
                    propensity=float(fields.get("propensity", 0.0)),
                    reason=f"REASON_{fields.get('reason', 'UNSPECIFIED')}",
                    time=timestamp_of(float(fields.get("ts", 0.0))),
                    unit_id=fields.get("unit_id", ""),
                    state_version=int(fields.get("state_version", 0)),
                    context=json.loads(fields["context"]) if fields.get("context") else {},
                    probabilities=json.loads(fields["probabilities"])
                    if fields.get("probabilities")
                    else {},
                )
                order.append(nonce)
            elif nonce in records:
                records[nonce].reward = float(fields.get("reward", 0.0))
                records[nonce].default_reward_applied = kind == "default"
        if len(entries) < CHUNK:
            break
        start = "(" + entries[-1][0]
    for index, nonce in enumerate(order):
        if limit and index >= limit:
            break
        yield records[nonce]
