"""Guardrails, metrics and the objective in experiment files, and the guardrail state that the
service keeps whatever a file says (unit tests: no server).

A file is read into the domain objects (``model.metrics``, ``model.guardrails``) and written
back by ``experiment_to_mapping``: ``get -o yaml | apply -f -`` must change nothing, every bad
value must name its path, and an arm's quarantine is the service's state, which re-applying a
file neither clears nor sets (``convert.keep_guardrail_state``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import yaml
from google.protobuf.field_mask_pb2 import FieldMask

from bandit_router.cli import experiment_document
from bandit_router.errors import InvalidArgument
from bandit_router.model.convert import experiment_of, experiment_to_pb, merge_update
from bandit_router.model.experiments import Arm, ArmState, Experiment
from bandit_router.model.guardrails import ArmGuardrail, Override
from bandit_router.operations.experiment_files import (
    experiment_from_mapping,
    experiment_to_mapping,
    experiments_from_text,
)
from bandit_router.v1 import experiment_pb2 as pb

FILE = """
experiments:
  - name: llm
    arms: [small, {name: large, guardrail_override: hold_active}, mid]
    policy: gaussian_thompson
    metrics:
      - {name: quality, kind: continuous, min: 0, max: 1}
      - {name: latency_ms, min: 0, direction: minimize}
      - {name: cost_usd, min: 0, max: 0.1, direction: minimize}
      - {name: error, kind: binary, direction: minimize}
    objective:
      weights: {quality: 1, cost_usd: -5}
      constraints:
        - {metric: cost_usd, max_mean: 0.02, confidence: 0.9}
        - {metric: quality, min_mean: 0.5}
    guardrails:
      - {metric: error, statistic: rate, max: 0.05, window: 5m, min_samples: 100}
      - {metric: latency_ms, statistic: quantile, quantile: 0.99, max: 500, probe_share: 0.02}
      - {metric: quality, min: 0.3, confidence: 0.99}
    fallback_arm: small
"""


def llm() -> Experiment:
    return experiments_from_text(FILE, "llm.yaml")[0]


def test_every_key_is_read() -> None:
    experiment = llm()
    assert [m.name for m in experiment.metrics] == ["quality", "latency_ms", "cost_usd", "error"]
    assert experiment.objective is not None
    assert dict(experiment.objective.weights) == {"quality": 1.0, "cost_usd": -5.0}
    assert [c.describe() for c in experiment.constraints] == [
        "mean cost_usd <= 0.02",
        "mean quality >= 0.5",
    ]
    assert experiment.constraints[0].confidence == 0.9
    rate, p99, mean = experiment.guardrails
    assert (rate.describe(), rate.window, rate.min_samples) == ("error rate <= 0.05", 300.0, 100)
    assert (p99.describe(), p99.probe_share) == ("latency_ms p99 <= 500", 0.02)
    assert (mean.describe(), mean.confidence) == ("quality mean >= 0.3", 0.99)
    assert experiment.fallback_arm == "small"
    assert experiment.arms[1].override is Override.HOLD_ACTIVE


def test_file_proto_and_json_forms_carry_the_same_experiment() -> None:
    experiment = llm()
    mapping = experiment_to_mapping(experiment)
    assert mapping["guardrails"][0] == {
        "metric": "error",
        "statistic": "rate",
        "max": 0.05,
        "window": "5m",
        "min_samples": 100,
    }
    assert mapping["arms"][1] == {
        "name": "large",
        "state": "active",
        "guardrail_override": "hold_active",
    }
    assert experiment_from_mapping(mapping, "file") == experiment
    assert experiment_of(experiment_to_pb(experiment)) == experiment
    assert Experiment.from_json_dict(experiment.to_json_dict()) == experiment
    text = yaml.safe_dump({"experiments": [mapping]})
    assert experiments_from_text(text, "again.yaml") == [experiment]


def test_constraints_without_weights_stay_without_an_objective() -> None:
    text = FILE.replace("weights: {quality: 1, cost_usd: -5}", "")
    experiment = experiments_from_text(text, "f.yaml")[0]
    assert experiment.objective is None and len(experiment.constraints) == 2
    assert "weights" not in experiment_to_mapping(experiment)["objective"]


def with_changes(path: str, value: Any) -> dict[str, Any]:
    """The example's mapping with ``value`` at ``path`` (dots and list indexes)."""
    data: dict[str, Any] = yaml.safe_load(FILE)["experiments"][0]
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = data
    for key in parents:
        node = node[key]
    node[last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("metrics.0.unit", "ms", "metrics[0].unit"),
        ("metrics.0.kind", "ternary", "metrics[0].kind"),
        ("metrics.0.direction", "up", "metrics[0].direction"),
        ("metrics.0.min", "zero", "metrics[0].min"),
        ("metrics.3.max", 1, "metrics[3].max"),  # a binary metric has no bounds
        ("metrics.1.name", "bad name", "metrics[1].name"),
        ("metrics.1", "latency_ms", "metrics[1]"),
        ("metrics", {"quality": {}}, "metrics"),
        ("objective", [1, 2], "objective"),
        ("objective.weight", {"quality": 1}, "objective.weight"),
        ("objective.weights", [1], "objective.weights"),
        ("objective.weights", {"quality": "high"}, "objective.weights[quality]"),
        ("objective.weights", {"tokens": 1.0}, "objective.weights[tokens]"),
        ("objective.weights", {}, "objective.weights"),
        ("objective.constraints.0.max_mean", None, "objective.constraints[0]"),
        ("objective.constraints.0.min_mean", 0.01, "objective.constraints[0]"),
        ("objective.constraints.0.max_mean", 0.5, "objective.constraints[0].max_mean"),
        ("objective.constraints.0.confidence", 1.0, "objective.constraints[0].confidence"),
        ("objective.constraints.0.metric", "latency_ms", "objective.constraints[0].metric"),
        ("objective.constraints.0.metric", "tokens", "objective.constraints[0].metric"),
        ("objective.constraints.0.bound", 1, "objective.constraints[0].bound"),
        ("guardrails.0.statistic", "median", "guardrails[0].statistic"),
        ("guardrails.0.min", 0.01, "guardrails[0]"),
        ("guardrails.0.max", None, "guardrails[0]"),
        ("guardrails.0.max", "five percent", "guardrails[0].max"),
        ("guardrails.0.max", 1.0, "guardrails[0].max"),  # no room: always holds
        ("guardrails.0.metric", "tokens", "guardrails[0].metric"),
        ("guardrails.0.quantile", 0.99, "guardrails[0].quantile"),
        ("guardrails.0.window", "soon", "guardrails[0].window"),
        ("guardrails.0.window", "500ms", "guardrails[0].window"),
        ("guardrails.0.min_samples", 2.5, "guardrails[0].min_samples"),
        ("guardrails.0.min_samples", 0, "guardrails[0].min_samples"),
        ("guardrails.0.confidence", 0, "guardrails[0].confidence"),
        ("guardrails.0.probe_share", 0.6, "guardrails[0].probe_share"),
        ("guardrails.0.probe_share", 0.4, "guardrails"),  # 3 quarantined arms take it all
        ("guardrails.0.threshold", 1, "guardrails[0].threshold"),
        ("guardrails.1.quantile", 1.5, "guardrails[1].quantile"),
        ("guardrails.1.statistic", "rate", "guardrails[1].statistic"),  # not binary
        ("guardrails.1", {"metric": "latency_ms", "max": 500}, "guardrails[1].statistic"),
        ("guardrails.2", "quality >= 0.3", "guardrails[2]"),
        ("guardrails", {"metric": "error"}, "guardrails"),
        ("fallback_arm", "huge", "fallback_arm"),
        ("arms.1.guardrail_override", "sometimes", "arms[1].guardrail_override"),
        ("arms.1.state", "sleeping", "arms[1].state"),
        ("arms.1.state", "disabled", "arms[1].guardrail_override"),
        ("arms.1.guardrail", {"epoch": 2}, "arms[1].guardrail"),
        ("arms.1.prior_n", "many", "arms[1].prior_n"),
    ],
)
def test_bad_values_name_their_path(path: str, value: Any, field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        experiment_from_mapping(with_changes(path, value), "llm.yaml: experiments[0]")
    assert caught.value.field == f"llm.yaml: experiments[0].{field}", caught.value


def test_an_override_needs_guardrails() -> None:
    data = with_changes("guardrails", [])
    with pytest.raises(InvalidArgument) as caught:
        experiment_from_mapping(data, "f")
    assert caught.value.field == "f.arms[1].guardrail_override"


# -- the service keeps its guardrail state --------------------------------------------------


def quarantined(experiment: Experiment, arm: str, **status: Any) -> Experiment:
    """``experiment`` as the service holds it after a guardrail quarantined ``arm``."""
    guardrail = ArmGuardrail(since=1000.0, tripped_rules=(0,), summary="error rate", epoch=1)
    arms = tuple(
        dataclasses.replace(a, state=ArmState.QUARANTINED, guardrail=guardrail, **status)
        if a.name == arm
        else a
        for a in experiment.arms
    )
    return experiment.with_changes(arms=arms)


def arm(experiment: Experiment, name: str) -> Arm:
    found = experiment.arm(name)
    assert found is not None
    return found


def test_reapplying_the_file_keeps_a_quarantined_arm_quarantined() -> None:
    live = quarantined(llm(), "mid")
    after = merge_update(live, experiment_to_pb(llm()), FieldMask())  # apply -f: active
    assert arm(after, "mid").state is ArmState.QUARANTINED
    assert arm(after, "mid").guardrail == arm(live, "mid").guardrail  # not a transition
    # get -o yaml writes `state: quarantined`; applying that back changes nothing either
    document = experiment_document([experiment_to_pb(live)])
    echoed = experiments_from_text(yaml.safe_dump(document), "<stdin>")[0]
    assert arm(echoed, "mid").state is ArmState.QUARANTINED
    again = merge_update(live, experiment_to_pb(echoed), FieldMask())
    assert again.arms == live.arms


def test_a_file_cannot_quarantine_an_arm_by_saying_so() -> None:
    text = FILE.replace("mid]", "{name: mid, state: quarantined}]")
    after = merge_update(llm(), experiment_to_pb(experiments_from_text(text, "f")[0]), FieldMask())
    assert arm(after, "mid").state is ArmState.ACTIVE
    assert arm(after, "mid").guardrail == ArmGuardrail()


OVERRIDE_PB = {
    Override.NONE: pb.GUARDRAIL_OVERRIDE_UNSPECIFIED,
    Override.HOLD_ACTIVE: pb.GUARDRAIL_OVERRIDE_HOLD_ACTIVE,
    Override.FORCE_QUARANTINE: pb.GUARDRAIL_OVERRIDE_FORCE_QUARANTINE,
}


def set_override(live: Experiment, name: str, override: Override) -> Experiment:
    """What the clients' ``set_guardrail_override`` sends: UpdateExperiment with the mask
    ``arms`` and every arm as ``get`` returned it, one override changed."""
    message = experiment_to_pb(live)
    for entry in message.arms:
        if entry.name == name:
            entry.guardrail_override = OVERRIDE_PB[override]
    return merge_update(live, message, FieldMask(paths=["arms"]))


def test_hold_releases_force_quarantines_and_auto_gives_the_arm_back_to_the_rules() -> None:
    live = quarantined(llm(), "mid")
    held = set_override(live, "mid", Override.HOLD_ACTIVE)
    status = arm(held, "mid").guardrail
    assert arm(held, "mid").state is ArmState.ACTIVE
    assert (status.epoch, status.tripped_rules) == (2, ())
    assert "hold_active" in status.summary and status.since > 1000.0

    forced = set_override(held, "small", Override.FORCE_QUARANTINE)
    assert arm(forced, "small").state is ArmState.QUARANTINED
    assert arm(forced, "small").guardrail.epoch == 1
    assert arm(forced, "mid") == arm(held, "mid")  # the others untouched

    # Back to the rules: the state stays until the rules move it, in a new epoch.
    auto = set_override(forced, "small", Override.NONE)
    assert arm(auto, "small").state is ArmState.QUARANTINED
    assert arm(auto, "small").guardrail.epoch == 2
    released = set_override(auto, "mid", Override.NONE)
    assert arm(released, "mid").state is ArmState.ACTIVE


def test_a_disabled_arm_stays_disabled_and_keeps_no_override() -> None:
    live = quarantined(llm(), "mid")
    message = experiment_to_pb(live)
    message.arms[2].state = pb.ARM_STATE_DISABLED
    after = merge_update(live, message, FieldMask(paths=["arms"]))
    assert arm(after, "mid").state is ArmState.DISABLED


def test_get_shows_each_arms_guardrail_status_and_it_is_read_only() -> None:
    live = quarantined(llm(), "mid", override=Override.FORCE_QUARANTINE)
    document = experiment_document([experiment_to_pb(live)])
    item = document["experiments"][0]
    assert {"name": "mid", "state": "quarantined", "guardrail_override": "force_quarantine"} in (
        item["arms"]
    )
    status = item["status"]["guardrails"]["mid"]
    assert status["state"] == "quarantined"
    assert status["tripped"] == ["error rate <= 0.05"]
    assert status["tripped_rules"] == [0]
    assert status["summary"] == "error rate" and status["epoch"] == 1
    assert status["since"] == "1970-01-01T00:16:40Z"
    assert item["status"]["guardrails"]["large"] == {
        "state": "active",
        "override": "hold_active",
        "epoch": 0,
    }
    assert "small" not in item["status"]["guardrails"]  # no override, no history: nothing
    # The status is read-only: an edited one is ignored like the rest of status.
    status["epoch"] = 99
    echoed = experiments_from_text(yaml.safe_dump(document), "<stdin>")[0]
    assert arm(echoed, "mid").guardrail == ArmGuardrail()
