"""The service's side of guardrails without servers: which stored observations a rule reads,
how quarantine survives configuration changes, what an observation is written as."""

from __future__ import annotations

import dataclasses

from google.protobuf.field_mask_pb2 import FieldMask

from bandit_router.analysis.guardrails import windows
from bandit_router.model.convert import experiment_to_pb, keep_guardrail_state, merge_update
from bandit_router.model.experiments import Arm, ArmState, Experiment
from bandit_router.model.guardrails import (
    ArmGuardrail,
    GuardrailRule,
    Override,
    Statistic,
    slot_widths,
)
from bandit_router.model.metrics import MetricKind, MetricSpec
from bandit_router.model.observations import bucket_value, detail, sketch_bucket

ERROR = GuardrailRule("error", Statistic.RATE, max=0.05, window=600.0)
LATENCY = GuardrailRule("latency_ms", Statistic.QUANTILE, quantile=0.99, max=500.0, window=60.0)


def guarded(*arms: Arm, rules: tuple[GuardrailRule, ...] = (ERROR, LATENCY)) -> Experiment:
    return Experiment(
        "e",
        arms or (Arm("a"), Arm("b")),
        metrics=(
            MetricSpec("error", MetricKind.BINARY),
            MetricSpec("latency_ms", MetricKind.CONTINUOUS, min=0.0),
        ),
        guardrails=rules,
    ).validated()


def quarantined(name: str, tripped: tuple[int, ...], epoch: int = 3) -> Arm:
    return Arm(name, ArmState.QUARANTINED, guardrail=ArmGuardrail(10.0, tripped, "why", epoch))


def test_a_rule_reads_its_window_of_the_current_epoch_and_old_fields_are_dropped() -> None:
    experiment = guarded(quarantined("a", (0,), epoch=2), Arm("b"))
    now = 10_000.0
    # Each rule's slots are a tenth of its window: 60 s for the error rule, 6 s for latency.
    slot = int(now // 60) * 60
    latency_slot = int(now // 6) * 6
    guard = {
        f"a:2:{slot}:{ERROR.key}:n": "10",
        f"a:2:{slot}:{ERROR.key}:s": "1",
        f"a:2:{slot - 300}:{ERROR.key}:n": "5",  # inside the error rule's 600 s
        f"a:2:{slot - 300}:{ERROR.key}:s": "5",
        f"a:2:{latency_slot}:{LATENCY.key}:n": "3",  # the latency rule's current slot
        f"a:2:{latency_slot - 300}:{LATENCY.key}:n": "7",  # past the latency rule's 60 s
        f"a:1:{slot}:{ERROR.key}:n": "99",  # an ended epoch
        f"a:3:{slot}:{ERROR.key}:n": "4",  # newer than this copy of the config: kept, unread
        f"b:0:{slot - 700}:{ERROR.key}:n": "8",  # older than the error rule's window
        f"gone:0:{slot}:{ERROR.key}:n": "1",  # a removed arm
        f"b:0:{slot}:old.rate.le0.5:n": "1",  # a removed rule
        "junk": "1",
    }
    data, stale = windows(experiment, guard, now)
    assert data["a"].n == (15.0, 3.0) and data["a"].s == (6.0, 0.0)
    assert data["b"].n == (0.0, 0.0)
    assert sorted(stale) == sorted(
        [
            f"a:2:{latency_slot - 300}:{LATENCY.key}:n",
            f"a:1:{slot}:{ERROR.key}:n",
            f"b:0:{slot - 700}:{ERROR.key}:n",
            f"gone:0:{slot}:{ERROR.key}:n",
            f"b:0:{slot}:old.rate.le0.5:n",
            "junk",
        ]
    )


def test_quarantine_survives_a_reapplied_file_and_follows_its_rule() -> None:
    current = guarded(quarantined("a", (1,)), Arm("b"))
    # The file says active and lists the rules in another order: still quarantined, and the
    # tripped rule is followed to its new index.
    incoming = guarded(Arm("a"), Arm("b"), rules=(LATENCY, ERROR))
    merged = merge_update(current, experiment_to_pb(incoming), FieldMask())
    arm = merged.arm("a")
    assert arm is not None and arm.state is ArmState.QUARANTINED
    assert arm.guardrail.tripped_rules == (0,) and arm.guardrail.epoch == 3
    # The tripped rule removed: nothing holds it (the monitor releases it at its next check).
    merged = keep_guardrail_state(current, guarded(Arm("a"), Arm("b"), rules=(ERROR,)))
    assert merged.arm("a").guardrail.tripped_rules == ()  # type: ignore[union-attr]
    # No rules at all: released at once, overrides cleared (they would mean nothing).
    forced = dataclasses.replace(quarantined("a", ()), override=Override.FORCE_QUARANTINE)
    merged = keep_guardrail_state(
        guarded(forced, Arm("b")),
        dataclasses.replace(current, guardrails=(), arms=(forced, Arm("b"))),
    )
    assert merged.arm("a").state is ArmState.ACTIVE  # type: ignore[union-attr]
    assert merged.arm("a").override is Override.NONE  # type: ignore[union-attr]


def test_overrides_move_the_arm_and_start_a_new_epoch() -> None:
    current = guarded(quarantined("a", (0,)), Arm("b"))
    held = dataclasses.replace(current.arms[0], override=Override.HOLD_ACTIVE)
    merged = keep_guardrail_state(current, current.with_changes(arms=(held, Arm("b"))))
    arm = merged.arms[0]
    assert arm.state is ArmState.ACTIVE and arm.guardrail.epoch == 4
    assert arm.guardrail.tripped_rules == ()
    forced = dataclasses.replace(Arm("b"), override=Override.FORCE_QUARANTINE)
    merged = keep_guardrail_state(current, current.with_changes(arms=(current.arms[0], forced)))
    assert merged.arms[1].state is ArmState.QUARANTINED and merged.arms[1].guardrail.epoch == 1


def test_a_reward_writes_each_rules_observation_and_the_sketch_bucket() -> None:
    experiment = guarded(quarantined("a", (0,), epoch=5), Arm("b"))
    text = detail(experiment, "a", {"error": 1.0, "latency_ms": 750.0}, 1234.5)
    # each rule's own slots: 60 s for the 10-minute error rule, 6 s for the 1-minute one
    assert text.split(",") == [
        f"g:5:1200:{ERROR.key}=1.0",
        f"g:5:1230:{LATENCY.key}=1.0",  # 750 > 500: an exceedance
        f"h:latency_ms:{sketch_bucket(750.0)}=1",
    ]
    assert detail(experiment, "b", {"error": 0.0}, 1234.5) == f"g:0:1200:{ERROR.key}=0.0"
    # A decision made before the arm's epoch began (since = 10.0) feeds no rule of it.
    assert detail(experiment, "a", {"error": 1.0}, 1234.5, decided_at=9.0) == ""
    assert detail(experiment, "a", {"error": 1.0}, 1234.5, decided_at=11.0) != ""
    for value in (0.001, 1.0, 499.9, 750.0, 123456.0, -3.5):
        assert abs(bucket_value(sketch_bucket(value)) - value) <= 0.01 * abs(value)
    assert bucket_value(sketch_bucket(0.0)) == 0.0


def test_each_rule_key_has_slots_of_a_tenth_of_its_shortest_window() -> None:
    """A rule's slots are a tenth of its window (so its level is shared among 11 first
    slots, whatever the window's length); rules observing the same thing share their fields,
    hence the slots of the shortest of their windows."""
    day = GuardrailRule("latency_ms", Statistic.QUANTILE, quantile=0.99, max=500.0, window=86400)
    hour = dataclasses.replace(ERROR, window=3600.0)
    assert slot_widths((ERROR, LATENCY, day)) == {ERROR.key: 60, LATENCY.key: 6}
    assert slot_widths((hour, day)) == {ERROR.key: 360, LATENCY.key: 8640}
    compiled = guarded(rules=(ERROR, hour, day)).compiled_guardrails.rules
    assert [rule.starts for rule in compiled] == [11, 61, 11]
