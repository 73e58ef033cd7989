"""Which arms a replica may route to under guardrails and objective constraints.

Computed once per cached state (each refresh), never per request:

* arms an objective constraint excludes: their mean of the constrained metric is beyond the
  bound with the constraint's confidence, by the anytime-valid test of
  ``policies.bounded_mean`` on the arm's running count and sum of the metric (the store's
  shared statistics, so every replica reaches the same verdict from the same data);
* quarantined arms and their probe shares: the largest ``probe_share`` of the rules that
  tripped (an arm an operator forced in gets none: it is out until the operator says so);
* the fallback arm: ``fallback_arm``, or the first enabled arm when that one is disabled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from bandit_router.model.experiments import ArmState, Experiment
from bandit_router.model.guardrails import Override
from policies.bounded_mean import log_evidence_above


@dataclass(frozen=True)
class GuardView:
    #: Arms not disabled (active or quarantined): what pins and pause may serve.
    enabled: tuple[int, ...]
    #: Active arms no constraint excludes: the bandit's own arms.
    eligible: tuple[int, ...]
    #: (arm, probe share) of each quarantined arm that gets probes.
    probes: tuple[tuple[int, float], ...]
    fallback: int
    #: Arm -> the constraint that excludes it, in words (reports, gauges).
    constrained: Mapping[int, str]


def guard_view(experiment: Experiment, stats: Mapping[str, str]) -> GuardView:
    arms = experiment.arms
    enabled = tuple(i for i, arm in enumerate(arms) if arm.enabled)
    constrained: dict[int, str] = {}
    for constraint, test in zip(
        experiment.constraints, experiment.compiled_constraints, strict=True
    ):
        level = math.log(1.0 / test.alpha)
        for i, arm in enumerate(arms):
            if not arm.active or i in constrained:
                continue
            prefix = f"{arm.name}:m:{constraint.metric}"
            count = float(stats.get(f"{prefix}:count", 0.0))
            if count <= 0.0:
                continue
            total = float(stats.get(f"{prefix}:total", 0.0))
            # y is affine in the value, so the arm's running sum of the metric gives sum(y)
            scaled = (total - count * test.lo) / (test.hi - test.lo)
            observed = count - scaled if test.flip else scaled
            if float(log_evidence_above(count, observed, test.theta0)) >= level:
                constrained[i] = (
                    f"{constraint.describe()} broken: mean {total / count:.4g} over {count:g} "
                    f"rewards, confidence {constraint.confidence:g}"
                )
    eligible = tuple(i for i, arm in enumerate(arms) if arm.active and i not in constrained)
    probes: list[tuple[int, float]] = []
    rules = experiment.guardrails
    for i, arm in enumerate(arms):
        if arm.state is not ArmState.QUARANTINED or arm.override is Override.FORCE_QUARANTINE:
            continue
        tripped = [rules[r] for r in arm.guardrail.tripped_rules if r < len(rules)] or rules
        share = max((rule.probe_share for rule in tripped), default=0.0)
        if share > 0.0:
            probes.append((i, share))
    fallback = experiment.fallback_index
    if fallback not in enabled and enabled:
        fallback = enabled[0]
    return GuardView(enabled, eligible, tuple(probes), fallback, constrained)
