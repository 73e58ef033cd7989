"""Evaluating a target policy on a decision log: targets, the replay method, and the report.

A target is a fixed arm, uniform, a fixed law over the arms (e.g. a configuration's law at
one state of its statistics, see ``bandit_router.analysis.promotion``), any serving
policy, a contextual policy at fixed statistics (its law computed from each decision's own
feature vector, rebuilt with the target's declared features: ``simulations.contextual_ope``),
or a per-decision law given outright (``Target.per_decision``: what ``promote`` computes for
a contextual configuration). Contextual and per-decision targets carry feature vectors, and
their doubly robust estimate uses the cross-fitted per-arm ridge reward model on them
instead of per-arm means.

For the importance-weighted estimators a serving policy decides at each logged decision on
the statistics of every reward logged before it (the service's statistics, had it switched
policy then). The replay method (Li et al. 2011) instead lets the policy learn from its own
choices: walk the log, keep a decision only where the policy picks the logged arm, and feed
the policy only those rewards. On a uniformly random log the kept decisions are distributed
as an on-policy run.

Support: where the log carries each decision's whole-procedure law, ``evaluate`` finds the
decisions on which the target would choose an arm the logger could not (a pinned, paused or
sticky decision, for any target that would route elsewhere). No estimator is unbiased there,
so the estimates are restricted to the supported decisions, with a warning that says how
many were left out and why, and refused when fewer than ``min_support`` of the decisions are
supported; the ``bounds`` interval covers the value over every decision regardless. Every
interval is clipped to the reward range.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

from policies.base import BoolArray, Policy, Stats
from policies.contextual import ContextualPolicy, ContextualStats
from simulations import contextual_ope, ope
from simulations.environments import FloatArray, IntArray
from simulations.logs import LoggedData

#: Relative spread of propensities around 1/K below which a log counts as uniformly random.
UNIFORM_TOLERANCE = 1e-3
#: Target probabilities are computed for this many decisions per vectorised policy call.
CHUNK = 4096
#: Below this share of supported decisions, estimates are refused rather than restricted.
MIN_SUPPORT = 0.5
#: Reasons whose decisions a rule fixed: without logged laws, they may lack support.
FIXED_REASONS = ("PINNED", "PAUSED", "STICKY", "HOLDOUT")


@dataclass(frozen=True, eq=False)
class Target:
    """What to evaluate: ``kind`` is "arm", "uniform", "law", "policy", "contextual" or
    "laws" (per decision)."""

    kind: str
    label: str
    arm: str | None = None
    policy: Policy | None = None
    law: tuple[float, ...] | None = None
    contextual_policy: ContextualPolicy | None = None
    contextual_stats: ContextualStats | None = None
    features: tuple[contextual_ope.FeatureSpec, ...] = ()
    laws: FloatArray | None = None  # (n, arms), "laws" only
    vectors: FloatArray | None = None  # (n, d) reward-model features, "laws" only

    @classmethod
    def fixed_arm(cls, arm: str) -> Target:
        return cls("arm", f"arm:{arm}", arm=arm)

    @classmethod
    def uniform(cls) -> Target:
        return cls("uniform", "uniform")

    @classmethod
    def fixed_law(cls, law: Sequence[float], label: str) -> Target:
        """The same probability of each arm (in the log's arm order) at every decision."""
        values = tuple(float(p) for p in law)
        if any(not 0.0 <= p <= 1.0 for p in values) or abs(sum(values) - 1.0) > 1e-9:
            raise ValueError(f"law of {label!r} is not a probability vector: {values}")
        return cls("law", label, law=values)

    @classmethod
    def serving(cls, policy: Policy, label: str | None = None) -> Target:
        return cls("policy", label or policy.name, policy=policy)

    @classmethod
    def contextual(
        cls,
        policy: ContextualPolicy,
        features: Sequence[contextual_ope.FeatureSpec],
        stats: ContextualStats,
        label: str | None = None,
    ) -> Target:
        """``policy`` at the fixed ``stats``, deciding from each logged decision's vector
        under ``features`` (see ``simulations.contextual_ope``)."""
        dim = contextual_ope.dimension(features)
        stats.check()
        if stats.dim != dim:
            raise ValueError(f"statistics have {stats.dim} columns, the features {dim}")
        return cls(
            "contextual",
            label or policy.name,
            contextual_policy=policy,
            contextual_stats=stats,
            features=tuple(features),
        )

    @classmethod
    def per_decision(cls, laws: FloatArray, vectors: FloatArray, label: str) -> Target:
        """P(arm) given for each decision of one log (rows in its order), with the feature
        vectors the reward model of DR regresses on."""
        if laws.ndim != 2 or vectors.ndim != 2 or laws.shape[0] != vectors.shape[0]:
            raise ValueError(f"laws {laws.shape} and vectors {vectors.shape} do not match")
        if np.any(laws < 0.0) or np.any(np.abs(laws.sum(axis=1) - 1.0) > 1e-9):
            raise ValueError(f"laws of {label!r} are not probability vectors")
        return cls("laws", label, laws=laws, vectors=vectors)

    def restricted(self, rows: BoolArray) -> Target:
        """The same target on ``data.subset(rows)`` (only per-decision laws depend on rows)."""
        if self.kind != "laws":
            return self
        assert self.laws is not None and self.vectors is not None
        return Target.per_decision(self.laws[rows], self.vectors[rows], self.label)


def target_probabilities(target: Target, data: LoggedData) -> FloatArray:
    """The target's probability of every arm at every logged decision, shape ``(n, arms)``."""
    n, k = data.size, data.n_arms
    if target.kind == "uniform":
        return np.full((n, k), 1.0 / k)
    if target.kind == "arm":
        if target.arm not in data.arm_names:
            raise ValueError(f"target arm {target.arm!r} is not one of {list(data.arm_names)}")
        probabilities = np.zeros((n, k))
        probabilities[:, data.arm_names.index(target.arm)] = 1.0
        return probabilities
    if target.kind == "law":
        assert target.law is not None
        if len(target.law) != k:
            raise ValueError(f"law of {target.label!r} has {len(target.law)} arms, the log {k}")
        return np.tile(np.asarray(target.law, dtype=np.float64), (n, 1))
    if target.kind == "laws":
        assert target.laws is not None
        if target.laws.shape != (n, k):
            raise ValueError(f"laws of {target.label!r}: shape {target.laws.shape}, not {(n, k)}")
        return target.laws
    if target.kind == "contextual":
        return contextual_ope.contextual_law(*_contextual(target), target_vectors(target, data).x)
    policy = _policy(target)
    history = _stats_before_each(policy, data)
    out = np.empty((n, k))
    for start in range(0, n, CHUNK):
        chunk = slice(start, start + CHUNK)
        out[chunk] = policy.probabilities(
            Stats(history.n[chunk], history.total[chunk], history.total_sq[chunk])
        )
    return out


def target_vectors(target: Target, data: LoggedData) -> contextual_ope.FeatureMatrix:
    """A contextual target's feature vector for every logged decision."""
    if len(data.context_maps) != data.size or len(data.attribute_maps) != data.size:
        raise ValueError(
            f"target {target.label!r} is contextual but the log carries no per-decision "
            "context and attributes"
        )
    return contextual_ope.feature_matrix(target.features, data.context_maps, data.attribute_maps)


def _contextual(target: Target) -> tuple[ContextualPolicy, ContextualStats]:
    if target.contextual_policy is None or target.contextual_stats is None:
        raise ValueError(f"target {target.label!r} has no contextual policy")
    return target.contextual_policy, target.contextual_stats


def fitted_target(
    policy: ContextualPolicy,
    features: Sequence[contextual_ope.FeatureSpec],
    data: LoggedData,
    *,
    share: float = contextual_ope.FIT_SHARE,
    label: str | None = None,
) -> tuple[Target, LoggedData]:
    """A learning contextual target at the statistics it would hold after the log's first
    ``share`` of decisions, and the rest of the log, which it is to be scored on (see
    ``simulations.contextual_ope``: no reward both trains and scores the target)."""
    cut = contextual_ope.split_point(data.size, share)
    head = np.arange(data.size) < cut
    probe = Target.contextual(
        policy,
        features,
        ContextualStats.zeros(data.n_arms, contextual_ope.dimension(features)),
        label,
    )
    train = data.subset(head)
    x = target_vectors(probe, train)
    keep = x.usable
    stats = contextual_ope.fit_statistics(
        policy, x.x[keep], train.arms[keep], train.rewards[keep], data.n_arms
    )
    text = label or policy.name
    return (
        Target.contextual(policy, features, stats, f"{text} (fitted on {cut} decisions)"),
        data.subset(~head),
    )


def _policy(target: Target) -> Policy:
    if target.policy is None:
        raise ValueError(f"target {target.label!r} has no policy")
    return target.policy


def _stats_before_each(policy: Policy, data: LoggedData) -> Stats:
    """Statistics as the service held them before each decision, updated by the policy itself
    (so discounting follows the policy's own rule)."""
    k = data.n_arms
    n_hist = np.empty((data.size, k))
    total_hist = np.empty((data.size, k))
    sq_hist = np.empty((data.size, k))
    stats = Stats.zeros(k)
    for i in range(data.size):
        n_hist[i], total_hist[i], sq_hist[i] = stats.n, stats.total, stats.total_sq
        stats = policy.update(stats, np.asarray(data.arms[i]), np.asarray(data.rewards[i]))
    return Stats(n_hist, total_hist, sq_hist)


@dataclass(frozen=True)
class ReplayResult:
    """Li et al. replay over ``replays`` independent passes (policy randomness only)."""

    estimate: ope.Estimate
    matched: float  # mean number of kept decisions per pass
    uniform_log: bool


def replay(
    target: Target,
    data: LoggedData,
    *,
    seed: int = 0,
    replays: int = 1,
    probabilities: FloatArray | None = None,
) -> ReplayResult:
    """The replay estimate: mean reward over the decisions where the target agreed with the log.

    Each pass is one batch element, so all passes advance together, one policy call per
    logged decision. The interval treats the kept rewards of a pass as independent draws
    (exact for a non-learning target, the usual approximation for a learning one) and
    averages the per-pass variances, ignoring the variance the averaging removes.
    """
    rng = np.random.default_rng(seed)
    n, k = data.size, data.n_arms
    kept = np.zeros((replays, n), dtype=bool)
    if target.kind == "policy":
        policy = _policy(target)
        stats = Stats.zeros(k, (replays,))
        for i in range(n):
            chosen = policy.select(stats, rng).arms
            match = chosen == data.arms[i]
            kept[:, i] = match
            logged_arm = np.full(replays, data.arms[i])
            reward = np.full(replays, data.rewards[i])
            stats = policy.update(stats, logged_arm, reward, match)
    else:
        if probabilities is None:
            probabilities = target_probabilities(target, data)
        cumulative = probabilities.cumsum(axis=1)
        draws = rng.random((replays, n))
        chosen = (draws[..., None] > cumulative[None]).sum(axis=2)
        kept = np.asarray(np.minimum(chosen, k - 1) == data.arms[None], dtype=bool)
    counts = kept.sum(axis=1)
    sums = (kept * data.rewards[None]).sum(axis=1)
    squares = (kept * data.rewards[None] ** 2).sum(axis=1)
    safe = np.maximum(counts, 1)
    values = sums / safe
    variances = np.where(
        counts > 1, (squares - counts * values**2) / np.maximum(counts - 1, 1), 0.0
    )
    value = float(values.mean())
    m = float(counts.mean())
    if m >= 2:
        quantile = float(special.stdtrit(max(1.0, m - 1), 0.975))
        half = quantile * math.sqrt(float((variances / safe).mean()))
    else:
        half = math.inf
    estimate = ope.Estimate("replay", value, value - half, value + half, round(m))
    return ReplayResult(estimate, m, is_uniform_log(data))


def is_uniform_log(data: LoggedData) -> bool:
    expected = 1.0 / data.n_arms
    return bool(np.all(np.abs(data.propensities - expected) <= UNIFORM_TOLERANCE * expected))


@dataclass(frozen=True)
class Support:
    """Where the logger could have chosen what the target chooses.

    ``checked`` decisions carry their whole-procedure law; of those, ``supported`` give the
    target's arms positive probability. ``unsupported_mass`` is the mean target probability
    on arms without support over the checked decisions; ``unsupported_reasons`` counts the
    unsupported decisions by the rule that decided them.
    """

    decisions: int
    checked: int
    supported: int
    unsupported_mass: float
    unsupported_reasons: tuple[tuple[str, int], ...] = ()

    @property
    def share(self) -> float:
        """Supported share of the checked decisions (1 when none could be checked)."""
        return self.supported / self.checked if self.checked else 1.0

    @property
    def complete(self) -> bool:
        return self.checked == self.decisions and self.supported == self.decisions


def support_of(data: LoggedData, target: FloatArray) -> tuple[Support, FloatArray]:
    """The support summary and the per-decision unsupported mass (NaN: unknown)."""
    if data.laws is None:
        return Support(data.size, 0, 0, 0.0), np.full(data.size, np.nan)
    mass = ope.unsupported_mass(data.laws, target)
    known = ~np.isnan(mass)
    lacking = known & (mass > 0.0)
    reasons: dict[str, int] = {}
    for reason, flag in zip(data.reasons, lacking, strict=True):
        if flag:
            reasons[reason] = reasons.get(reason, 0) + 1
    checked = int(known.sum())
    return (
        Support(
            decisions=data.size,
            checked=checked,
            supported=checked - int(lacking.sum()),
            unsupported_mass=float(mass[known].mean()) if checked else 0.0,
            unsupported_reasons=tuple(sorted(reasons.items())),
        ),
        mass,
    )


def reward_range_of(data: LoggedData) -> tuple[float, float]:
    """The logged rewards' range: the default bounds of any policy's value on this log."""
    return float(data.rewards.min()), float(data.rewards.max())


@dataclass(frozen=True)
class Evaluation:
    target: str
    estimates: tuple[ope.Estimate, ...]
    diagnostics: ope.WeightDiagnostics
    replay_matched: float
    warnings: tuple[str, ...]
    support: Support | None = None
    reward_range: tuple[float, float] = (-math.inf, math.inf)


Estimator = Callable[[IntArray, FloatArray, FloatArray, FloatArray], ope.Estimate]
ESTIMATORS: tuple[tuple[str, Estimator], ...] = (
    ("ips", ope.ips),
    ("snips", ope.snips),
    ("dr", ope.doubly_robust),
)


def evaluate(
    target: Target,
    data: LoggedData,
    *,
    seed: int = 0,
    replays: int = 1,
    methods: Sequence[str] = (),
    reward_range: tuple[float, float] | None = None,
    min_support: float = MIN_SUPPORT,
) -> Evaluation:
    """Every estimator for one target, with weight and support diagnostics and warnings.

    ``reward_range`` (default: the logged rewards' range) clips every interval; see the
    module docstring for how decisions without support are handled.
    """
    if data.size == 0:
        raise ValueError("the log has no decision with an observed reward")
    wanted = set(methods) or {"replay", "ips", "snips", "dr"}
    low, high = reward_range if reward_range is not None else reward_range_of(data)
    notes: list[str] = []
    vectors: FloatArray | None = None
    if target.kind == "contextual":
        data, vectors, notes = _contextual_scope(target, data)
        probabilities = contextual_ope.contextual_law(*_contextual(target), vectors)
    else:
        probabilities = target_probabilities(target, data)
        vectors = target.vectors if target.kind == "laws" else None
    support, mass = support_of(data, probabilities)
    usable = ~(mass > 0.0)  # supported, or unknown (NaN compares false)
    refuse = support.supported < support.checked and (
        support.share < min_support or int(usable.sum()) < 2
    )
    warnings = [*notes, *_support_warnings(data, support, min_support, refuse)]
    estimates: list[ope.Estimate] = []
    matched = math.nan
    scope, scoped, scoped_vectors = data, probabilities, vectors
    if support.supported < support.checked and not refuse:
        scope, scoped = data.subset(usable), probabilities[usable]
        scoped_vectors = None if vectors is None else vectors[usable]
    if "replay" in wanted:
        if refuse:
            estimates.append(ope.refused("replay", 0))
        else:
            result = replay(
                target,
                scope,
                seed=seed,
                replays=replays,
                probabilities=None if target.kind == "policy" else scoped,
            )
            estimates.append(result.estimate)
            matched = result.matched
            if not result.uniform_log:
                warnings.append(
                    "replay assumes a uniformly random log (propensity 1/K everywhere); this log "
                    "is not, so the replay estimate is biased: trust IPS/SNIPS/DR instead"
                )
    for name, estimator in ESTIMATORS:
        if name not in wanted:
            continue
        if refuse:
            estimates.append(ope.refused(name, 0))
        elif name == "dr" and scoped_vectors is not None:
            model = contextual_ope.cross_fitted_ridge(
                scoped_vectors, scope.arms, scope.rewards, scope.n_arms
            )
            estimates.append(
                ope.doubly_robust(scope.arms, scope.rewards, scope.propensities, scoped, model)
            )
        else:
            estimates.append(estimator(scope.arms, scope.rewards, scope.propensities, scoped))
    if support.supported < support.checked:
        estimates.append(
            ope.support_bounds(
                data.arms, data.rewards, data.propensities, probabilities, mass, (low, high)
            )
        )
    diagnostics = ope.diagnose_weights(scope.arms, scope.propensities, scoped)
    warnings.extend(diagnostics.warnings)
    if data.skipped:
        warnings.append(
            f"{data.skipped} decisions without an observed reward were left out (assumes rewards "
            "go missing independently of arm and outcome)"
        )
    return Evaluation(
        target.label,
        tuple(e.clipped(low, high) for e in estimates),
        diagnostics,
        matched,
        tuple(warnings),
        support,
        (low, high),
    )


def _contextual_scope(target: Target, data: LoggedData) -> tuple[LoggedData, FloatArray, list[str]]:
    """The decisions a contextual target can be scored on, their vectors, and warnings about
    the features the log lacks (``simulations.contextual_ope``)."""
    matrix = target_vectors(target, data)
    notes = [
        f"feature {name!r} is in no logged decision: every decision gets 0 (numeric) or "
        "'other' (categorical) for it, as the service would"
        for name in matrix.never_seen
    ]
    if matrix.missing_required:
        lacking = ", ".join(f"{name} on {count}" for name, count in matrix.missing_required)
        notes.append(
            f"required features missing ({lacking} decisions): the target's service would "
            f"refuse those requests, so the {int((~matrix.usable).sum())} decisions are left out"
        )
    if matrix.usable.all():
        return data, matrix.x, notes
    kept = data.subset(matrix.usable)
    if kept.size == 0:
        raise ValueError(f"target {target.label!r}: no decision carries its required features")
    return kept, matrix.x[matrix.usable], notes


def _support_warnings(
    data: LoggedData, support: Support, min_support: float, refused: bool
) -> list[str]:
    warnings = []
    if support.checked < support.decisions:
        fixed = [r for r in data.reasons if r in FIXED_REASONS]
        counts = ", ".join(f"{r} {fixed.count(r)}" for r in sorted(set(fixed)))
        what = (
            "none of its decisions"
            if support.checked == 0
            else (f"{support.decisions - support.checked} of its {support.decisions} decisions")
        )
        warnings.append(
            f"support cannot be checked: {what} carry the whole decision procedure's "
            "probabilities (a CSV log, or exported before they were logged)"
            + (
                f"; decisions fixed by a rule ({counts}) may lack support, and then every "
                "estimate is biased"
                if counts
                else ""
            )
        )
    if support.supported < support.checked:
        lacking = support.checked - support.supported
        reasons = ", ".join(f"{r} {n}" for r, n in support.unsupported_reasons)
        head = (
            f"no support: on {lacking} of {support.checked} decisions ({1 - support.share:.1%}: "
            f"{reasons}) the target puts probability on arms the logger could not choose "
            f"({support.unsupported_mass:.3f} per decision on average)"
        )
        if refused:
            warnings.append(
                f"{head}; estimates refused (supported share {support.share:.1%} < "
                f"{min_support:.0%}); only the bounds interval, which covers every decision "
                "whatever the unsupported arms earn, is given"
            )
        else:
            warnings.append(
                f"{head}; replay/IPS/SNIPS/DR are restricted to the {support.supported} "
                "supported decisions (their value on that traffic, not on all of it); the "
                "bounds interval covers every decision whatever the unsupported arms earn"
            )
    return warnings
