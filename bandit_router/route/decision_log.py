"""The decision log's stream format, written and read in this one place.

A flush of decisions is one stream entry whose ``data`` is a compact JSON document:

    {"v": 3, "probabilities": [{"a": 0.7, "b": 0.3}, ...],
     "decisions": [[decision_id, reason, unit_id, probabilities_index(, context
                    (, features, attributes))], ...]}

Why this shape: encoding the log was the largest single cost of recording a decision. A
decision id already carries the arm, propensity, time, state version and nonce (signed), so a
row repeats none of them; and every decision taken from the same cached state shares one
probability table, so a flush writes each table once rather than once per decision.
``decode`` expands rows back into the full records that exports, reports and replay read, and
still reads version 1 (a JSON array of full records) written by earlier releases.

Since version 3 a table is the law of the whole decision procedure (pins, pause, sticky
units, holdout, burn-in, floor and policy together; ``router``): an arm it does not name had
probability 0, so replay can tell where a target lacks support. Records of version 3 say so
with ``probabilities_complete``; version 2 tables held the law within the decision's rule
(e.g. only the held arm of a sticky unit), so replay cannot check support on them.

A decision of an experiment that declares ``context_features`` adds the feature vector it
used (``[1, ...]``, ``Experiment.feature_columns``) and its categorical attributes; its
table is its own (a contextual policy's law depends on the features), and still names the
probability of every eligible arm, so replay can evaluate any contextual target.

Since version 4 a contextual row writes ``null`` for its feature vector: the decision id
already carries it, exactly (``route.features.encode_features``, shortest round-trip
digits), so ``decode`` reads it from there. Sixteen numbers written twice were a third of
the cost of encoding a contextual row. Version 3 rows carry the list and still read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from bandit_router.route.features import decode_features
from bandit_router.route.tokens import parse_unverified

FORMAT_VERSION = 4
#: The first version whose tables are whole-procedure laws.
COMPLETE_SINCE = 3

#: One decision as Route hands it to the recorder:
#: (decision id, reason, unit id, P(arm) under the whole procedure, context or None), and
#: for experiments that declare context_features also (feature vector, attributes).
PlainRow = tuple[str, str, str, Mapping[str, float], Mapping[str, float] | None]
#: The feature vector is None for a contextual policy's decision (its id carries it), the
#: vector for a plain policy that declares context_features, [] when only attributes are logged.
FeatureRow = tuple[
    str,
    str,
    str,
    Mapping[str, float],
    Mapping[str, float] | None,
    list[float] | None,
    dict[str, str],
]
LogRow = PlainRow | FeatureRow


def encode(rows: Sequence[LogRow]) -> str:
    """One flush as the ``data`` of its stream entry ('' when there is nothing to log)."""
    if not rows:
        return ""
    # Tables are shared by identity: the cache hands out one mapping per (state, eligible
    # arms), so this finds the sharing without comparing contents.
    table_of: dict[int, int] = {}
    tables: list[Mapping[str, float]] = []
    decisions: list[list[Any]] = []
    for row in rows:
        decision_id, reason, unit_id, probabilities, context = row[:5]
        index = table_of.get(id(probabilities))
        if index is None:
            index = table_of[id(probabilities)] = len(tables)
            tables.append(probabilities)
        if len(row) > 5:
            decisions.append([decision_id, reason, unit_id, index, context or {}, *row[5:]])
        elif context:
            decisions.append([decision_id, reason, unit_id, index, context])
        else:
            decisions.append([decision_id, reason, unit_id, index])
    return json.dumps(
        {"v": FORMAT_VERSION, "probabilities": tables, "decisions": decisions},
        separators=(",", ":"),
    )


def decode(data: str) -> list[dict[str, Any]]:
    """The full records of one flush: decision_id, nonce, arm, propensity (the rule's, as
    Route answered), reason, ts (unix seconds), unit_id, state_version, probabilities,
    probabilities_complete and, when given, context, features and attributes."""
    if not data:
        return []
    document = json.loads(data)
    if isinstance(document, list):  # version 1: full records already
        return [dict(record) for record in document]
    tables = document.get("probabilities", [])
    complete = int(document.get("v", 2)) >= COMPLETE_SINCE
    records = []
    for row in document.get("decisions", []):
        decision_id, reason, unit_id, index = row[:4]
        decision = parse_unverified(decision_id)
        record: dict[str, Any] = {
            "decision_id": decision_id,
            "nonce": decision.nonce,
            "arm": decision.arm,
            "propensity": decision.propensity,
            "reason": reason,
            "ts": decision.issued_ms / 1000.0,
            "unit_id": unit_id,
            "state_version": decision.state_version,
            "probabilities": dict(tables[index]),
            "probabilities_complete": complete,
        }
        if len(row) > 4 and row[4]:
            record["context"] = dict(row[4])
        if len(row) > 6:
            if row[5] is None:  # version 4: the id's features, exactly as decided
                if decision.features:  # (always, for rows this module wrote)
                    record["features"] = decode_features(decision.features)[2]
            elif row[5]:
                record["features"] = [float(v) for v in row[5]]
            if row[6]:
                record["attributes"] = {str(k): str(v) for k, v in row[6].items()}
        records.append(record)
    return records
