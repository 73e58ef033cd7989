"""Decision logs: round trips, DSJSON export, and errors that name the line and field."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simulations.cli import main
from simulations.logs import (
    DecisionRecord,
    LogError,
    LoggedData,
    read_csv_log,
    read_decision_log,
    read_log,
    write_decision_log,
    write_dsjson,
)

RECORDS = [
    DecisionRecord(
        decision_id="d1",
        experiment="checkout",
        arm="b",
        propensity=0.25,
        reason="EXPLORE",
        time="2025-01-01T00:00:00Z",
        unit_id="u1",
        context={"hour": 3.0},
        state_version=7,
        reward=1.0,
        default_reward_applied=False,
        probabilities={"a": 0.75, "b": 0.25, "c": 0.0},
    ),
    DecisionRecord(
        decision_id="d2",
        experiment="checkout",
        arm="a",
        propensity=0.7,
        reason="EXPLOIT",
        time="2025-01-01T00:00:01Z",
        unit_id="u2",
        reward=None,
        probabilities={"a": 0.7, "b": 0.3, "c": 0.0},
    ),
]


def test_jsonl_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    write_decision_log(RECORDS, path)
    assert read_decision_log(path) == RECORDS
    data = LoggedData.from_records(read_log(path))
    assert data.arm_names == ("a", "b", "c")
    assert data.size == 1 and data.skipped == 1
    assert data.context_names == ("hour",)


def test_dsjson_export(tmp_path: Path) -> None:
    path = tmp_path / "log.dsjson"
    write_dsjson(RECORDS, path)
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert first["_label_cost"] == -1.0
    assert first["_label_probability"] == 0.25
    assert first["_label_Action"] == 2 and first["_labelIndex"] == 1
    assert first["a"] == [2, 1, 3]  # chosen first, then the others in arm order
    assert first["p"] == [0.25, 0.75, 0.0]
    assert first["c"]["hour"] == 3.0
    assert first["c"]["_multi"] == [{"arm": "a"}, {"arm": "b"}, {"arm": "c"}]
    assert first["EventId"] == "d1" and first["Version"] == "1"
    assert first["Timestamp"] == "2025-01-01T00:00:00Z"
    assert "_label_cost" not in second and second["o"] == []  # reward never observed


def test_csv_with_context(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("action,reward,propensity,age\nx,1,0.5,30\ny,0,0.5,41\nx,,0.5,22\n")
    records = read_csv_log(path)
    assert [r.arm for r in records] == ["x", "y", "x"]
    assert records[1].context == {"age": 41.0}
    assert records[2].reward is None


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        ("action,reward\nx,1\n", 1, "propensity"),
        ("reward,propensity\n1,0.5\n", 1, "action"),
        ("action,reward,propensity\nx,1,0.5\ny,1,0\n", 3, "propensity"),
        ("action,reward,propensity\nx,1,1.5\n", 2, "propensity"),
        ("action,reward,propensity\nx,1,abc\n", 2, "propensity"),
        ("action,reward,propensity\nx,yes,0.5\n", 2, "reward"),
        ("action,reward,propensity,age\nx,1,0.5,old\n", 2, "age"),
    ],
)
def test_bad_csv(tmp_path: Path, text: str, line: int, field: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(LogError) as caught:
        read_csv_log(path)
    assert (caught.value.line, caught.value.field) == (line, field)


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"propensity": 0.0}, "propensity"),
        ({"propensity": -0.1}, "propensity"),
        ({"propensity": 1.01}, "propensity"),
        ({"arm": None}, "arm"),
        ({"reward": "high"}, "reward"),
        ({"state_version": "7"}, "state_version"),
        ({"probabilities": {"a": 2.0}}, "probabilities.a"),
    ],
)
def test_bad_jsonl(tmp_path: Path, bad: dict[str, object], field: str) -> None:
    good = RECORDS[0].to_json()
    path = tmp_path / "bad.jsonl"
    lines = [json.dumps(good), "", json.dumps({**good, **bad})]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(LogError) as caught:
        read_decision_log(path)
    assert (caught.value.line, caught.value.field) == (3, field)


def test_invalid_json_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(RECORDS[0].to_json()) + "\n{oops\n")
    with pytest.raises(LogError) as caught:
        read_decision_log(path)
    assert caught.value.line == 2


def test_cli_replay_bad_log_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("action,reward,propensity\nx,1,0.5\ny,1,2\n")
    assert main(["replay", str(path), "--target", "uniform"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:3: propensity:" in err and "Traceback" not in err


def test_cli_replay_unknown_policy_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ok.csv"
    path.write_text("action,reward,propensity\nx,1,0.5\ny,1,0.5\n")
    assert main(["replay", str(path), "--target", "softmax"]) == 2
    assert "--target" in capsys.readouterr().err


def test_cli_replay_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    records = [
        DecisionRecord(
            decision_id=str(i),
            experiment="e",
            arm=str(arm),
            propensity=0.5,
            reward=float(rng.random() < (0.7 if arm == "a" else 0.3)),
            probabilities={"a": 0.5, "b": 0.5},
        )
        for i, arm in enumerate(rng.choice(["a", "b"], size=400))
    ]
    log = tmp_path / "log.jsonl"
    write_decision_log(records, log)
    out_json = tmp_path / "estimates.json"
    status = main(
        ["replay", str(log), "--target", "arm:a", "--target", "thompson", "--json", str(out_json)]
    )
    assert status == 0
    summary = json.loads(out_json.read_text())
    assert [t["target"] for t in summary["targets"]] == ["arm:a", "thompson"]
    assert set(summary["targets"][0]["estimates"]) == {"replay", "ips", "snips", "dr"}
    assert "arm:a" in capsys.readouterr().out
