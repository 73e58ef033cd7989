"""The decision log's stream format: compact on write, full records on read, old entries kept."""

from __future__ import annotations

import hmac
import json

import pytest

from bandit_router.errors import InvalidArgument
from bandit_router.route.decision_log import FORMAT_VERSION, decode, encode
from bandit_router.route.features import encode_features
from bandit_router.route.tokens import Decision, DecisionSigner, new_nonce

SIGNER = DecisionSigner(b"k" * 32)


def issue(arm: str, propensity: float, issued_ms: int, state_version: int = 7) -> str:
    return SIGNER.issue(
        Decision(
            "exp",
            "inc1",
            arm,
            propensity,
            issued_ms,
            issued_ms + 60_000,
            state_version,
            True,
            new_nonce(),
        )
    )


def test_rows_round_trip_to_full_records_sharing_one_probability_table() -> None:
    shared = {"a": 0.25, "b": 0.75}
    uniform = {"a": 0.5, "b": 0.5}
    ids = [issue("b", 0.75, 1_700_000_000_123), issue("a", 0.25, 1_700_000_000_456)]
    ids.append(issue("a", 0.5, 1_700_000_000_789, state_version=8))
    rows = [
        (ids[0], "EXPLOIT", "u1", shared, None),
        (ids[1], "EXPLORE", "", shared, {"x": 1.5}),
        (ids[2], "HOLDOUT", "u3", uniform, None),
    ]
    data = encode(rows)
    document = json.loads(data)
    assert document["v"] == FORMAT_VERSION
    assert document["probabilities"] == [shared, uniform]  # each table written once
    records = decode(data)
    assert [r["decision_id"] for r in records] == ids
    assert [r["arm"] for r in records] == ["b", "a", "a"]
    assert [r["propensity"] for r in records] == [0.75, 0.25, 0.5]
    assert [r["reason"] for r in records] == ["EXPLOIT", "EXPLORE", "HOLDOUT"]
    assert [r["unit_id"] for r in records] == ["u1", "", "u3"]
    assert [r["state_version"] for r in records] == [7, 7, 8]
    assert records[0]["ts"] == pytest.approx(1_700_000_000.123)
    assert [r["nonce"] for r in records] == [i.split("~")[9] for i in ids]
    assert records[1]["context"] == {"x": 1.5}
    assert "context" not in records[0]
    assert records[2]["probabilities"] == uniform
    assert all(r["probabilities_complete"] for r in records)  # whole-procedure laws (v3)


def test_nothing_to_log_is_an_empty_string() -> None:
    assert encode([]) == ""
    assert decode("") == []


def test_version_one_entries_still_read() -> None:
    old = [{"decision_id": "x", "nonce": "n", "arm": "a", "propensity": 1.0, "ts": 1.0}]
    assert decode(json.dumps(old)) == old


def test_nonces_are_96_bit_hex_and_distinct() -> None:
    nonces = {new_nonce() for _ in range(10_000)}
    assert len(nonces) == 10_000
    assert all(len(n) == 24 and int(n, 16) >= 0 for n in nonces)


def test_decision_ids_verify_and_reject_tampering_in_both_versions() -> None:
    decision = Decision(
        "exp", "inc1", "b", 0.25, 1_700_000_000_000, 1_700_000_060_000, 3, True, new_nonce()
    )
    token = SIGNER.issue(decision)
    assert token.startswith("2~")
    assert SIGNER.verify(token) == decision
    # An id issued by version 1 (HMAC-SHA256) before an upgrade still verifies.
    payload = "1~" + token[2:].rpartition("~")[0]
    legacy = f"{payload}~{hmac.digest(b'k' * 32, payload.encode(), 'sha256')[:16].hex()}"
    assert SIGNER.verify(legacy) == decision
    for bad in (
        token.replace("~b~", "~a~"),  # another arm, same signature
        legacy.replace("~b~", "~a~"),
        "1" + token[1:],  # a version 2 MAC presented as version 1
        DecisionSigner(b"x" * 32).issue(decision),  # another deployment's secret
    ):
        with pytest.raises(InvalidArgument, match="signature mismatch"):
            SIGNER.verify(bad)


def test_version_two_tables_are_not_taken_for_whole_procedure_laws() -> None:
    """Version 2 logged a sticky unit's table as {held arm: assignment propensity} and a
    holdout's within its rule: replay must not check support against such tables."""
    decision_id = issue("b", 0.25, 1_700_000_000_000)
    data = json.dumps(
        {"v": 2, "probabilities": [{"b": 0.25}], "decisions": [[decision_id, "STICKY", "u", 0]]}
    )
    (record,) = decode(data)
    assert record["probabilities"] == {"b": 0.25}
    assert record["probabilities_complete"] is False


def test_contextual_rows_read_their_features_from_the_id_and_version_three_still_reads() -> None:
    """A contextual Route logs ``null`` for its vector (version 4): the id carries it, in
    shortest round-trip digits, so the record's features are the decided ones exactly. A
    plain policy that only logs features (no vector in its id) writes the list, as version 3
    rows did for every contextual decision."""
    x = [1.0, 0.1, -2.5e-17, 1 / 3, 0.0]
    decision_id = SIGNER.issue(
        Decision(
            "exp",
            "inc1",
            "a",
            0.4,
            1_700_000_000_000,
            1_700_000_060_000,
            3,
            True,
            new_nonce(),
            features=encode_features("space1", 0.25, x),
        )
    )
    law = {"a": 0.4, "b": 0.6}
    plain_id = issue("b", 0.5, 1_700_000_000_001)
    rows = [
        (decision_id, "EXPLORE", "", law, {"f": 0.1}, None, {"tier": "gold"}),
        (plain_id, "EXPLOIT", "", law, {"f": 0.1}, [1.0, 0.1], {}),
    ]
    data = encode(rows)
    assert json.loads(data)["decisions"][0][5] is None
    contextual, plain = decode(data)
    assert contextual["features"] == x and contextual["attributes"] == {"tier": "gold"}
    assert plain["features"] == [1.0, 0.1]
    old = json.dumps(
        {"v": 3, "probabilities": [law], "decisions": [[decision_id, "EXPLORE", "", 0, {}, x, {}]]}
    )
    assert decode(old)[0]["features"] == x
