"""The decision log as records: decisions joined with their rewards, in the export format.

The stream holds decision events and reward events (real or default) in commit order; a
record is a decision with its reward, if any arrived, and the named metrics that reward
carried. Decisions are written a linger after
they are made, so a prompt reward can precede its decision in the stream: rewards are kept
by nonce until their decision shows up. Records are what ``bandit-router export`` writes as
JSON lines or Vowpal Wabbit DSJSON, and what replay reads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from bandit_router.errors import InvalidArgument
from bandit_router.model.convert import timestamp_of
from bandit_router.model.experiments import check_name
from bandit_router.model.metrics import decode_metrics
from bandit_router.route.decision_log import decode
from bandit_router.store.redis_store import Store
from bandit_router.v1 import admin_pb2

CHUNK = 1000
#: The latest ``since`` accepted: 9999-12-31T23:59:59Z, protobuf Timestamp's own maximum.
MAX_SINCE_MS = 253_402_300_799_000


def record_of(experiment: str, decision: dict[str, Any]) -> admin_pb2.DecisionRecord:
    """A logged decision (one record of ``decision_log.decode``) as an export record.

    Its propensity is the one off-policy evaluation needs: the chosen arm's probability under
    the whole decision procedure where the log has it (``probabilities_complete``), else the
    propensity Route answered (the rule's; logs written before the whole law was logged).
    """
    arm = str(decision.get("arm", ""))
    probabilities = {str(k): float(v) for k, v in (decision.get("probabilities") or {}).items()}
    complete = bool(decision.get("probabilities_complete", False)) and arm in probabilities
    return admin_pb2.DecisionRecord(
        decision_id=str(decision.get("decision_id", "")),
        experiment=experiment,
        arm=arm,
        propensity=probabilities[arm] if complete else float(decision.get("propensity", 0.0)),
        reason=f"REASON_{decision.get('reason', 'UNSPECIFIED')}",
        time=timestamp_of(float(decision.get("ts", 0.0))),
        unit_id=str(decision.get("unit_id", "")),
        state_version=int(decision.get("state_version", 0)),
        context={str(k): float(v) for k, v in (decision.get("context") or {}).items()},
        probabilities=probabilities,
        probabilities_complete=complete,
        features=[float(v) for v in decision.get("features") or ()],
        attributes={str(k): str(v) for k, v in (decision.get("attributes") or {}).items()},
    )


def _credit(
    record: admin_pb2.DecisionRecord, value: float, default: bool, metrics: dict[str, float]
) -> None:
    """A reward event on its decision: a later one (a late real reward after the default)
    replaces the value and, with them, the metrics."""
    record.reward, record.default_reward_applied = value, default
    record.metrics.clear()
    record.metrics.update(metrics)


async def decision_records(
    store: Store, experiment: str, since_ms: int = 0, limit: int = 0
) -> AsyncIterator[admin_pb2.DecisionRecord]:
    check_name(experiment, "experiment")
    if limit < 0:
        raise InvalidArgument("must not be negative", "limit")
    if not 0 <= since_ms <= MAX_SINCE_MS:
        # Checked here, not by Redis: a stream id out of range is a client's mistake, and
        # Redis's own error text would reach the caller as UNKNOWN.
        raise InvalidArgument(
            f"must be between 1970-01-01 and 9999-12-31, got {since_ms // 1000} seconds", "since"
        )
    await store.require_experiment(experiment)
    records: dict[str, admin_pb2.DecisionRecord] = {}
    order: list[str] = []
    # rewards ahead of their decision, by nonce: (value, default, metrics)
    early: dict[str, tuple[float, bool, dict[str, float]]] = {}
    start = f"{since_ms}-0" if since_ms else "-"
    while True:
        entries = await store.read_decision_log(experiment, start, CHUNK)
        for _, fields in entries:
            kind = fields.get("type", "")
            if kind == "decisions":
                for decision in decode(fields.get("data", "")):
                    nonce = decision.get("nonce", "")
                    made = records[nonce] = record_of(experiment, decision)
                    order.append(nonce)
                    if nonce in early:
                        _credit(made, *early.pop(nonce))
            elif kind in ("reward", "default"):
                nonce = fields.get("nonce", "")
                reward = (
                    float(fields.get("reward", 0.0)),
                    kind == "default",
                    decode_metrics(fields.get("metrics", "")),
                )
                known = records.get(nonce)
                if known is None:
                    early[nonce] = reward
                else:
                    _credit(known, *reward)
        if len(entries) < CHUNK:
            break
        start = "(" + entries[-1][0]
    for index, nonce in enumerate(order):
        if limit and index >= limit:
            break
        yield records[nonce]
