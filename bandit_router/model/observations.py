"""What a reward's metrics feed besides the arm's sufficient statistics.

Two things, written by the reward script in the same atomic step as the reward itself (so
exactly once, with the same dedupe marker; ``lua/metrics.lua``):

* **Guardrail observations.** Each rule reduces a metric value to y in [0, 1]
  (``policies.guardrails.Guardrail.observe_one``), and the store adds (1, y) to the arm's
  count and sum for that rule in the current *slot* (``slot_widths`` of wall time) of the
  arm's current *epoch* (its guardrail status ``epoch``: every transition starts a new
  one). The monitor sums the slots of a window, so a window costs a dozen fields per arm
  and rule whatever the traffic, and an epoch's data never mixes with the one before: a
  quarantined arm is judged on its probe data only.
* **The quantile sketch.** Each value of a continuous metric counts in one bucket of a
  log-scale histogram with ratio ``GAMMA`` between bucket edges (the DDSketch mapping of
  Masson, Rim and Lee, VLDB 2019): every quantile is read back within a relative error of
  (GAMMA - 1) / (GAMMA + 1) = 1%, buckets of different replicas and times merge by adding,
  and latencies from 1 ms to an hour need about 750 buckets at most.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from bandit_router.model.experiments import Experiment
from bandit_router.model.guardrails import slot_widths
from bandit_router.model.metrics import MetricKind

#: Ratio of consecutive bucket edges of the sketch.
GAMMA = 1.02
_LOG_GAMMA = math.log(GAMMA)


def sketch_bucket(value: float) -> str:
    """The bucket of ``value``: "z" for 0, "p<i>" for (GAMMA^(i-1), GAMMA^i], "n<i>" for the
    mirror image of a negative value."""
    if value == 0.0:
        return "z"
    index = math.ceil(math.log(abs(value)) / _LOG_GAMMA)
    return f"{'p' if value > 0 else 'n'}{index}"


def bucket_value(bucket: str) -> float:
    """The value a bucket stands for: the point of least relative error within it."""
    if bucket == "z":
        return 0.0
    index = int(bucket[1:])
    magnitude = 2.0 * GAMMA**index / (GAMMA + 1.0)
    return magnitude if bucket[0] == "p" else -magnitude


def detail(
    experiment: Experiment,
    arm: str,
    observed: Mapping[str, float],
    now: float,
    decided_at: float | None = None,
) -> str:
    """The "#..." part of a reward's metrics argument: guardrail observations of ``arm`` for
    every rule whose metric the reward carries, and sketch buckets of continuous metrics.

    A decision made before the arm's current epoch began (``decided_at``, unix seconds)
    feeds no rule: it belongs to the state the arm has left, and a quarantined arm must be
    judged on its probes alone, not on the failures still arriving from before."""
    parts: list[str] = []
    rules = experiment.guardrails
    found = experiment.arm(arm) if rules else None
    if found is not None and (decided_at is None or decided_at >= found.guardrail.since):
        epoch = found.guardrail.epoch
        widths = slot_widths(rules)
        seen: set[str] = set()
        for rule, test in zip(rules, experiment.compiled_guardrails.rules, strict=True):
            value = observed.get(rule.metric)
            key = rule.key
            if value is None or key in seen:
                continue
            seen.add(key)
            slot = int(now // widths[key]) * widths[key]
            parts.append(f"g:{epoch}:{slot}:{key}={test.observe_one(value)!r}")
    for spec in experiment.metrics:
        value = observed.get(spec.name)
        if value is not None and spec.kind is not MetricKind.BINARY:
            parts.append(f"h:{spec.name}:{sketch_bucket(value)}=1")
    return ",".join(parts)
