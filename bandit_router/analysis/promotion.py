"""Replay-gated promotion: would a candidate configuration do better on the recent log?

``bandit-router promote`` walks four phases; everything here is plain Python over arrays, so
tests call it without gRPC, and the command line only reads, prints and applies.

1. **Changes.** The candidate is compared with the live configuration field by field. What
   decides which arm a request gets (policy and parameters, exploration floor and burn-in,
   holdout, arm states) can be evaluated on the log. Other fields (reward window, default
   reward, reward bounds, sticky, drift discount, arm priors) change what the rewards mean or
   how units are tied to arms, which the log cannot price: they are refused unless forced. A
   different set of arms is refused even with ``--force``: an arm without a logged decision
   has no support, and removing one deletes its statistics (use ``add-arm``/``remove-arm``).
2. **Laws.** Promotion keeps the statistics (every plain policy decides from the same
   per-arm count, sum and sum of squares), so right after it the candidate serves from the
   experiment's *current* statistics. Each configuration is therefore evaluated as the law
   it serves now: its policy's probabilities at the current statistics, with its floor,
   burn-in (against the current decision counts) and holdout mixed in, exactly as the router
   mixes them, held fixed over the log. This prices the next decisions, not the long run: a
   learning policy's future updates are not replayed (``simulate`` studies those).
   A contextual configuration's law differs per request: it is computed for each logged
   decision from the vector its own context_features give that decision's logged context
   and attributes, at the service's current (n, A, b) where they apply, else (a change
   that resets the statistics) at statistics fitted on the log's first half, both
   configurations then being scored on the second half (``_contextual_targets``).
3. **Evaluation.** Both laws are scored with the doubly robust estimator (``simulations``)
   on the same decisions: those with a reward, in the window, where both laws have support
   under the logged whole-procedure law. The current configuration is evaluated the same
   way rather than by the log's mean reward: the on-policy mean averages the policy over the
   whole window, exploration it has already paid for included, so any copy of the current
   configuration evaluated at today's statistics would beat it. The same estimator on the
   same decisions shares its biases (statistics learned from the same rewards, drift) with
   the candidate, and they cancel in the comparison. The on-policy mean is printed too.
4. **Gate.** The candidate is applied only when its DR lower 95 % bound exceeds the current
   configuration's DR estimate, on at least ``MIN_DECISIONS`` scored, supported decisions.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from bandit_router.errors import InvalidArgument
from bandit_router.model.experiments import Experiment
from bandit_router.route.features import FeatureSpace
from policies import Stats
from policies.base import REWARD_MAGNITUDE_LIMIT, BoolArray
from policies.contextual import ContextualStats
from policies.controls import (
    cap_probabilities,
    controlled_probabilities,
    floor_probabilities,
    in_burn_in,
)
from simulations import contextual_ope, ope
from simulations.environments import FloatArray
from simulations.logs import DecisionRecord, LogError, LoggedData
from simulations.replay import (
    Evaluation,
    Support,
    Target,
    evaluate,
    support_of,
    target_probabilities,
)

#: Fewest decisions with a reward (and support under both laws) a promotion is judged on.
#: With rewards in [0, 1] and importance weights near 1, the DR interval's half-width is
#: about 1.96 * 0.5 / sqrt(n): 0.031 at n = 1,000, the smallest gap worth acting on; below
#: that the central limit interval itself is not to be trusted with skewed weights.
MIN_DECISIONS = 1000
#: Estimators printed for both configurations; the gate reads ``dr``.
METHODS = ("ips", "snips", "dr")
#: Experiment fields whose change the log can evaluate, as ``UpdateExperiment`` mask paths.
EVALUATED = {
    "policy": "policy",
    "exploration_floor": "exploration",
    "burn_in": "exploration",
    "max_share": "exploration",
    "holdout_share": "holdout",
    "holdout_control_arm": "holdout",
}
#: Fields that change what a reward means or how units map to arms: not evaluable.
UNEVALUATED = {
    "reward_window": "reward_window",
    "default_reward": "default_reward",
    "late_rewards": "late_rewards",
    "late_reward_grace": "late_reward_grace",
    "reward_min": "reward_min",
    "reward_max": "reward_max",
    "sticky": "sticky",
    "sticky_ttl": "sticky",
    "drift_discount": "drift_discount",
}


@dataclass(frozen=True)
class Changes:
    """What the candidate changes: ``paths`` is the update mask that applies exactly that."""

    evaluated: tuple[str, ...] = ()
    unevaluated: tuple[str, ...] = ()
    incompatible: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()


def changes(current: Experiment, candidate: Experiment) -> Changes:
    """The candidate's differences from the live configuration, classified (module doc, 1)."""
    evaluated: list[str] = []
    unevaluated: list[str] = []
    incompatible: list[str] = []
    paths: dict[str, None] = {}
    if _policy_key(current) != _policy_key(candidate):
        evaluated.append("policy")
        paths["policy"] = None
    for name, path in EVALUATED.items():
        if name != "policy" and getattr(current, name) != getattr(candidate, name):
            evaluated.append(name)
            paths[path] = None
    for name, path in UNEVALUATED.items():
        if getattr(current, name) != getattr(candidate, name):
            unevaluated.append(name)
            paths[path] = None
    if current.context_features != candidate.context_features:
        evaluated.append("context_features")
        paths["context_features"] = None
    if current.description != candidate.description:
        paths["description"] = None
    before, after = set(current.arm_names), set(candidate.arm_names)
    if before != after:
        added, removed = sorted(after - before), sorted(before - after)
        incompatible.append(
            "the candidate changes the arms"
            + (f" (adds {', '.join(added)})" if added else "")
            + (f" (removes {', '.join(removed)})" if removed else "")
            + ": promote keeps each arm's statistics and cannot evaluate an arm the log never "
            "chose; change arms with add-arm/remove-arm first"
        )
    else:
        live = {arm.name: arm for arm in current.arms}
        for arm in candidate.arms:
            old = live[arm.name]
            if arm.state != old.state:
                evaluated.append(f"arms[{arm.name}].state")
                paths["arms"] = None
            if (arm.prior_n, arm.prior_sum, arm.prior_sum_sq) != (
                old.prior_n,
                old.prior_sum,
                old.prior_sum_sq,
            ):
                unevaluated.append(f"arms[{arm.name}] priors")
                paths["arms"] = None
    low, high = current.reward_bounds()
    new_low, new_high = candidate.reward_bounds()
    if low < new_low or high > new_high:
        incompatible.append(
            f"the statistics may hold rewards in [{low:g}, {high:g}], outside the "
            f"[{new_low:g}, {new_high:g}] policy {candidate.policy.name!r} accepts: its "
            "statistics would not mean what it assumes (set reward_min/reward_max on the live "
            "experiment first, or reset it)"
        )
    if not paths:
        incompatible.append("the candidate is the live configuration: nothing to promote")
    return Changes(tuple(evaluated), tuple(unevaluated), tuple(incompatible), tuple(paths))


def _policy_key(experiment: Experiment) -> tuple[str, tuple[tuple[str, float], ...]]:
    """A policy with its defaults filled in: ``thompson`` and ``thompson(alpha0=1)`` agree."""
    return experiment.policy.name, tuple(sorted(experiment.policy.build().describe().items()))


def configuration_law(
    experiment: Experiment, arm_names: Sequence[str], stats: Stats, decisions: FloatArray
) -> FloatArray:
    """P(arm) that ``experiment`` serves a request at these statistics (module doc, 2).

    Arms in ``arm_names`` order; ``stats`` and ``decisions`` (per-arm decision counts, for
    burn-in) in the same order. Holdout mixes in as the router mixes it
    (``CachedExperiment.decision_law``): share h to the control arm, or uniform without one.
    """
    states = {arm.name: arm.active for arm in experiment.arms}
    active = np.asarray([states.get(name, False) for name in arm_names], dtype=bool)
    law = controlled_probabilities(
        experiment.policy.build(),
        stats,
        active,
        experiment.exploration_floor,
        experiment.burn_in,
        decisions,
    )
    return _with_holdout(experiment, arm_names, law)


def _with_holdout(experiment: Experiment, arm_names: Sequence[str], law: FloatArray) -> FloatArray:
    """Traffic caps, then holdout, mixed into a law (one row or one per decision) as the
    router mixes them: the caps apply to the floored (or burn-in) law, holdout is outside."""
    states = {arm.name: arm.active for arm in experiment.arms}
    active = np.asarray([states.get(name, False) for name in arm_names], dtype=bool)
    if experiment.max_share:
        position = {name: i for i, name in enumerate(arm_names)}
        caps = {position[a]: c for a, c in experiment.max_share.items() if a in position}
        # caps leaving traffic over go to the fallback arm, as Route sends it (relaxed in
        # proportion when that arm is disabled or absent: ``policies.controls``)
        fallback_name = experiment.arm_names[experiment.fallback_index]
        enabled = {arm.name for arm in experiment.arms if arm.enabled}
        fallback = position.get(fallback_name) if fallback_name in enabled else None
        law = cap_probabilities(law, active, caps, fallback)
    share = experiment.holdout_share
    if share > 0.0:
        control = experiment.holdout_control_arm
        if control and states.get(control, False):
            held = np.asarray([name == control for name in arm_names], dtype=np.float64)
        else:
            held = active / active.sum()
        law = share * held + (1.0 - share) * law
    return np.asarray(law, dtype=np.float64)


def contextual_configuration_laws(
    experiment: Experiment,
    arm_names: Sequence[str],
    stats: ContextualStats,
    vectors: FloatArray,
    decisions: FloatArray,
) -> FloatArray:
    """P(arm | x) that a contextual ``experiment`` serves at ``stats``, for every row of
    ``vectors`` (its own feature vectors): the policy's exact law over the active arms, then
    burn-in (uniform while some active arm has fewer than ``burn_in`` decisions), the
    exploration floor and the holdout, mixed as the router mixes them."""
    states = {arm.name: arm.active for arm in experiment.arms}
    active = np.asarray([states.get(name, False) for name in arm_names], dtype=bool)
    policy = experiment.policy.build_contextual()
    if bool(in_burn_in(decisions, active, experiment.burn_in)):
        law = np.tile(active / active.sum(), (vectors.shape[0], 1))
    else:
        law = np.empty((vectors.shape[0], len(arm_names)))
        for start in range(0, vectors.shape[0], contextual_ope.CHUNK):
            chunk = slice(start, start + contextual_ope.CHUNK)
            law[chunk] = policy.probabilities(stats, vectors[chunk], active)
        law = floor_probabilities(law, active, experiment.exploration_floor)
    return _with_holdout(experiment, arm_names, law)


def feature_vectors(experiment: Experiment, data: LoggedData) -> tuple[FloatArray, BoolArray]:
    """Each logged decision's vector under ``experiment``'s context_features, rebuilt from
    its logged context and attributes exactly as the service builds it (a missing feature
    is 0 or "other"), and which decisions the service would have served: a required feature
    missing, or a value out of range, is a refused Route there."""
    space = FeatureSpace(experiment.context_features)
    x = np.zeros((data.size, space.dim))
    served = np.ones(data.size, dtype=bool)
    for i, (context, attributes) in enumerate(
        zip(data.context_maps, data.attribute_maps, strict=True)
    ):
        try:
            x[i] = space.build(context, attributes)
        except InvalidArgument:
            served[i] = False
    return x, served


# -- the log -------------------------------------------------------------------------------


def window_start(now: float, window: float) -> float:
    """Unix seconds of the oldest decision evaluated (0: the whole retained log)."""
    return now - window if window > 0 else 0.0


def logged_data(
    records: Iterable[DecisionRecord], experiment: str, arm_names: Sequence[str], since: float
) -> tuple[LoggedData, list[str]]:
    """The experiment's decisions since ``since`` (unix seconds) as arrays, and warnings.

    Decisions of arms the experiment no longer has cannot be scored against it and are left
    out, with a warning that counts them. A decision without a time (a CSV log may have
    none) cannot be placed in the window and is kept.
    """
    known = set(arm_names)
    kept: list[DecisionRecord] = []
    foreign = 0
    for record in records:
        if record.experiment and record.experiment != experiment:
            continue
        if since and record.time and _seconds(record.time) < since:
            continue
        if record.arm not in known:
            foreign += 1
            continue
        kept.append(record)
    warnings = []
    if foreign:
        warnings.append(f"{foreign} decisions of arms the experiment no longer has were left out")
    return LoggedData.from_records(kept, list(arm_names)), warnings


def _seconds(stamp: str) -> float:
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        raise LogError(f"expected an ISO 8601 time, got {stamp!r}", field="time") from None
    if when.tzinfo is None:  # the export writes UTC; a naive time is read as UTC too
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


# -- assessment ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Assessment:
    """Both configurations on the same decisions, and the verdict.

    ``refusals`` lists why the candidate may not be applied (empty: it may);
    ``incompatible`` the reasons even ``--force`` cannot override.
    """

    decisions: int
    skipped: int
    scope: int
    current_law: tuple[float, ...]
    candidate_law: tuple[float, ...]
    arm_names: tuple[str, ...]
    changes: Changes
    current: Evaluation | None = None
    candidate: Evaluation | None = None
    support: Mapping[str, Support] = field(default_factory=dict)
    on_policy: ope.Estimate | None = None
    refusals: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    #: Applying needs a statistics reset (another kind of policy, or other features).
    reset: bool = False
    #: Decisions (the log's first ones) that fitted a configuration's statistics, when the
    #: service holds none that apply to it; both are then scored on the rest only.
    fitted_on: int = 0
    #: A contextual configuration's law differs per decision: the laws shown are the means.
    per_decision: bool = False

    @property
    def approved(self) -> bool:
        return not self.refusals

    @property
    def incompatible(self) -> tuple[str, ...]:
        return self.changes.incompatible

    def estimate(self, which: str, method: str = "dr") -> ope.Estimate | None:
        evaluation = self.current if which == "current" else self.candidate
        if evaluation is None:
            return None
        return next((e for e in evaluation.estimates if e.method == method), None)


def assess(
    current: Experiment,
    candidate: Experiment,
    stats: Stats,
    decisions: FloatArray,
    data: LoggedData,
    *,
    min_decisions: int = MIN_DECISIONS,
    warnings: Sequence[str] = (),
    contextual: ContextualStats | None = None,
) -> Assessment:
    """Evaluate both configurations on ``data`` (arms in ``current.arm_names`` order).

    ``contextual``: the live contextual statistics (n, A, b), when the live policy is
    contextual (``GetExperiment``'s ``gram`` and ``b``); see ``_contextual_targets``.
    """
    names = current.arm_names
    found = changes(current, candidate)
    notes = list(warnings)
    reset = current.needs_reset_to_become(candidate)
    fitted_on = 0
    targets: dict[str, Target]
    if current.policy.contextual or candidate.policy.contextual:
        data, targets, fitted_on, more = _contextual_targets(
            current, candidate, stats, decisions, data, contextual, reset
        )
        notes.extend(more)
        current_law = _mean_law(targets["current"], data)
        candidate_law = _mean_law(targets["candidate"], data)
    else:
        current_law = configuration_law(current, names, stats, decisions)
        candidate_law = configuration_law(candidate, names, stats, decisions)
        targets = {
            "current": Target.fixed_law(
                tuple(map(float, current_law)), f"current ({current.policy.name})"
            ),
            "candidate": Target.fixed_law(
                tuple(map(float, candidate_law)), f"candidate ({candidate.policy.name})"
            ),
        }
    if reset:
        notes.append(
            f"applying resets the statistics ({current.policy.statistics_kind} -> "
            f"{candidate.policy.statistics_kind} policy, or other context_features): the "
            "service's statistics would no longer mean what the candidate assumes; the reset "
            "keeps a snapshot (bandit-router snapshots)"
        )
    if current.pin.arm or current.paused:
        notes.append(
            "the experiment is pinned or paused: both configurations are compared as they "
            "serve once it is unpinned or resumed; promotion keeps the pin and the pause"
        )
    refusals = list(found.incompatible)
    if found.unevaluated:
        refusals.append(
            "the candidate also changes " + ", ".join(found.unevaluated) + ", which the log "
            "cannot evaluate (promote evaluates policy, exploration, holdout and arm states); "
            "use apply for those"
        )
    base = Assessment(
        decisions=data.size,
        skipped=data.skipped,
        scope=0,
        current_law=tuple(float(p) for p in current_law),
        candidate_law=tuple(float(p) for p in candidate_law),
        arm_names=tuple(names),
        changes=found,
        refusals=tuple(refusals),
        warnings=tuple(notes),
        reset=reset,
        fitted_on=fitted_on,
        per_decision=targets["current"].kind == "laws",
    )
    if data.size < min_decisions:
        what = "with a reward" + (" after the fitting part" if fitted_on else "")
        return _refused(base, _too_little(data.size, min_decisions, what))
    bounds = _reward_range(current, data)
    usable = np.ones(data.size, dtype=bool)
    support: dict[str, Support] = {}
    lacking = False
    for which, target in targets.items():
        summary, mass = support_of(data, target_probabilities(target, data))
        support[which] = summary
        usable &= ~(mass > 0.0)  # NaN (not checkable) counts as usable, as in ``evaluate``
        full = evaluate(target, data, methods=("dr",), reward_range=bounds)
        notes.extend(f"{which}: {warning}" for warning in full.warnings)
        if any(e.refused for e in full.estimates):
            lacking = True
            refusals.append(
                f"the {which} configuration lacks support on too much of the log "
                f"(supported share {summary.share:.1%}); see the warnings"
            )
    scope = data if usable.all() else data.subset(usable)
    on_policy = ope.mean_estimate("on-policy", data.rewards)
    base = _with(base, support=support, on_policy=on_policy, warnings=tuple(notes))
    if lacking:
        return _with(base, refusals=tuple(refusals))
    if scope.size < min_decisions:
        return _refused(
            _with(base, refusals=tuple(refusals)),
            _too_little(scope.size, min_decisions, "with a reward and support under both laws"),
        )
    current_eval = evaluate(
        targets["current"].restricted(usable), scope, methods=METHODS, reward_range=bounds
    )
    candidate_eval = evaluate(
        targets["candidate"].restricted(usable), scope, methods=METHODS, reward_range=bounds
    )
    base = _with(base, scope=scope.size, current=current_eval, candidate=candidate_eval)
    low = _dr(candidate_eval).ci_low
    reference = _dr(current_eval).value
    if not low > reference:
        refusals.append(
            f"the candidate's lower 95% bound {low:.4f} does not beat the current "
            f"configuration's estimate {reference:.4f}"
        )
    return _with(base, refusals=tuple(refusals))


def _contextual_targets(
    current: Experiment,
    candidate: Experiment,
    stats: Stats,
    decisions: FloatArray,
    data: LoggedData,
    live: ContextualStats | None,
    reset: bool,
) -> tuple[LoggedData, dict[str, Target], int, list[str]]:
    """Per-decision laws of both configurations when either is contextual.

    Each contextual configuration decides from each logged decision's vector under its own
    context_features. Its statistics are the service's current ones where they apply (the
    live policy is contextual and the candidate keeps its kind and features). Where none
    apply - a plain -> contextual switch, or other features, both of which reset the
    statistics when applied - the candidate is priced at the statistics it would hold after
    the log's first ``FIT_SHARE`` of decisions (their rewards folded in with its own features
    and update rule), and both configurations are scored on the rest of the log only. That
    prices the candidate once it has learned from as much traffic as the fitting part; right
    after the reset it starts from its prior (near uniform) and explores. Decisions whose
    request a contextual configuration would have refused (a required feature missing) are
    left out for both. DR's reward model regresses on the candidate's vectors (else the
    current one's), the same for both configurations.
    """
    names = current.arm_names
    notes: list[str] = []
    vectors: dict[str, FloatArray] = {}
    served = np.ones(data.size, dtype=bool)
    configurations = {"current": current, "candidate": candidate}
    for which, experiment in configurations.items():
        if experiment.policy.contextual:
            vectors[which], ok = feature_vectors(experiment, data)
            if not ok.all():
                notes.append(
                    f"{which}: {int((~ok).sum())} logged requests lack a required feature "
                    "(or carry one out of range) and would be refused: left out"
                )
            served &= ok
    if not served.all():
        data = data.subset(served)
        vectors = {k: v[served] for k, v in vectors.items()}
    fitted_on = 0
    applies = {
        "current": live,
        "candidate": None if reset or not current.policy.contextual else live,
    }
    context_stats: dict[str, ContextualStats] = {}
    counts = {"current": decisions, "candidate": decisions}
    plain = {"current": stats, "candidate": stats}
    if reset:  # the candidate's own decision counts restart too
        fitted_on = contextual_ope.split_point(data.size, contextual_ope.FIT_SHARE)
        head = np.arange(data.size) < fitted_on
        counts["candidate"] = np.bincount(data.arms[head], minlength=len(names)).astype(float)
        if not candidate.policy.contextual:
            plain["candidate"] = _plain_fitted(candidate, data.subset(head), len(names))
            notes.append(
                f"candidate: applying resets the statistics; evaluated at the statistics of "
                f"the log's first {fitted_on} decisions, both configurations scored on the "
                f"other {data.size - fitted_on} only"
            )
    for which, experiment in configurations.items():
        if not experiment.policy.contextual:
            continue
        statistics = applies[which]
        if statistics is None:
            if not fitted_on:
                fitted_on = contextual_ope.split_point(data.size, contextual_ope.FIT_SHARE)
            head = np.arange(data.size) < fitted_on
            statistics = contextual_ope.fit_statistics(
                experiment.policy.build_contextual(),
                vectors[which][head],
                data.arms[head],
                data.rewards[head],
                len(names),
            )
            notes.append(
                f"{which}: no service statistics apply to it; evaluated at the statistics "
                f"fitted on the log's first {fitted_on} decisions, and both configurations "
                f"are scored on the other {data.size - fitted_on} only (after the reset the "
                "service starts from the prior and needs about as many rewards to get there)"
            )
        context_stats[which] = statistics
    if fitted_on:
        tail = np.arange(data.size) >= fitted_on
        data = data.subset(tail)
        vectors = {k: v[tail] for k, v in vectors.items()}
    model = vectors.get("candidate", vectors.get("current"))
    assert model is not None
    targets = {}
    for which, experiment in configurations.items():
        label = f"{which} ({experiment.policy.name})"
        if experiment.policy.contextual:
            laws = contextual_configuration_laws(
                experiment, names, context_stats[which], vectors[which], counts[which]
            )
        else:
            law = configuration_law(experiment, names, plain[which], counts[which])
            laws = np.tile(law, (data.size, 1))
        targets[which] = Target.per_decision(laws, model, label)
    return data, targets, fitted_on, notes


def _plain_fitted(experiment: Experiment, head: LoggedData, n_arms: int) -> Stats:
    """Plain (n, sum, sum_sq) after a reset (the arms' priors) and ``head``'s rewards, each
    discounted by gamma per later reward as the policy's update does (every arm decays on
    every reward)."""
    gamma = experiment.policy.build().gamma
    age = np.arange(head.size)[::-1].astype(np.float64)
    weight = np.asarray(gamma**age, dtype=np.float64)
    rewards = head.rewards
    decay = float(gamma**head.size)
    priors = {arm.name: arm for arm in experiment.arms}

    def column(values: FloatArray, field: str) -> FloatArray:
        prior = [getattr(priors[name], field) if name in priors else 0.0 for name in head.arm_names]
        sums = np.bincount(head.arms, weights=values, minlength=n_arms)
        return np.asarray(sums + decay * np.asarray(prior, dtype=np.float64), dtype=np.float64)

    return Stats(
        column(weight, "prior_n"),
        column(weight * rewards, "prior_sum"),
        column(weight * rewards * rewards, "prior_sum_sq"),
    )


def _mean_law(target: Target, data: LoggedData) -> FloatArray:
    laws = target_probabilities(target, data)
    if laws.shape[0] == 0:
        return np.full(data.n_arms, np.nan)
    return np.asarray(laws.mean(axis=0), dtype=np.float64)


def _dr(evaluation: Evaluation) -> ope.Estimate:
    return next(e for e in evaluation.estimates if e.method == "dr")


def _too_little(count: int, minimum: int, what: str) -> str:
    return (
        f"too little log: {count} decisions {what} in the window; promotion needs at least "
        f"{minimum} (widen --window or wait for more traffic)"
    )


def _with(assessment: Assessment, **values: Any) -> Assessment:
    return dataclasses.replace(assessment, **values)


def _refused(assessment: Assessment, reason: str) -> Assessment:
    return _with(assessment, refusals=(*assessment.refusals, reason))


def _reward_range(experiment: Experiment, data: LoggedData) -> tuple[float, float] | None:
    """The configured reward bounds where they are real bounds (widened to any logged reward
    outside them, as bounds changed since), else None: the logged rewards' range."""
    low, high = experiment.reward_bounds()
    if max(abs(low), abs(high)) >= REWARD_MAGNITUDE_LIMIT:
        return None
    return min(low, float(data.rewards.min())), max(high, float(data.rewards.max()))


# -- output --------------------------------------------------------------------------------


def _finite(number: float) -> float | None:
    return number if math.isfinite(number) else None


def _estimate_dict(estimate: ope.Estimate | None) -> dict[str, Any] | None:
    if estimate is None:
        return None
    return {
        "value": _finite(estimate.value),
        "ci95_low": _finite(estimate.ci_low),
        "ci95_high": _finite(estimate.ci_high),
        "n": estimate.n,
    }


def _support_dict(support: Support | None) -> dict[str, Any] | None:
    if support is None:
        return None
    return {
        "decisions": support.decisions,
        "checked": support.checked,
        "supported": support.supported,
        "share": support.share,
        "unsupported_mass": support.unsupported_mass,
        "unsupported_reasons": dict(support.unsupported_reasons),
    }


def to_document(
    assessment: Assessment, *, experiment: str, window: float, action: str, forced: bool
) -> dict[str, Any]:
    """Everything ``promote -o json|yaml`` prints; ``action`` says what was done."""
    configurations = {}
    for which, law in (
        ("current", assessment.current_law),
        ("candidate", assessment.candidate_law),
    ):
        evaluation = assessment.current if which == "current" else assessment.candidate
        configurations[which] = {
            "law": dict(zip(assessment.arm_names, law, strict=True)),
            "estimates": {m: _estimate_dict(assessment.estimate(which, m)) for m in METHODS}
            if evaluation is not None
            else {},
            "effective_sample_size": None
            if evaluation is None
            else evaluation.diagnostics.effective_sample_size,
            "max_weight": None if evaluation is None else evaluation.diagnostics.max_weight,
            "support": _support_dict(assessment.support.get(which)),
        }
    return {
        "experiment": experiment,
        "window_seconds": window,
        "decisions": assessment.decisions,
        "skipped_without_reward": assessment.skipped,
        "evaluated_decisions": assessment.scope,
        "changes": {
            "evaluated": list(assessment.changes.evaluated),
            "unevaluated": list(assessment.changes.unevaluated),
            "update_mask": list(assessment.changes.paths),
        },
        "on_policy": _estimate_dict(assessment.on_policy),
        **configurations,
        "statistics_reset": assessment.reset,
        "fitted_on_decisions": assessment.fitted_on,
        "laws_per_decision": assessment.per_decision,
        "verdict": "apply" if assessment.approved else "refuse",
        "refusals": list(assessment.refusals),
        "forced": forced,
        "action": action,
        "warnings": list(assessment.warnings),
    }


def table_rows(assessment: Assessment) -> list[list[str]]:
    """The comparison table: one row per configuration (and the log's own mean)."""
    rows = [["CONFIGURATION", "DR [95% CI]", "IPS [95% CI]", "SNIPS [95% CI]", "ESS", "SUPPORT"]]
    for which in ("current", "candidate"):
        evaluation = assessment.current if which == "current" else assessment.candidate
        support = assessment.support.get(which)
        rows.append(
            [
                which,
                *(_cell(assessment.estimate(which, m)) for m in ("dr", "ips", "snips")),
                "-"
                if evaluation is None
                else f"{evaluation.diagnostics.effective_sample_size:.0f}",
                _support_cell(support),
            ]
        )
    rows.append(["on-policy (logged)", _cell(assessment.on_policy), "", "", "", ""])
    return rows


def _cell(estimate: ope.Estimate | None) -> str:
    if estimate is None:
        return "-"
    if estimate.refused:
        return "refused"
    return f"{estimate.value:.4f} [{estimate.ci_low:.4f}, {estimate.ci_high:.4f}]"


def _support_cell(support: Support | None) -> str:
    if support is None:
        return "-"
    if support.checked == 0:
        return "unchecked"
    text = f"{support.share:.1%}"
    return text if support.checked == support.decisions else f"{text} of {support.checked}"


def law_rows(assessment: Assessment) -> list[list[str]]:
    if assessment.per_decision:  # a contextual law differs per decision: show its mean
        rows = [["ARM", "CURRENT MEAN P(ARM)", "CANDIDATE MEAN P(ARM)"]]
    else:
        rows = [["ARM", "CURRENT P(ARM)", "CANDIDATE P(ARM)"]]
    for name, now, then in zip(
        assessment.arm_names, assessment.current_law, assessment.candidate_law, strict=True
    ):
        rows.append([name, f"{now:.4f}", f"{then:.4f}"])
    return rows
