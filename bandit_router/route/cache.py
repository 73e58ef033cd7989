"""Each replica's in-process copy of every experiment, so Route never waits on Redis.

The cache refreshes in the background every ``refresh_interval`` (100 ms by default) and at
once when an Admin change is announced on the changes channel, so an operator's pin or kill
switch reaches every replica well within a second. If Redis goes away, Route keeps serving
from the last copy (its age is exported as a metric) rather than failing its callers.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from bandit_router.model.experiments import Experiment
from bandit_router.route.features import FeatureSpace
from bandit_router.route.guard_view import guard_view
from bandit_router.store.errors import STORE_ERRORS
from bandit_router.store.keys import context_fields
from bandit_router.store.redis_store import ExperimentState, Store
from bandit_router.tasks import cancel_and_wait
from policies import (
    ContextualPolicy,
    ContextualStats,
    Policy,
    PredrawnDecisions,
    PreparedModel,
    ScalarStats,
    Stats,
)
from policies.contextual import pick_from_law
from policies.controls import cap_leftover, cap_probabilities_one, floor_probabilities_one

if TYPE_CHECKING:
    from bandit_router.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

PROPENSITY_CACHE_SIZE = 64
#: Feature vectors whose contextual law one state keeps (categorical and one-hot features
#: repeat: a quadrature per distinct vector and state, not per request).
CONTEXTUAL_LAW_CACHE_SIZE = 1024


def contextual_stats(state: ExperimentState, dim: int) -> ContextualStats:
    """Per-arm (n, A, b) of a contextual experiment from its statistics hash (absent = 0;
    A is stored as its upper triangle: ``store.keys.context_fields``)."""
    names = state.experiment.arm_names
    stats = ContextualStats.zeros(len(names), dim)
    raw = state.stats
    for k, arm in enumerate(names):
        stats.n[k] = float(raw.get(f"{arm}:n", 0.0))
        fields = context_fields(arm, dim)
        position = 0
        for i in range(dim):
            for j in range(i, dim):
                value = raw.get(fields[position])
                position += 1
                if value is not None:
                    stats.gram[k, i, j] = stats.gram[k, j, i] = float(value)
        for i in range(dim):
            value = raw.get(fields[position + i])
            if value is not None:
                stats.b[k, i] = float(value)
    return stats


class LiveLaw(NamedTuple):
    """A contextual decision's law for one feature vector (every arm's, 0 if ineligible) and
    the arms' means x.theta: a Route draws from the law, so the propensities it logs are
    exactly what it sampled, and says it explored when an eligible arm's mean is larger."""

    law: tuple[float, ...]
    means: tuple[float, ...]

    def pick(self, eligible: tuple[int, ...], rng: random.Random) -> int:
        """One arm of the law."""
        return pick_from_law(self.law, eligible, rng.random())

    def explored(self, arm: int, eligible: tuple[int, ...]) -> bool:
        means = self.means
        return any(means[i] > means[arm] for i in eligible)


@dataclass(frozen=True)
class ContextualState:
    """What a contextual Route needs from one state, prepared in the background refresh
    (``policy.prepare``: each arm's mean and inverse Cholesky factor), never per request."""

    policy: ContextualPolicy
    stats: ContextualStats
    model: PreparedModel
    space: FeatureSpace
    #: ``Experiment.feature_space`` and ``PolicySpec.statistics_kind`` of this config.
    space_id: str
    kind: str
    _laws: OrderedDict[tuple[tuple[float, ...], tuple[int, ...]], LiveLaw] = field(
        default_factory=OrderedDict
    )

    def live(self, x: list[float], eligible: tuple[int, ...]) -> LiveLaw:
        """The policy's exact law for ``x`` in this state, and the arms' means; the most
        recent distinct vectors are kept, since a state's law for a vector never changes."""
        key = (tuple(x), eligible)
        cached = self._laws.get(key)
        if cached is not None:
            self._laws.move_to_end(key)
            return cached
        live = LiveLaw(*self.policy.law_one(self.model, x, eligible))
        self._laws[key] = live
        if len(self._laws) > CONTEXTUAL_LAW_CACHE_SIZE:
            self._laws.popitem(last=False)
        return live

    @classmethod
    def build(cls, state: ExperimentState) -> ContextualState:
        experiment = state.experiment
        policy = experiment.policy.build_contextual()
        space = FeatureSpace(experiment.context_features)
        stats = contextual_stats(state, space.dim)
        return cls(
            policy,
            stats,
            policy.prepare(stats),
            space,
            experiment.feature_space,
            experiment.policy.statistics_kind,
        )


def capped_part(
    law: Sequence[float], eligible: tuple[int, ...], fallback: int | None
) -> dict[int, float]:
    """A capped law (``cap_probabilities_one``) as a mapping: every eligible arm, then the
    fallback arm when it is not eligible and serves the caps' leftover."""
    part = {i: law[i] for i in eligible}
    if fallback is not None and fallback not in part and law[fallback] > 0.0:
        part[fallback] = law[fallback]
    return part


def burn_in_law(
    experiment: Experiment, eligible: tuple[int, ...], fallback: int | None = None
) -> dict[int, float]:
    """Burn-in's law: uniform over the eligible arms, capped by ``max_share`` (the leftover of
    caps summing below 1 to ``fallback``, or relaxed without one: ``policies.controls``)."""
    uniform = 1.0 / len(eligible)
    caps = experiment.cap_of
    if not caps:
        return dict.fromkeys(eligible, uniform)
    capped = cap_probabilities_one(
        [uniform if i in eligible else 0.0 for i in range(len(experiment.arms))],
        eligible,
        caps,
        fallback,
    )
    return capped_part(capped, eligible, fallback)


class LawDraw:
    """Draws (arm, explored) from an explicit law by inverting its cumulative distribution:
    one uniform and a bisection per decision. Capped experiments decide with it, since the
    capped law is not a mixture the policy can sample on its own (``policies.controls``).

    ``fallback`` = (arm, m): the leftover of caps summing below 1, a last segment of mass m
    after the bandit's ``law`` (which then sums to 1 - m); ``decide`` says when the uniform
    fell in it (a ``REASON_FALLBACK`` decision). ``pick`` and ``draw`` ignore the distinction
    (the plain Route path, which never has a leftover)."""

    __slots__ = ("_arms", "_cumulative", "_explored", "_fallback_at")

    def __init__(
        self,
        law: Mapping[int, float],
        explored: Mapping[int, bool],
        fallback: tuple[int, float] | None = None,
    ) -> None:
        arms = [i for i, p in law.items() if p > 0.0]
        total = 0.0
        cumulative = []
        for i in arms:
            total += law[i]
            cumulative.append(total)
        self._fallback_at = -1
        if fallback is not None and fallback[1] > 0.0:
            self._fallback_at = len(arms)
            arms.append(fallback[0])
            cumulative.append(total + fallback[1])
        self._arms = tuple(arms)
        self._cumulative = tuple(cumulative)
        self._explored = explored

    def decide(self, rng: random.Random) -> tuple[int, bool, bool]:
        """(arm, explored, fallback) from one uniform: ``fallback`` when the uniform fell in
        the leftover's segment (then ``explored`` is False)."""
        arms = self._arms
        position = bisect.bisect_right(self._cumulative, rng.random() * self._cumulative[-1])
        position = min(position, len(arms) - 1)
        arm = arms[position]
        if position == self._fallback_at:
            return arm, False, True
        return arm, self._explored.get(arm, False), False

    def pick(self, rng: random.Random) -> int:
        """One arm of the law."""
        arms = self._arms
        # u * total: the sum of the law may be 1 - 1 ulp; the last arm takes what remains
        position = bisect.bisect_right(self._cumulative, rng.random() * self._cumulative[-1])
        return arms[min(position, len(arms) - 1)]

    def draw(self, rng: random.Random) -> tuple[int, bool]:
        """(arm, explored): the interface of ``PredrawnDecisions.draw``."""
        arm = self.pick(rng)
        return arm, self._explored[arm]


def capped_law_draw(
    law: Mapping[int, float],
    eligible: tuple[int, ...],
    caps: Mapping[int, float],
    fallback: int | None,
    explored: Mapping[int, bool],
) -> LawDraw:
    """The sampler of a capped law (``law``, from ``cap_probabilities_one`` with this
    ``fallback``): when the eligible arms' caps leave a leftover m for the fallback arm, the
    bandit's part is the caps themselves and the fallback a segment of its own, so a draw
    knows whether it was the fallback's (``LawDraw.decide``)."""
    leftover = 0.0 if fallback is None else cap_leftover(eligible, caps)
    if leftover > 0.0:
        assert fallback is not None
        return LawDraw({i: caps[i] for i in eligible}, explored, (fallback, leftover))
    return LawDraw(law, explored)


def whole_law(
    experiment: Experiment,
    arm_index: dict[str, int],
    eligible: tuple[int, ...],
    burning: bool,
    mixed: dict[int, float],
    fallback: int | None = None,
) -> dict[str, float]:
    """P(arm) under the whole random part of Route (see ``CachedExperiment.decision_law``):
    h q(arm) + (1 - h) r(arm), with r uniform in burn-in (capped by ``max_share``, the caps'
    leftover to ``fallback``) and ``mixed`` (the floored, capped policy's law, the fallback
    arm included when it serves a leftover) otherwise."""
    share = experiment.holdout_share
    uniform = 1.0 / len(eligible)
    after = burn_in_law(experiment, eligible, fallback) if burning else mixed
    control = arm_index.get(experiment.holdout_control_arm)
    if control is not None and control in eligible:
        held = {i: 1.0 if i == control else 0.0 for i in eligible}
    else:
        held = dict.fromkeys(eligible, uniform)
    names = experiment.arm_names
    # ``after`` covers the eligible arms, and the fallback arm (last) if it takes a leftover
    return {names[i]: share * held.get(i, 0.0) + (1.0 - share) * p for i, p in after.items()}


@dataclass
class CachedExperiment:
    """One experiment as a replica decides from it: config, policy and statistics."""

    experiment: Experiment
    policy: Policy
    stats: ScalarStats
    decisions: tuple[float, ...]
    state_version: int
    fetched_at: float
    arm_index: dict[str, int]
    active: tuple[int, ...]
    reward_bounds: tuple[float, float]
    _propensities: OrderedDict[tuple[int, ...], tuple[float, ...]] = field(
        default_factory=OrderedDict
    )
    _mixed: dict[tuple[int, ...], dict[int, float]] = field(default_factory=dict)
    _named: dict[tuple[int, ...], dict[str, float]] = field(default_factory=dict)
    _laws: dict[tuple[tuple[int, ...], bool, bool], dict[str, float]] = field(default_factory=dict)
    _certain: dict[int, dict[str, float]] = field(default_factory=dict)
    _capped_draws: dict[tuple[tuple[int, ...], bool, bool], LawDraw] = field(default_factory=dict)
    #: The router's precomputed plain-route plan for this state (``router.PlainRoute``), or
    #: None until built; reset whenever something it was built from changes.
    route_plan: object | None = None
    _block: PredrawnDecisions | None = None
    #: Contextual experiments: the prepared model the policy decides from. ``policy`` is
    #: then the context-free model of the arms' marginal rewards (``PolicySpec.build``),
    #: which reports and gauges read; Route decides with this.
    contextual: ContextualState | None = None
    #: Experiments that declare context_features: builds their feature vectors.
    space: FeatureSpace | None = None
    #: Guardrails or objective constraints are declared (``route.guard_view``): then
    #: ``active`` leaves out constraint-excluded arms, quarantined arms get ``probes``, and
    #: ``fallback`` serves when no arm is eligible.
    guarded: bool = False
    enabled: tuple[int, ...] = ()
    probes: tuple[tuple[int, float], ...] = ()
    fallback: int = 0
    constrained: Mapping[int, str] = field(default_factory=dict)
    #: Capped experiments: the arm that serves the leftover of caps summing below 1
    #: (``fallback_arm``, whatever its guardrail state), or None when it is disabled (then
    #: the caps are relaxed: ``policies.controls``). None without caps.
    cap_fallback: int | None = None
    #: Experiments with metrics: (arm, metric) -> (count, sum) of the declared metrics,
    #: from the same read as the rest (the per-metric gauges show them).
    metric_sums: Mapping[tuple[str, str], tuple[float, float]] = field(default_factory=dict)

    @classmethod
    def build(cls, state: ExperimentState, policy: Policy | None = None) -> CachedExperiment:
        experiment = state.experiment
        names = experiment.arm_names
        policy = policy or experiment.decision_policy.build()
        contextual = ContextualState.build(state) if experiment.policy.contextual else None
        space = None
        if contextual is not None:
            space = contextual.space
        elif experiment.context_features:
            space = FeatureSpace(experiment.context_features)

        def column(suffix: str) -> tuple[float, ...]:
            return tuple(state.arm_stat(arm, suffix) for arm in names)

        active = tuple(i for i, arm in enumerate(experiment.arms) if arm.active)
        view = None
        if experiment.guardrails or experiment.constraints:
            view = guard_view(experiment, state.stats)
            active = view.eligible

        return cls(
            experiment=experiment,
            policy=policy,
            stats=ScalarStats(column("n"), column("sum"), column("sum_sq")),
            decisions=column("decisions"),
            state_version=state.state_version,
            fetched_at=time.monotonic(),
            arm_index={arm: index for index, arm in enumerate(names)},
            active=active,
            reward_bounds=experiment.reward_bounds(),
            contextual=contextual,
            space=space,
            guarded=view is not None,
            enabled=active if view is None else view.enabled,
            probes=() if view is None else view.probes,
            fallback=0 if view is None else view.fallback,
            constrained={} if view is None else view.constrained,
            cap_fallback=(
                experiment.fallback_index
                if experiment.cap_of and experiment.arms[experiment.fallback_index].enabled
                else None
            ),
            metric_sums={
                (arm, spec.name): (
                    state.arm_stat(arm, f"m:{spec.name}:count"),
                    state.arm_stat(arm, f"m:{spec.name}:total"),
                )
                for arm in names
                for spec in experiment.metrics
            },
        )

    def propensities(self, eligible: tuple[int, ...]) -> tuple[float, ...]:
        """The policy's P(arm) for this state and eligible set, computed once per refresh.

        Exact propensities can cost a quadrature (Thompson sampling), far too much per call
        but nothing per refresh; recent eligible sets are kept in a small LRU.
        """
        cached = self._propensities.get(eligible)
        if cached is not None:
            self._propensities.move_to_end(eligible)
            return cached
        mask = np.zeros(len(self.arm_index), dtype=bool)
        mask[list(eligible)] = True
        probabilities = self.policy.probabilities(self.stats.to_stats(), mask)
        result = tuple(float(p) for p in probabilities)
        self._propensities[eligible] = result
        if len(self._propensities) > PROPENSITY_CACHE_SIZE:
            self._propensities.popitem(last=False)
        return result

    def mixed_propensities(
        self, eligible: tuple[int, ...], relax: bool = False
    ) -> dict[int, float]:
        """Propensities with the exploration floor mixed in: f + (1 - K f) p, per eligible arm,
        then capped by ``max_share`` when the experiment declares caps.

        Uncapped, with probability K f the router picks uniformly, otherwise it asks the
        policy, so this is exactly the law of the routed arm (``policies.controls``); capped,
        the router draws from this law itself (``capped_draw``). When the eligible arms are
        all capped and their caps sum below 1, the leftover goes to ``cap_fallback`` (a key of
        its own if it is not eligible), unless ``relax`` (the request excludes the fallback
        arm): then the caps are relaxed, and nothing is cached (a rare request).
        """
        cached = None if relax else self._mixed.get(eligible)
        if cached is None:
            floored = floor_probabilities_one(
                self.propensities(eligible), eligible, self.experiment.exploration_floor
            )
            caps = self.experiment.cap_of
            fallback = None if relax else self.cap_fallback
            if caps:  # max_share: the floored law capped, excess to the uncapped arms
                floored = cap_probabilities_one(floored, eligible, caps, fallback)
                cached = capped_part(floored, eligible, fallback)
            else:
                cached = {i: floored[i] for i in eligible}
            if relax:
                return cached
            if len(self._mixed) >= PROPENSITY_CACHE_SIZE:
                self._mixed.clear()
            self._mixed[eligible] = cached
        return cached

    def named_propensities(
        self, eligible: tuple[int, ...], relax: bool = False
    ) -> dict[str, float]:
        """``mixed_propensities`` keyed by arm name: what the decision log records."""
        cached = None if relax else self._named.get(eligible)
        if cached is None:
            names = self.experiment.arm_names
            mixed = self.mixed_propensities(eligible, relax)
            cached = {names[i]: p for i, p in mixed.items()}
            if relax:
                return cached
            if len(self._named) >= PROPENSITY_CACHE_SIZE:
                self._named.clear()
            self._named[eligible] = cached
        return cached

    def decision_law(
        self, eligible: tuple[int, ...], burning: bool, relax: bool = False
    ) -> dict[str, float]:
        """P(arm) under the whole random part of Route, keyed by arm name: what the log records.

        Past the deterministic rules (pins, pause, a sticky unit's held arm), a decision is a
        holdout with probability h (the control arm, or uniform over the eligible arms), else
        a burn-in draw (uniform) or the floored policy's draw. So every eligible arm has
        P(arm) = h q(arm) + (1 - h) r(arm), whichever branch the decision then took, and
        importance weights with this law are unbiased for any target (a holdout to the control
        arm still has support for the other arms). Without holdout or burn-in this is
        ``named_propensities`` itself (the same mapping, so log rows keep sharing it).
        A capped experiment's law includes the fallback arm's leftover (``relax``: see
        ``mixed_propensities``).
        """
        share = self.experiment.holdout_share
        if share <= 0.0 and not burning:
            return self.named_propensities(eligible, relax)
        key = (eligible, burning, relax)
        cached = self._laws.get(key)
        if cached is None:
            mixed = {} if burning else self.mixed_propensities(eligible, relax)
            fallback = None if relax else self.cap_fallback
            cached = whole_law(self.experiment, self.arm_index, eligible, burning, mixed, fallback)
            if len(self._laws) >= PROPENSITY_CACHE_SIZE:
                self._laws.clear()
            self._laws[key] = cached
        return cached

    def certain(self, arm: int) -> dict[str, float]:
        """The law of a decision a rule fixed (pin, pause, sticky unit): all mass on ``arm``.

        One mapping per arm and state, so a flush of pinned decisions writes one table.
        """
        cached = self._certain.get(arm)
        if cached is None:
            cached = self._certain[arm] = {self.experiment.arm_names[arm]: 1.0}
        return cached

    def draw(self, eligible: tuple[int, ...], rng: random.Random) -> tuple[int, bool]:
        """One policy decision for this state: (arm, explored).

        For the common case (no arm excluded) decisions come from a block pre-drawn with the
        policy's vectorised ``select`` (``policies.PredrawnDecisions``): independent draws of
        exactly the policy's law, at ~0.5 µs each instead of a scalar draw's 3-5 µs. The block
        belongs to this state; a refresh with new statistics builds a new entry and a new
        block. Requests that exclude arms use the scalar ``select_one`` (same law, tested).
        """
        if eligible != self.active:
            return self.policy.select_one(self.stats, rng, eligible)
        return self.predrawn().draw(rng)

    def predrawn(self) -> PredrawnDecisions:
        """This state's block of pre-drawn decisions over every active arm (built once)."""
        block = self._block
        if block is None:
            block = self._block = PredrawnDecisions(self.policy, self.stats, self.active)
        return block

    def capped_draw(self, eligible: tuple[int, ...], burning: bool, relax: bool = False) -> LawDraw:
        """A capped experiment's sampler of its bandit law (burn-in's capped uniform, or the
        floored, capped policy law) for this state and eligible set, built once per state;
        with the caps' leftover as the fallback's own segment (``capped_law_draw``).

        ``explored`` is the policy's notion (the arm is not greedy), as for uncapped draws.
        """
        key = (eligible, burning, relax)
        cached = self._capped_draws.get(key)
        if cached is None:
            fallback = None if relax else self.cap_fallback
            law = (
                burn_in_law(self.experiment, eligible, fallback)
                if burning
                else self.mixed_propensities(eligible, relax)
            )
            explored = {i: self.policy.explored_one(self.stats, eligible, i) for i in eligible}
            cached = capped_law_draw(law, eligible, self.experiment.cap_of, fallback, explored)
            if len(self._capped_draws) >= PROPENSITY_CACHE_SIZE:
                self._capped_draws.clear()
            self._capped_draws[key] = cached
        return cached

    def full_stats(self) -> Stats:
        return self.stats.to_stats()


RefreshListener = Callable[[CachedExperiment | None, CachedExperiment], None]


class ExperimentCache:
    """Background-refreshed map of experiment name -> CachedExperiment."""

    def __init__(self, store: Store, refresh_interval: float = 0.1) -> None:
        self.store = store
        self.refresh_interval = refresh_interval
        self._entries: dict[str, CachedExperiment] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._listeners: list[RefreshListener] = []
        self._removal_listeners: list[Callable[[str], None]] = []
        self._refresh_lock = asyncio.Lock()
        self.last_success = 0.0
        self.healthy = False
        self._stopping = False
        self.metrics: Metrics | None = None

    def get(self, name: str) -> CachedExperiment | None:
        return self._entries.get(name)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> Sequence[CachedExperiment]:
        return list(self._entries.values())

    def on_refresh(self, listener: RefreshListener) -> None:
        """Called with (old, new) for every experiment whose config or statistics changed."""
        self._listeners.append(listener)

    def on_removal(self, listener: Callable[[str], None]) -> None:
        self._removal_listeners.append(listener)

    def age(self) -> float:
        """Seconds since the last successful refresh (inf before the first)."""
        return time.monotonic() - self.last_success if self.last_success else float("inf")

    async def refresh(self) -> None:
        """Read every experiment's config and statistics; keep the old copy on failure (of
        everything, or in a cluster of the experiments on a master that is failing over)."""
        async with self._refresh_lock:
            complete = True
            try:
                names = await self.store.list_names()
            except STORE_ERRORS:
                # In a cluster the registry lives on one master; while it fails over, the
                # experiments already known are still refreshed from their own masters.
                if not (self.store.cluster and self._entries):
                    raise
                names, complete = list(self._entries), False
            unreadable: set[str] = set()
            states = await self.store.read_states(names, unreadable=unreadable)
            for name, state in states.items():
                old = self._entries.get(name)
                if (
                    old is not None
                    and old.experiment.version == state.experiment.version
                    and old.experiment.incarnation == state.experiment.incarnation
                    and old.state_version == state.state_version
                ):
                    # Same config and statistics: keep the propensities and the pre-drawn
                    # block; only the decision counters (for burn-in) move with traffic.
                    decisions = tuple(
                        state.arm_stat(arm, "decisions") for arm in old.experiment.arm_names
                    )
                    if decisions != old.decisions:
                        old.decisions = decisions
                        if old.experiment.burn_in:
                            old.route_plan = None  # whether it is in burn-in may have changed
                    old.fetched_at = time.monotonic()
                    continue
                same_policy = (
                    old is not None
                    and old.experiment.decision_policy == state.experiment.decision_policy
                    and old.experiment.arm_names == state.experiment.arm_names
                )
                try:
                    entry = CachedExperiment.build(
                        state, old.policy if same_policy and old else None
                    )
                except Exception:  # a config this version cannot read must not stop the rest
                    log.exception("cannot load experiment %s; keeping the old copy", name)
                    continue
                self._entries[name] = entry
                for listener in self._listeners:
                    listener(old, entry)
            for name in [n for n in self._entries if n not in states and n not in unreadable]:
                del self._entries[name]
                for removal in self._removal_listeners:
                    removal(name)
            if complete and not unreadable:  # the age says how old the oldest copy may be
                self.last_success = time.monotonic()
                self.healthy = True

    async def refresh_one(self, name: str) -> CachedExperiment | None:
        """Cache miss: one synchronous look-up (not the steady state) for a new experiment."""
        with contextlib.suppress(*STORE_ERRORS):
            async with asyncio.timeout(0.5):
                await self.refresh()
        return self._entries.get(name)

    def _observe(self, started: float, *, ok: bool) -> None:
        if self.metrics is not None:
            self.metrics.observe_store("refresh", time.perf_counter() - started, ok)

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        try:
            await self.refresh()
        except STORE_ERRORS as error:
            log.warning(
                "first cache refresh failed (%s); serving will start when it answers", error
            )
        self._tasks = [
            asyncio.create_task(self._refresh_loop(), name="cache-refresh"),
            asyncio.create_task(self._listen_for_changes(), name="cache-changes"),
        ]

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        await cancel_and_wait(self._tasks)
        self._tasks = []

    async def _refresh_loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.refresh_interval):
                    await self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            started = time.perf_counter()
            try:
                await self.refresh()
                self._observe(started, ok=True)
            except STORE_ERRORS as error:
                self._observe(started, ok=False)
                if self.healthy:
                    log.warning("cache refresh failed: %s; serving the last copy", error)
                self.healthy = False
                await asyncio.sleep(min(1.0, self.refresh_interval * 5))
            except Exception:
                log.exception("cache refresh failed unexpectedly")
                await asyncio.sleep(1.0)

    async def _listen_for_changes(self) -> None:
        """Subscribe to change notices; reconnect with backoff when Redis drops us."""
        backoff = 0.1
        while not self._stopping:
            notices = self.store.change_notices()
            try:
                await notices.subscribe()
                backoff = 0.1
                while not self._stopping:
                    if await notices.next(timeout=1.0) is not None:
                        self._wake.set()
            except STORE_ERRORS as error:
                log.debug("change listener lost Redis: %s", error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                with contextlib.suppress(Exception):
                    await notices.aclose()
