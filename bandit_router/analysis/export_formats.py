"""Exported decision records to files: JSON lines (our documented format) or VW DSJSON.

The canonical reader and writers live in ``simulations.logs`` so that what the service
exports is exactly what replay reads; this module only converts protobuf records to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from bandit_router.v1 import admin_pb2, experiment_pb2
from simulations.logs import DecisionRecord, write_decision_log, write_dsjson


def record_of(message: admin_pb2.DecisionRecord) -> DecisionRecord:
    when = datetime.fromtimestamp(message.time.seconds + message.time.nanos / 1e9, UTC)
    return DecisionRecord(
        decision_id=message.decision_id,
        experiment=message.experiment,
        arm=message.arm,
        propensity=message.propensity,
        reason=experiment_pb2.Reason.Name(message.reason).removeprefix("REASON_"),
        time=when.isoformat().replace("+00:00", "Z"),
        unit_id=message.unit_id,
        context=dict(message.context),
        state_version=message.state_version,
        reward=message.reward if message.HasField("reward") else None,
        default_reward_applied=message.default_reward_applied,
        probabilities=dict(message.probabilities),
        probabilities_complete=message.probabilities_complete,
        features=list(message.features),
        attributes=dict(message.attributes),
        metrics=dict(message.metrics),
    )


def write_records(messages: Sequence[admin_pb2.DecisionRecord], fmt: str, out: str) -> int:
    records = [record_of(message) for message in messages]
    path = "/dev/stdout" if out == "-" else out
    if fmt == "dsjson":
        write_dsjson(records, path)
    else:
        write_decision_log(records, path)
    return len(records)
