"""Per-arm guardrails: SLO rules, their sequential test, the quarantine state machine and the
probe law. Pure maths: the service and the simulations call the same functions.

**Rules.** A ``GuardrailRule`` is ``{metric, statistic: mean | rate | quantile, quantile,
max | min, window, min_samples, confidence, probe_share}`` (the experiment file's field
names; ``bound`` is "max" or "min", ``threshold`` its value). ``compile_guardrails`` checks
every rule against its metric's declaration (``MetricSpec``) and gives a ``Guardrails``: the
compiled rules (``Guardrail``) and the arrays the test needs.

**Reduction.** Every rule becomes observations y in [0, 1] and a boundary theta0 in (0, 1),
with VIOLATION meaning "the mean of y is above theta0":

=================  ========================  ===================
rule               y                         theta0
=================  ========================  ===================
rate, max T        value (0 or 1)            T
rate, min T        1 - value                 1 - T
quantile q, max T  1[value > T]              1 - q
quantile q, min T  1[value < T]              q
mean, max T        (value - lo) / (hi - lo)  (T - lo) / (hi - lo)
mean, min T        1 - that                  1 - (T - lo) / (hi - lo)
=================  ========================  ===================

"p99 latency <= 500" is "at most 1% of latencies above 500". A mean rule needs a metric with
finite bounds [lo, hi] (``supports_mean``); a threshold that puts theta0 outside (0, 1) could
never be violated, or never satisfied, and is refused. The caller keeps, per arm and rule,
n (count) and s (sum of ``Guardrail.observe(value)``), and nothing else.

**The test** (``policies.bounded_mean``): a rule is *violated* when the mixture
supermartingale against "mean <= theta0" reaches 1 / level (the level below), and
*satisfied* when the mirror one against "mean >= theta0" does; neither before ``min_samples``.
Both are anytime-valid: on data whose mean is at the boundary, the probability that the
verdict is ever reached, checked after every observation for ever, is at most the level the
test runs at. A *sliding* window is not one stream but a new one each time its oldest slot
leaves: the data from each first slot on is its own supermartingale. So a rule's test runs
at alpha / k (``Guardrail.alpha``), k = ``starts_per_window(window, slot)`` the most first
slots its window can have in any stretch of time one window long (11 for a window read in
slots of a tenth of its length), and by a union bound over them an arm whose data sits at
the threshold is falsely quarantined by the rule with probability at most alpha =
1 - confidence per window of time (with R rules, at most R alpha). Without ``slot`` (data
that is one stream, such as an objective constraint's running sums) k = 1.

**The state machine** (per arm; no clock of its own). The caller passes the data the arm is
judged on: while ACTIVE, the rule's current window; while QUARANTINED, the probe data
gathered since the quarantine began, within the current window too (a half-open circuit
breaker with its own window: old bad data must not keep a recovered arm out for ever).

- ACTIVE -> QUARANTINED when some rule is violated; the violated rules become ``tripped``.
- QUARANTINED: a rule violated on the probe data joins ``tripped`` (a Transition that keeps
  the state); -> ACTIVE when every tripped rule is satisfied on the probe data (then no rule
  is violated: the two verdicts exclude each other).
- Override HOLD: always ACTIVE; FORCE: always QUARANTINED (an arm forced in and released
  with nothing tripped returns to ACTIVE unless its probe data violates a rule).

On every transition the caller starts the data of the state entered afresh (a new window on
ACTIVE, new probe data on QUARANTINED): a verdict is never reached twice on the same data.

``Guardrails.next_state(state, tripped, override, n, s)`` is the scalar call (one arm, rich
``Transition`` for the audit log); ``Guardrails.advance(quarantined, tripped, override,
verdicts)`` does the same for arrays of arms and runs (the simulations).

**Probe law.** A quarantined arm q gets exactly its probe share p_q of the whole traffic;
the rest follows the bandit's law renormalised over the arms that are not quarantined:
law = sum_q p_q delta_q + (1 - sum_q p_q) bandit|active. If no active arm has mass, that
(1 - sum p) goes to the fallback arm, quarantined or not. ``guarded_law`` (arrays) and
``guarded_law_one`` (plain floats, the Route path) compute it; ``draw_guarded_one`` draws
the mixture component (probe, fallback or the bandit) from one uniform, which gives the
decision's reason (``REASON_GUARDRAIL``, ``REASON_FALLBACK`` or the bandit's own).

API (all public names)::

    MetricSpec(name, kind="continuous", lo=-inf, hi=inf); supports_mean(metric) -> bool
    GuardrailRule(metric, statistic, bound, threshold, quantile=None, window=600.0,
                  min_samples=50, confidence=0.95, probe_share=0.01)
    compile_rule(rule, metric, field="guardrails[0]") -> Guardrail
    compile_guardrails(rules, metrics, n_arms, field="guardrails", slot=None) -> Guardrails
    slot_width(windows) -> int;  starts_per_window(window, slot) -> int
    window_reads(slot_start, slot, now, window) -> bool
    Guardrail.observe(values) / observe_one(value) -> y;  Guardrail.theta0
    Guardrail.value_of(n, s) -> the statistic on the metric's scale (rate, mean, exceedance)
    Guardrails.evaluate(n, s) -> Verdicts(violated, satisfied, log_violation, log_satisfaction)
    Guardrails.next_state(state, tripped, override, n, s) -> Transition | None
    Guardrails.advance(quarantined, tripped, override, verdicts) -> (quarantined, tripped)
    Guardrails.probe_share(tripped) -> float;  Guardrails.probe_shares(tripped mask) -> array
    check_probe_shares(shares, field)
    guarded_law(law, quarantined, probe_shares, fallback) -> GuardedLaw
    guarded_law_one(law, quarantined, probe_shares, fallback) -> tuple[float, ...]
    draw_guarded_one(u, law, quarantined, probe_shares, fallback) -> (arm | None, reason | None)
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum, StrEnum
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from policies.base import BoolArray, FloatArray, IntArray, PolicyConfigError
from policies.bounded_mean import log_evidence_above, log_evidence_below

STATISTICS = ("mean", "rate", "quantile")
BOUNDS = ("max", "min")
#: Decision reasons of the probe law (the Route reasons without their ``REASON_`` prefix).
REASON_GUARDRAIL = "GUARDRAIL"
REASON_FALLBACK = "FALLBACK"


class ArmState(StrEnum):
    ACTIVE = "ACTIVE"
    QUARANTINED = "QUARANTINED"


class Override(IntEnum):
    """The operator's word on one arm: none, hold it out of quarantine, force it in."""

    NONE = 0
    HOLD = 1
    FORCE = 2


@dataclass(frozen=True)
class MetricSpec:
    """What a guardrail needs of a declared metric: its kind and its bounds (inf if none)."""

    name: str
    kind: Literal["binary", "continuous"] = "continuous"
    lo: float = -math.inf
    hi: float = math.inf

    @property
    def bounds(self) -> tuple[float, float]:
        return (0.0, 1.0) if self.kind == "binary" else (self.lo, self.hi)


def supports_mean(metric: MetricSpec) -> bool:
    """Can a ``mean`` rule guard this metric? Only with finite bounds (binary: [0, 1]): the
    test needs observations in a known interval, and an unbounded mean has no such test."""
    lo, hi = metric.bounds
    return math.isfinite(lo) and math.isfinite(hi) and lo < hi


@dataclass(frozen=True)
class GuardrailRule:
    """One rule as written in the experiment file (module docstring). ``window`` is in the
    caller's unit (seconds in the service, decisions in the simulations)."""

    metric: str
    statistic: Literal["mean", "rate", "quantile"]
    bound: Literal["max", "min"]
    threshold: float
    quantile: float | None = None
    window: float = 600.0
    min_samples: int = 50
    confidence: float = 0.95
    probe_share: float = 0.01

    def check(self, where: str = "guardrails[0]") -> None:
        """PolicyConfigError naming the field (``where.<field>``) if the rule alone is bad."""
        if self.statistic not in STATISTICS:
            raise PolicyConfigError(
                f"{where}.statistic", f"{self.statistic!r} is not one of {', '.join(STATISTICS)}"
            )
        if self.bound not in BOUNDS:
            raise PolicyConfigError(f"{where}.bound", f"{self.bound!r} is not max or min")
        if not math.isfinite(self.threshold):
            raise PolicyConfigError(f"{where}.{self.bound}", f"{self.threshold!r} is not finite")
        if self.statistic == "quantile":
            if self.quantile is None or not (0.0 < self.quantile < 1.0):
                raise PolicyConfigError(
                    f"{where}.quantile",
                    f"a quantile rule needs quantile in (0, 1), got {self.quantile!r}",
                )
        elif self.quantile is not None:
            raise PolicyConfigError(
                f"{where}.quantile", f"only quantile rules take a quantile ({self.statistic} rule)"
            )
        if not (math.isfinite(self.window) and self.window > 0.0):
            raise PolicyConfigError(f"{where}.window", f"must be > 0, got {self.window!r}")
        if not (float(self.min_samples).is_integer() and self.min_samples >= 1):
            raise PolicyConfigError(
                f"{where}.min_samples", f"must be a whole number >= 1, got {self.min_samples!r}"
            )
        if not (0.0 < self.confidence < 1.0):
            raise PolicyConfigError(
                f"{where}.confidence", f"must be in (0, 1), got {self.confidence!r}"
            )
        if not (0.0 < self.probe_share < 1.0):
            raise PolicyConfigError(
                f"{where}.probe_share", f"must be in (0, 1), got {self.probe_share!r}"
            )


@dataclass(frozen=True)
class Guardrail:
    """A rule reduced to y in [0, 1] and theta0 (module docstring); build with
    ``compile_rule``."""

    rule: GuardrailRule
    theta0: float
    #: "scaled": y = (value - lo) / (hi - lo); "above": 1[value > T]; "below": 1[value < T].
    transform: Literal["scaled", "above", "below"]
    flip: bool  # y = 1 - (the transform)
    lo: float = 0.0
    hi: float = 1.0
    #: Streams the rule's confidence is shared among: the first slots its sliding window
    #: can have within one window of time (``starts_per_window``); 1 for a fixed stream.
    starts: int = 1

    @property
    def alpha(self) -> float:
        """The level each of the rule's streams is tested at: (1 - confidence) / starts, so
        that all of them together trip falsely at most 1 - confidence per window."""
        return (1.0 - self.rule.confidence) / self.starts

    def observe(self, values: ArrayLike) -> FloatArray:
        """y for each metric value (vectorised). Values outside the declared bounds are the
        caller's to refuse; here they are clipped so y stays in [0, 1]."""
        v = np.asarray(values, dtype=np.float64)
        t = self.rule.threshold
        if self.transform == "above":
            y = (v > t).astype(np.float64)
        elif self.transform == "below":
            y = (v < t).astype(np.float64)
        else:
            y = np.clip((v - self.lo) / (self.hi - self.lo), 0.0, 1.0)
        return np.asarray(1.0 - y if self.flip else y, dtype=np.float64)

    def observe_one(self, value: float) -> float:
        """Scalar twin of ``observe`` (the Reward path)."""
        t = self.rule.threshold
        if self.transform == "above":
            y = 1.0 if value > t else 0.0
        elif self.transform == "below":
            y = 1.0 if value < t else 0.0
        else:
            y = min(1.0, max(0.0, (value - self.lo) / (self.hi - self.lo)))
        return 1.0 - y if self.flip else y

    def value_of(self, n: float, s: float) -> float:
        """The statistic the audit log shows: the rate or the mean on the metric's scale, and
        for a quantile rule the exceedance rate (share of values above T for max, below T for
        min; the rule allows at most 1 - q, resp. q). NaN before the first observation."""
        if n <= 0:
            return math.nan
        mean_y = s / n
        if self.transform != "scaled":
            return mean_y
        if self.flip:
            mean_y = 1.0 - mean_y
        return self.lo + mean_y * (self.hi - self.lo)


def compile_rule(
    rule: GuardrailRule, metric: MetricSpec, field: str = "guardrails[0]"
) -> Guardrail:
    """``rule`` checked against ``metric`` and reduced; PolicyConfigError naming the field."""
    rule.check(field)
    if rule.metric != metric.name:
        raise PolicyConfigError(f"{field}.metric", f"{rule.metric!r} is not {metric.name!r}")
    lo, hi = metric.bounds
    t = rule.threshold
    where = f"{field}.{rule.bound}"
    if rule.statistic == "quantile":
        q = float(rule.quantile or 0.0)
        if rule.bound == "max":
            if t >= hi:
                raise PolicyConfigError(
                    where, f"{t!r} is at or above {metric.name}'s max {hi!r}: never violated"
                )
            if t < lo:
                raise PolicyConfigError(
                    where, f"{t!r} is below {metric.name}'s min {lo!r}: always violated"
                )
            return Guardrail(rule, 1.0 - q, "above", False)
        if t <= lo:
            raise PolicyConfigError(
                where, f"{t!r} is at or below {metric.name}'s min {lo!r}: never violated"
            )
        if t > hi:
            raise PolicyConfigError(
                where, f"{t!r} is above {metric.name}'s max {hi!r}: always violated"
            )
        return Guardrail(rule, q, "below", False)
    if rule.statistic == "rate" and metric.kind != "binary":
        raise PolicyConfigError(
            f"{field}.statistic",
            f"a rate rule needs a binary metric; {metric.name!r} is {metric.kind}",
        )
    if not supports_mean(metric):
        raise PolicyConfigError(
            f"{field}.statistic",
            f"a mean rule needs a metric with finite min and max; {metric.name!r} has none "
            "(guard it with a quantile rule)",
        )
    scaled = (t - lo) / (hi - lo)
    theta0 = scaled if rule.bound == "max" else 1.0 - scaled
    if not (0.0 < theta0 < 1.0):
        raise PolicyConfigError(
            where, f"{t!r} must lie strictly between {metric.name}'s bounds {lo!r} and {hi!r}"
        )
    return Guardrail(rule, theta0, "scaled", rule.bound == "min", lo, hi)


def check_probe_shares(shares: Sequence[float], field: str = "probe_share") -> None:
    """Probe shares that could all be in force at once must leave some traffic: sum < 1."""
    total = math.fsum(shares)
    if not total < 1.0:
        raise PolicyConfigError(
            field, f"probe shares of all arms together must be < 1, got {total!r}"
        )


@dataclass(frozen=True)
class Verdicts:
    """Per rule (last axis) and any batch axes: the two verdicts and their log e-values."""

    violated: BoolArray
    satisfied: BoolArray
    log_violation: FloatArray
    log_satisfaction: FloatArray


@dataclass(frozen=True)
class RuleReading:
    """One rule's standing, as the audit log and ``get experiment`` show it."""

    rule: int
    metric: str
    statistic: str
    value: float  # Guardrail.value_of: rate, mean, or exceedance rate
    threshold: float
    bound: str
    samples: int
    verdict: Literal["violated", "satisfied", "undecided"]


@dataclass(frozen=True)
class Transition:
    """The arm's new ``state`` and ``tripped`` rules; ``cause`` "violated", "satisfied" or
    "override"; ``readings`` the rules that caused it (empty for an override)."""

    state: ArmState
    tripped: frozenset[int]
    cause: Literal["violated", "satisfied", "override"]
    readings: tuple[RuleReading, ...] = field(default=())


@dataclass(frozen=True)
class Guardrails:
    """The compiled rules of one experiment and their vectorised test."""

    rules: tuple[Guardrail, ...]

    @property
    def theta0(self) -> FloatArray:
        return np.array([g.theta0 for g in self.rules], dtype=np.float64)

    @property
    def log_level(self) -> FloatArray:
        """log(1 / alpha) per rule: the e-value a verdict needs."""
        return np.array([-math.log(g.alpha) for g in self.rules], dtype=np.float64)

    @property
    def min_samples(self) -> FloatArray:
        return np.array([g.rule.min_samples for g in self.rules], dtype=np.float64)

    def evaluate(self, n: ArrayLike, s: ArrayLike) -> Verdicts:
        """Both tests for every rule: ``n`` and ``s`` have the rules on their last axis."""
        n_ = np.asarray(n, dtype=np.float64)
        s_ = np.asarray(s, dtype=np.float64)
        theta0 = self.theta0
        up = log_evidence_above(n_, s_, theta0)
        down = log_evidence_below(n_, s_, theta0)
        enough = n_ >= self.min_samples
        level = self.log_level
        return Verdicts(enough & (up >= level), enough & (down >= level), up, down)

    def reading(self, rule: int, n: float, s: float, verdict: str) -> RuleReading:
        g = self.rules[rule]
        return RuleReading(
            rule,
            g.rule.metric,
            g.rule.statistic,
            g.value_of(n, s),
            g.rule.threshold,
            g.rule.bound,
            int(n),
            verdict,  # type: ignore[arg-type]
        )

    def next_state(
        self,
        state: ArmState,
        tripped: Collection[int],
        override: Override,
        n: Sequence[float],
        s: Sequence[float],
    ) -> Transition | None:
        """One arm's transition, or None when nothing changes (module docstring). ``n`` and
        ``s`` hold one (count, sum of y) per rule: the window data while ACTIVE, the probe
        data while QUARANTINED."""
        if override == Override.HOLD:
            if state == ArmState.QUARANTINED:
                return Transition(ArmState.ACTIVE, frozenset(), "override")
            return None
        if override == Override.FORCE:
            if state == ArmState.ACTIVE:
                return Transition(ArmState.QUARANTINED, frozenset(), "override")
            return None
        verdicts = self.evaluate(n, s)
        violated = [i for i in range(len(self.rules)) if verdicts.violated[i]]
        if state == ArmState.ACTIVE:
            if not violated:
                return None
            readings = tuple(self.reading(i, n[i], s[i], "violated") for i in violated)
            return Transition(ArmState.QUARANTINED, frozenset(violated), "violated", readings)
        new = [i for i in violated if i not in tripped]
        now = frozenset(tripped) | frozenset(new)
        if new:
            readings = tuple(self.reading(i, n[i], s[i], "violated") for i in new)
            return Transition(ArmState.QUARANTINED, now, "violated", readings)
        if all(verdicts.satisfied[i] for i in now):
            readings = tuple(self.reading(i, n[i], s[i], "satisfied") for i in sorted(now))
            return Transition(ArmState.ACTIVE, frozenset(), "satisfied", readings)
        return None

    def advance(
        self,
        quarantined: BoolArray,
        tripped: BoolArray,
        override: IntArray | int,
        verdicts: Verdicts,
    ) -> tuple[BoolArray, BoolArray]:
        """``next_state`` over arrays: ``quarantined`` (..., arms), ``tripped`` and the
        verdicts (..., arms, rules), ``override`` Override values broadcasting to
        (..., arms). Returns the new (quarantined, tripped)."""
        q = np.asarray(quarantined, dtype=bool)
        tr = np.asarray(tripped, dtype=bool)
        ov = np.broadcast_to(np.asarray(override, dtype=np.int64), q.shape)
        violated = verdicts.violated
        any_violated = violated.any(axis=-1)
        trips = ~q & any_violated
        grown = np.where(q[..., None], tr | violated, np.where(trips[..., None], violated, tr))
        recovered = q & (verdicts.satisfied | ~grown).all(axis=-1)
        new_q = (q | trips) & ~recovered
        new_tr = grown & new_q[..., None]
        hold = ov == Override.HOLD
        force = ov == Override.FORCE
        forced_in = force & ~q
        out_q = np.where(hold, False, np.where(force, True, new_q))
        out_tr = np.where(
            (hold | forced_in)[..., None], False, np.where(force[..., None], tr, new_tr)
        )
        return np.asarray(out_q, dtype=bool), np.asarray(out_tr, dtype=bool)

    def probe_share(self, tripped: Collection[int]) -> float:
        """A quarantined arm's probe share: the largest of its tripped rules' (of all rules
        when none tripped, i.e. forced in), so each rule's recovery data accrues at least at
        the rate its rule asked for."""
        chosen = list(tripped) or range(len(self.rules))
        return max((self.rules[i].rule.probe_share for i in chosen), default=0.0)

    def probe_shares(self, tripped: BoolArray) -> FloatArray:
        """``probe_share`` over arrays: ``tripped`` (..., rules) -> shares (...)."""
        tr = np.asarray(tripped, dtype=bool)
        shares = np.array([g.rule.probe_share for g in self.rules], dtype=np.float64)
        own = np.where(tr, shares, 0.0).max(axis=-1, initial=0.0)
        return np.asarray(np.where(tr.any(axis=-1), own, shares.max(initial=0.0)))


def slot_width(windows: Sequence[float]) -> int:
    """Width of the slots sliding windows of these lengths share: a tenth of the shortest,
    at least 1 (a whole number of seconds, or of decisions), so the shortest window is read
    as about 11 slots and is exact to a tenth of its length."""
    if not windows:
        return 1
    return int(max(1.0, min(windows) // 10))


def window_reads(slot_start: float, slot: float, now: float, window: float) -> bool:
    """Does the window ending ``now`` read the slot beginning at ``slot_start``? Yes once the
    slot ends after ``now - window`` (the service and the simulations share this; a slot
    that begins after ``now``, written by a replica whose clock is ahead, is read too)."""
    return slot_start + slot > now - window


def starts_per_window(window: float, slot: float) -> int:
    """The most distinct first slots a sliding window of ``window`` read in slots of
    ``slot`` (``window_reads``) has within any stretch of time ``window`` long: its first
    slot moves on by one slot at a time, so at most ceil(window / slot) + 1."""
    return math.ceil(window / slot) + 1


def compile_guardrails(
    rules: Sequence[GuardrailRule],
    metrics: Mapping[str, MetricSpec],
    n_arms: int,
    field: str = "guardrails",
    slot: float | Sequence[float] | None = None,
) -> Guardrails:
    """Every rule checked and reduced; the probe shares of ``n_arms`` arms all quarantined
    at once must sum below 1. PolicyConfigError names ``guardrails[i].<field>``. With
    ``slot`` (windows that slide in slots of that width, or one width per rule) each rule's
    level is shared among its window's first slots (module docstring)."""
    slots = [slot] * len(rules) if slot is None or isinstance(slot, int | float) else slot
    compiled = []
    for i, rule in enumerate(rules):
        where = f"{field}[{i}]"
        metric = metrics.get(rule.metric)
        if metric is None:
            raise PolicyConfigError(f"{where}.metric", f"{rule.metric!r} is not a declared metric")
        reduced = compile_rule(rule, metric, where)
        width = slots[i]
        if width is not None:
            reduced = replace(reduced, starts=starts_per_window(rule.window, width))
        compiled.append(reduced)
    guardrails = Guardrails(tuple(compiled))
    if compiled:
        check_probe_shares([guardrails.probe_share(())] * n_arms, f"{field}.probe_share")
    return guardrails


@dataclass(frozen=True)
class GuardedLaw:
    """The probe law and its components, each (..., arms): ``law`` = ``probe`` +
    ``fallback`` + ``bandit``. A draw of arm i is a probe with probability probe_i / law_i,
    a fallback with fallback_i / law_i, else the bandit's own decision."""

    law: FloatArray
    probe: FloatArray
    fallback: FloatArray
    bandit: FloatArray


def guarded_law(
    law: ArrayLike, quarantined: ArrayLike, probe_shares: ArrayLike, fallback: int
) -> GuardedLaw:
    """The probe law over a batch (module docstring). ``law`` (..., arms) is the bandit's law
    (capped etc.), ``quarantined`` a mask and ``probe_shares`` per-arm shares of the whole
    traffic, both broadcasting to it."""
    p = np.asarray(law, dtype=np.float64)
    q = np.broadcast_to(np.asarray(quarantined, dtype=bool), p.shape)
    probe = np.where(q, np.broadcast_to(np.asarray(probe_shares, dtype=np.float64), p.shape), 0.0)
    rest = 1.0 - probe.sum(axis=-1, keepdims=True)
    active = np.where(q, 0.0, p)
    mass = active.sum(axis=-1, keepdims=True)
    has_mass = mass > 0.0
    bandit = np.where(has_mass, active * rest / np.where(has_mass, mass, 1.0), 0.0)
    to_fallback = np.where(has_mass, 0.0, rest)
    fb = np.zeros_like(p)
    fb[..., fallback] = to_fallback[..., 0]
    return GuardedLaw(probe + fb + bandit, probe, fb, bandit)


def guarded_law_one(
    law: Sequence[float],
    quarantined: Collection[int],
    probe_shares: Mapping[int, float],
    fallback: int,
) -> tuple[float, ...]:
    """Scalar twin of ``guarded_law(...).law`` (plain floats: the Route path).
    ``probe_shares`` needs an entry for every quarantined arm."""
    if not quarantined and any(p > 0.0 for p in law):
        return tuple(law)
    rest = 1.0 - sum(probe_shares[i] for i in quarantined)
    mass = sum(p for i, p in enumerate(law) if i not in quarantined)
    if mass > 0.0:
        scale = rest / mass
        out = [0.0 if i in quarantined else p * scale for i, p in enumerate(law)]
    else:
        out = [0.0] * len(law)
        out[fallback] = rest
    for i in quarantined:
        out[i] += probe_shares[i]
    return tuple(out)


def draw_guarded_one(
    u: float,
    law: Sequence[float],
    quarantined: Collection[int],
    probe_shares: Mapping[int, float],
    fallback: int,
) -> tuple[int | None, str | None]:
    """The mixture component of one decision from a uniform ``u`` in [0, 1): (arm,
    ``REASON_GUARDRAIL``) for a probe, (``fallback``, ``REASON_FALLBACK``) when no active
    arm has mass, else (None, None): draw from the bandit over the active arms (the law
    renormalised) and keep its reason. The decision's propensity is
    ``guarded_law_one(...)[arm]`` in every case."""
    acc = 0.0
    for i in sorted(quarantined):
        acc += probe_shares[i]
        if u < acc:
            return i, REASON_GUARDRAIL
    if all(p <= 0.0 for i, p in enumerate(law) if i not in quarantined):
        return fallback, REASON_FALLBACK
    return None, None
