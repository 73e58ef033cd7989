"""Model routing under SLOs, simulated: arms with several metrics, an objective, guardrails.

Each decision on arm a yields four metrics (the issue's examples): ``quality`` (1 with
probability quality_a, else 0), ``latency_ms`` (lognormal with median m_a and log-sd
sigma_a), ``cost_usd`` (a constant per call) and ``error`` (1 with probability error_a). The
arms' parameters change at given decisions (``changes``: an arm whose latency degrades, then
recovers), as in a piecewise-stationary study.

The policy learns the objective's scalarised reward sum_m w_m metric_m; regret is against the
best arm's expected objective at each decision (pseudo-regret). Guardrails run the service's
own code (``policies.guardrails``): per arm and rule the runner keeps (count, sum of y) of
the current window, kept as the service keeps it: in slots of a tenth of the rule's window
(``policies.guardrails.slot_width``), a slot read while it overlaps the window
(``window_reads``), so the window slides as the service's does and each rule is tested at
the same level (its confidence shared among the window's first slots). Windows are in
*decisions of the experiment* (the service's are seconds; in a simulation a decision is the
unit of time). Every transition starts the arm's data afresh (the service's new epoch), so
a quarantined arm is judged on its probe data of the current window since the quarantine (a
half-open circuit breaker with its own window); every decision it runs the
state machine (``Guardrails.advance``) and draws from the probe law (``guarded_law``) over
the policy's law (``policy.probabilities``: a policy whose law needs sampling makes the
study slow, so the example study uses policies with a closed-form law).

What is reported per policy: regret on the objective, trips that were *true* (the tripped
arm really violated a tripped rule at that decision: rate, exceedance probability or mean
computed from its parameters) and *false*, decisions from the start of a true violation to
the quarantine, and from its end to the recovery (runs that never got there are counted as
censored, not averaged).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special

from policies.base import Policy, Stats
from policies.guardrails import (
    GuardrailRule,
    Guardrails,
    MetricSpec,
    Override,
    compile_guardrails,
    guarded_law,
    slot_width,
    starts_per_window,
    window_reads,
)
from simulations.environments import FloatArray, IntArray

METRICS: dict[str, MetricSpec] = {
    "quality": MetricSpec("quality", "binary"),
    "latency_ms": MetricSpec("latency_ms", "continuous", 0.0, math.inf),
    "cost_usd": MetricSpec("cost_usd", "continuous", 0.0, 1.0),
    "error": MetricSpec("error", "binary"),
}
PARAMETERS = ("quality", "latency_median", "latency_sigma", "cost_usd", "error")


@dataclass(frozen=True)
class ArmParameters:
    """Every arm's parameters in one segment, arrays of shape (arms,)."""

    quality: FloatArray
    latency_median: FloatArray
    latency_sigma: FloatArray
    cost_usd: FloatArray
    error: FloatArray

    def mean(self, metric: str) -> FloatArray:
        if metric == "latency_ms":
            return np.asarray(self.latency_median * np.exp(self.latency_sigma**2 / 2))
        return np.asarray(getattr(self, metric), dtype=np.float64)

    def exceedance(self, threshold: float, above: bool) -> FloatArray:
        """P(latency > threshold) (``above``) or P(latency < threshold), per arm."""
        z = (math.log(threshold) - np.log(self.latency_median)) / self.latency_sigma
        below = special.ndtr(z)
        return np.asarray(1.0 - below if above else below)

    def sample(self, arms: IntArray, rng: np.random.Generator) -> dict[str, FloatArray]:
        """One observation of every metric for each run's chosen arm."""
        runs = arms.shape[0]
        return {
            "quality": (rng.random(runs) < self.quality[arms]).astype(np.float64),
            "latency_ms": self.latency_median[arms]
            * np.exp(self.latency_sigma[arms] * rng.standard_normal(runs)),
            "cost_usd": self.cost_usd[arms].astype(np.float64),
            "error": (rng.random(runs) < self.error[arms]).astype(np.float64),
        }


@dataclass(frozen=True)
class SloSetup:
    """The multi-metric arms, their schedule, the objective and the guardrails of a study."""

    arm_names: tuple[str, ...]
    segments: tuple[tuple[int, ArmParameters], ...]  # (first decision, parameters), from 0
    weights: Mapping[str, float]
    rules: tuple[GuardrailRule, ...]
    fallback: int

    @property
    def slots(self) -> list[int]:
        """Width of each rule's window slots, in decisions."""
        return [slot_width([rule.window]) for rule in self.rules]

    @property
    def guardrails(self) -> Guardrails:
        return compile_guardrails(self.rules, METRICS, len(self.arm_names), slot=self.slots)

    def objective_means(self, params: ArmParameters) -> FloatArray:
        total = np.zeros(len(self.arm_names))
        for metric, weight in self.weights.items():
            total = total + weight * params.mean(metric)
        return total

    def violating(self, params: ArmParameters) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """(arms, rules): does each arm truly violate each rule under ``params``?"""
        out = np.zeros((len(self.arm_names), len(self.rules)), dtype=bool)
        for r, rule in enumerate(self.rules):
            t = rule.threshold
            if rule.statistic == "quantile":
                q = float(rule.quantile or 0.0)
                if rule.bound == "max":
                    out[:, r] = params.exceedance(t, True) > 1.0 - q
                else:
                    out[:, r] = params.exceedance(t, False) > q
            else:
                mean = params.mean(rule.metric)
                out[:, r] = mean > t if rule.bound == "max" else mean < t
        return out


@dataclass(frozen=True)
class GuardrailOutcome:
    """Per run: trips true and false, delays to quarantine and to recovery (NaN: censored)."""

    true_trips: FloatArray  # (runs,)
    false_trips: FloatArray  # (runs,)
    to_quarantine: FloatArray  # (runs, episodes) decisions; NaN = never within the episode
    to_recover: FloatArray  # (runs, episodes) decisions; NaN = not by the horizon
    probes: FloatArray  # (runs,) share of decisions that were probes


def episodes(setup: SloSetup) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(decision, arm) at which an arm starts truly violating some rule, and at which it
    stops: the moments the delays are measured from."""
    starts: list[tuple[int, int]] = []
    ends: list[tuple[int, int]] = []
    before = np.zeros(len(setup.arm_names), dtype=bool)
    for at, params in setup.segments:
        now = np.asarray(setup.violating(params).any(axis=1), dtype=bool)
        starts += [(at, int(a)) for a in np.flatnonzero(now & ~before)]
        ends += [(at, int(a)) for a in np.flatnonzero(before & ~now)]
        before = now
    return starts, ends


def reads(
    rules: Sequence[GuardrailRule], widths: Sequence[int], ring: int, step: int
) -> FloatArray:
    """(rules, ring) 1.0 where the rule's window at ``step`` reads the slot that ring
    position holds (the rule's slot ``step // width - m`` sits at position
    ``(step // width - m) % ring``), 0.0 elsewhere."""
    out = np.zeros((len(rules), ring))
    for r, (rule, width) in enumerate(zip(rules, widths, strict=True)):
        current = step // width
        for m in range(ring):
            start = (current - m) * width
            out[r, (current - m) % ring] = float(window_reads(start, width, step, rule.window))
    return out


def simulate_slo(
    policy: Policy,
    setup: SloSetup,
    *,
    horizon: int,
    runs: int,
    seed: int,
    checkpoints: IntArray,
    progress: Callable[[int], None] | None = None,
) -> tuple[FloatArray, FloatArray, FloatArray, GuardrailOutcome]:
    """Run ``policy`` under the guardrails; returns (regret curves at ``checkpoints``,
    best-arm rate, allocation over the last 10%, guardrail outcome)."""
    env_rng, route_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    guard = setup.guardrails
    k, n_rules = len(setup.arm_names), len(setup.rules)
    rows = np.arange(runs)
    stats = Stats.zeros(k, (runs,))
    widths = setup.slots
    # A ring of slots per (run, arm, rule): enough for the window and the slot being
    # written; a rule sums the slots its window reads.
    ring = max(
        (starts_per_window(r.window, w) for r, w in zip(setup.rules, widths, strict=True)),
        default=1,
    )
    slot_n = np.zeros((runs, k, n_rules, ring))
    slot_s = np.zeros((runs, k, n_rules, ring))
    quarantined = np.zeros((runs, k), dtype=bool)
    tripped = np.zeros((runs, k, n_rules), dtype=bool)
    metric_of = [r.metric for r in setup.rules]
    starts, ends = episodes(setup)
    to_quarantine = np.full((runs, len(starts)), np.nan)
    to_recover = np.full((runs, len(ends)), np.nan)
    true_trips = np.zeros(runs)
    false_trips = np.zeros(runs)
    probes = np.zeros(runs)
    regret = np.zeros(runs)
    best_pulls = np.zeros(runs)
    window_start = horizon - max(1, round(horizon * 0.1))
    allocation = np.zeros((runs, k))
    curves = np.zeros((runs, checkpoints.size))
    next_checkpoint = 0
    segment = -1
    params = setup.segments[0][1]
    means = setup.objective_means(params)
    violating = setup.violating(params)
    for step in range(horizon):
        while segment + 1 < len(setup.segments) and setup.segments[segment + 1][0] <= step:
            segment += 1
            params = setup.segments[segment][1]
            means = setup.objective_means(params)
            violating = setup.violating(params)
        current = [step // w for w in widths]  # each rule's slot
        position = np.array([c % ring for c in current], dtype=np.int64)
        for r, w in enumerate(widths):
            if step % w == 0:  # a new slot: the oldest one in the ring leaves the window
                slot_n[:, :, r, position[r]] = 0.0
                slot_s[:, :, r, position[r]] = 0.0
        law = guarded_law(
            policy.probabilities(stats, None),
            quarantined,
            guard.probe_shares(tripped),
            setup.fallback,
        )
        cdf = np.cumsum(law.law, axis=1)
        arms = np.minimum((route_rng.random(runs)[:, None] >= cdf).sum(axis=1), k - 1)
        chosen = law.law[rows, arms]
        probes += route_rng.random(runs) * chosen < law.probe[rows, arms]
        regret += means.max() - means[arms]
        best_pulls += means[arms] >= means.max()
        if step >= window_start:
            allocation[rows, arms] += 1.0
        observed = params.sample(arms, env_rng)
        reward = np.zeros(runs)
        for metric, weight in setup.weights.items():
            reward += weight * observed[metric]
        policy.update_inplace(stats, arms, reward)
        for r, rule in enumerate(guard.rules):
            slot_n[rows, arms, r, position[r]] += 1.0
            slot_s[rows, arms, r, position[r]] += rule.observe(observed[metric_of[r]])
        read = reads(setup.rules, widths, ring, step)  # (rules, ring)
        verdicts = guard.evaluate((slot_n * read).sum(axis=-1), (slot_s * read).sum(axis=-1))
        new_q, new_tr = guard.advance(quarantined, tripped, Override.NONE, verdicts)
        trips = new_q & ~quarantined
        recoveries = quarantined & ~new_q
        if trips.any():
            really = (new_tr & violating[None]).any(axis=-1)
            true_trips += (trips & really).sum(axis=1)
            false_trips += (trips & ~really).sum(axis=1)
        changed = trips | recoveries
        slot_n[changed] = 0.0
        slot_s[changed] = 0.0
        quarantined, tripped = new_q, new_tr
        for e, (at, arm) in enumerate(starts):
            end = next((t for t, a in ends if a == arm and t > at), horizon)
            if at <= step < end:
                hit = np.isnan(to_quarantine[:, e]) & quarantined[:, arm]
                to_quarantine[hit, e] = step - at + 1
        for e, (at, arm) in enumerate(ends):
            if step >= at:
                hit = np.isnan(to_recover[:, e]) & ~quarantined[:, arm]
                to_recover[hit, e] = step - at + 1
        if step + 1 == checkpoints[next_checkpoint]:
            curves[:, next_checkpoint] = regret
            next_checkpoint += 1
        if progress is not None and (step + 1) % 100 == 0:
            progress(100)
    if progress is not None and horizon % 100:
        progress(horizon % 100)
    outcome = GuardrailOutcome(true_trips, false_trips, to_quarantine, to_recover, probes / horizon)
    totals = allocation.sum(axis=1, keepdims=True)
    return curves, best_pulls / horizon, allocation / np.maximum(totals, 1.0), outcome


# -- study files -----------------------------------------------------------------------------

ENV_FIELDS = ("type", "arms", "quality", "latency_ms", "cost_usd", "error", "changes")
RULE_FIELDS = (
    "metric", "statistic", "quantile", "max", "min", "window", "min_samples", "confidence",
    "probe_share",
)  # fmt: skip


def parse_setup(
    f: Any, env: Mapping[str, Any], top: Mapping[str, Any]
) -> tuple[SloSetup, dict[str, Any]]:
    """The ``type: slo`` environment with the study's ``objective``, ``guardrails`` and
    ``fallback_arm``; ``f`` is study.py's field reader (errors name the field and line)."""
    f.only(env, "environment", ENV_FIELDS)
    raw_arms = f.required(env, "arms", "environment")
    if not isinstance(raw_arms, list) or len(raw_arms) < 2:
        raise f.error("environment.arms", "expected a list of at least two arm names")
    names = tuple(f.text(a, f"environment.arms[{i}]") for i, a in enumerate(raw_arms))
    if len(set(names)) != len(names):
        raise f.error("environment.arms", "arm names must be unique")
    k = len(names)
    first = _parameters(f, env, "environment", k, None)
    segments: list[tuple[int, ArmParameters]] = [(0, first)]
    changes = env.get("changes") or []
    if not isinstance(changes, list):
        raise f.error("environment.changes", "expected a list of {at, arm, metric: value}")
    last = 0
    for i, item in enumerate(changes):
        path = f"environment.changes[{i}]"
        change = f.mapping(item, path)
        f.only(change, path, ("at", "arm", "quality", "latency_ms", "cost_usd", "error"))
        at = f.integer(f.required(change, "at", path), f"{path}.at", low=1)
        if at < last:
            raise f.error(f"{path}.at", "changes must be in order of their step")
        arm_name = f.text(f.required(change, "arm", path), f"{path}.arm")
        if arm_name not in names:
            raise f.error(f"{path}.arm", f"{arm_name!r} is not one of {', '.join(names)}")
        base = segments[-1][1]
        arm = names.index(arm_name)
        updated = _parameters(f, change, path, k, (base, arm))
        if at == last and at > 0:
            segments[-1] = (at, updated)
        else:
            segments.append((at, updated))
        last = at
    objective = f.mapping(f.required(top, "objective", ""), "objective")
    f.only(objective, "objective", ("weights",))
    raw_weights = f.mapping(f.required(objective, "weights", "objective"), "objective.weights")
    weights: dict[str, float] = {}
    for metric, weight in raw_weights.items():
        if metric not in METRICS:
            raise f.error(f"objective.weights.{metric}", f"not one of {', '.join(METRICS)}")
        weights[str(metric)] = f.number(weight, f"objective.weights.{metric}")
    rules = tuple(_rule(f, item, i) for i, item in enumerate(top.get("guardrails") or []))
    fallback_name = f.text(top.get("fallback_arm", names[0]), "fallback_arm")
    if fallback_name not in names:
        raise f.error("fallback_arm", f"{fallback_name!r} is not one of {', '.join(names)}")
    setup = SloSetup(names, tuple(segments), weights, rules, names.index(fallback_name))
    from policies.base import PolicyConfigError

    try:
        setup.guardrails  # noqa: B018 - compiling checks every rule against its metric
    except PolicyConfigError as exc:
        raise f.error(exc.field, exc.message) from None
    summary = {
        "type": "slo",
        "arms": list(names),
        "weights": weights,
        "guardrails": len(rules),
        "changes": [at for at, _ in segments[1:]],
    }
    return setup, summary


def _parameters(
    f: Any, raw: Mapping[str, Any], path: str, k: int, base: tuple[ArmParameters, int] | None
) -> ArmParameters:
    """Per-arm lists (``base`` None: every field required), or one arm's new values over
    ``base`` = (the parameters before the change, the arm)."""

    def read(
        source: Mapping[str, Any], where: str, key: str, current: FloatArray | None, **bounds: float
    ) -> FloatArray:
        if base is None or current is None:
            return np.asarray(
                f.per_arm(f.required(source, key, where), f"{where}.{key}", k, **bounds)
            )
        if key not in source:
            return current
        out = current.copy()
        out[base[1]] = f.number(source[key], f"{where}.{key}", **bounds)
        return out

    old = None if base is None else base[0]
    unit = {"low": 0.0, "high": 1.0}
    lat_raw = f.required(raw, "latency_ms", path) if base is None else raw.get("latency_ms", {})
    lat = f.mapping(lat_raw, f"{path}.latency_ms")
    f.only(lat, f"{path}.latency_ms", ("median", "sigma"))
    lat_path = f"{path}.latency_ms"
    return ArmParameters(
        quality=read(raw, path, "quality", None if old is None else old.quality, **unit),
        latency_median=read(
            lat, lat_path, "median", None if old is None else old.latency_median, low=1e-9
        ),
        latency_sigma=read(
            lat, lat_path, "sigma", None if old is None else old.latency_sigma, low=1e-9
        ),
        cost_usd=read(raw, path, "cost_usd", None if old is None else old.cost_usd, **unit),
        error=read(raw, path, "error", None if old is None else old.error, **unit),
    )


def _rule(f: Any, raw: Any, i: int) -> GuardrailRule:
    """One ``guardrails`` entry, with the service's field names (``max`` or ``min``)."""
    path = f"guardrails[{i}]"
    spec = f.mapping(raw, path)
    f.only(spec, path, RULE_FIELDS)
    bounds = [b for b in ("max", "min") if b in spec]
    if len(bounds) != 1:
        raise f.error(path, "give exactly one of max or min")
    bound = bounds[0]
    statistic = f.text(f.required(spec, "statistic", path), f"{path}.statistic")
    optional: dict[str, Any] = {}
    for key in ("window", "confidence", "probe_share"):
        if key in spec:
            optional[key] = f.number(spec[key], f"{path}.{key}")
    if "min_samples" in spec:
        optional["min_samples"] = f.integer(spec["min_samples"], f"{path}.min_samples", low=1)
    if "quantile" in spec:
        optional["quantile"] = f.number(spec["quantile"], f"{path}.quantile")
    return GuardrailRule(
        metric=f.text(f.required(spec, "metric", path), f"{path}.metric"),
        statistic=statistic,  # checked when compiled
        bound=bound,  # type: ignore[arg-type]
        threshold=f.number(spec[bound], f"{path}.{bound}"),
        **optional,
    )


def objective_schedule(setup: SloSetup) -> tuple[FloatArray, tuple[tuple[int, FloatArray], ...]]:
    """The objective's means per arm at the start and at each change: a piecewise-stationary
    description of the scalarised reward."""
    first = setup.objective_means(setup.segments[0][1])
    rest = tuple((at, setup.objective_means(p)) for at, p in setup.segments[1:])
    return first, rest


def describe_rules(rules: Sequence[GuardrailRule]) -> list[str]:
    out = []
    for r in rules:
        what = f"p{r.quantile * 100:g} " if r.quantile is not None else f"{r.statistic} "
        out.append(f"{what}{r.metric} {'<=' if r.bound == 'max' else '>='} {r.threshold:g}")
    return out
