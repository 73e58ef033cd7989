"""The Route decision: from a replica's cached state to an arm, a propensity and a reason.

Everything here runs without awaiting the store (except a first look-up of an experiment this
replica has never seen). The order of precedence is the one operators expect: a unit's QA pin,
the experiment's pin, pause, the winner it committed to, sticky assignment (a held-out unit
stays held out), holdout, burn-in, and only then the policy (with the exploration floor mixed
in). The propensity Route
answers is the probability of the chosen arm within the rule named by the reason; the decision
log records, for every decision, the probability of every arm under the whole procedure
(``CachedExperiment.decision_law``, ``certain``), which is what unbiased replay needs.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, NamedTuple, Protocol

from bandit_router.errors import (
    ErrorReason,
    FailedPrecondition,
    InvalidArgument,
    experiment_not_found,
)
from bandit_router.model.experiments import check_name
from bandit_router.route.cache import (
    CachedExperiment,
    ExperimentCache,
    LawDraw,
    LiveLaw,
    burn_in_law,
    capped_law_draw,
    capped_part,
    whole_law,
)
from bandit_router.route.decision_log import LogRow
from bandit_router.route.features import check_attributes, encode_features
from bandit_router.route.recorder import DecisionRecorder
from bandit_router.route.tokens import (
    Decision,
    DecisionIssuer,
    DecisionSigner,
    new_nonce,
    nonce_bits,
)
from bandit_router.store.redis_store import ContextualPending, PendingDecision
from policies import PredrawnDecisions
from policies.controls import (
    cap_leftover,
    cap_probabilities_one,
    floor_probabilities_one,
    in_burn_in_one,
)
from policies.guardrails import (
    REASON_FALLBACK,
    REASON_GUARDRAIL,
    draw_guarded_one,
    guarded_law_one,
)

if TYPE_CHECKING:
    from bandit_router.telemetry.buffered_metrics import BufferedCounter
    from bandit_router.telemetry.metrics import Metrics

MAX_UNIT_ID_LENGTH = 256
MAX_CONTEXT_ENTRIES = 64
MAX_CONTEXT_KEY_LENGTH = 128
NO_EXCLUSIONS: frozenset[int] = frozenset()
_now = time.time
_new_tuple = tuple.__new__


class Reason(StrEnum):
    EXPLOIT = "EXPLOIT"
    EXPLORE = "EXPLORE"
    PINNED = "PINNED"
    HOLDOUT = "HOLDOUT"
    FALLBACK = "FALLBACK"
    STICKY = "STICKY"
    PAUSED = "PAUSED"
    BURN_IN = "BURN_IN"
    COMMITTED = "COMMITTED"
    GUARDRAIL = "GUARDRAIL"


class RouteDecision(NamedTuple):
    decision_id: str
    arm: str
    propensity: float
    reason: Reason
    policy: str
    state_version: int
    reward_deadline_ms: int  # unix milliseconds

    @property
    def reward_deadline(self) -> float:
        """Unix seconds."""
        return self.reward_deadline_ms / 1000.0


class _Choice(NamedTuple):
    arm: int
    propensity: float  # within the rule named by ``reason``: what Route answers
    reason: Reason
    learn: bool
    #: P(arm) of every arm the whole procedure could have chosen (pins, pause, sticky units,
    #: holdout, burn-in, floor and policy together): what the decision log records.
    law: Mapping[str, float]


class _Features(NamedTuple):
    """A Route's feature vector (experiments that declare context_features)."""

    x: list[float]
    attributes: Mapping[str, str]


class _PlainArm(NamedTuple):
    name: str
    propensity: float
    issuer: DecisionIssuer
    exploit: BufferedCounter | None
    explore: BufferedCounter | None


class PlainRoute(NamedTuple):
    """What a plain Route needs from one cached state, computed once for that state.

    A Route is plain when it excludes no arm and carries no context, and its experiment has
    no pin (of any unit), pause, holdout, sticky assignment or burn-in in force. Then
    ``Router.choose`` would reduce to a policy draw with the exploration floor, and everything
    else about the decision (propensity, signed-id prefix, log table, counters) is a constant
    of the chosen arm. Most traffic is plain, so this is Route's hot path; ``choose`` remains
    the one definition of the rules and a test checks both give identical decisions.
    """

    name: str
    incarnation: str
    policy: str
    state_version: int
    active: tuple[int, ...]
    arms: tuple[_PlainArm | None, ...]  # by arm index; None for an inactive arm
    named: Mapping[str, float]
    floor_k: float  # the exploration floor times the number of active arms
    window_ms: int
    pending: bool  # a default reward is due for decisions nobody rewards
    #: The state's pre-drawn decisions over ``active``; for an experiment with traffic caps
    #: the sampler of its capped law (floor included, so ``floor_k`` is then 0).
    draws: PredrawnDecisions | LawDraw


class _BanditLaw(NamedTuple):
    """What ``Router._bandit_law`` finds: the law logged, whether burn-in is in force, and
    for a contextual policy its capped, floored law and its law for the feature vector (both
    None for a plain policy: the state's, cached in the entry)."""

    law: Mapping[str, float]
    burning: bool
    mixed: dict[int, float] | None
    live: LiveLaw | None


def _under_probes(
    law: Mapping[str, float],
    rest: float,
    probes: tuple[tuple[int, float], ...],
    names: Sequence[str],
) -> dict[str, float]:
    """The bandit's ``law`` scaled to its share ``rest``, plus each probe's share."""
    out = {name: rest * p for name, p in law.items()}
    for i, share in probes:
        out[names[i]] = out.get(names[i], 0.0) + share
    return out


#: ``CachedExperiment.route_plan`` for a state whose Routes are never plain.
NOT_PLAIN: object = object()


def validate_route_request(
    entry: CachedExperiment,
    unit_id: str,
    excluded_arms: Sequence[str],
    context: Mapping[str, float],
) -> frozenset[int]:
    """Indices of the excluded arms; InvalidArgument naming the first bad field."""
    if len(unit_id) > MAX_UNIT_ID_LENGTH:
        raise InvalidArgument(f"longer than {MAX_UNIT_ID_LENGTH} characters", "unit_id")
    excluded: set[int] = set()
    for position, arm in enumerate(excluded_arms):
        index = entry.arm_index.get(arm)
        if index is None:
            raise InvalidArgument(
                f"unknown arm {arm!r} of experiment {entry.experiment.name!r}",
                f"excluded_arms[{position}]",
            )
        excluded.add(index)
    if len(context) > MAX_CONTEXT_ENTRIES:
        raise InvalidArgument(f"at most {MAX_CONTEXT_ENTRIES} entries", "context")
    for key, value in context.items():
        if not key or len(key) > MAX_CONTEXT_KEY_LENGTH:
            raise InvalidArgument(
                f"keys must have 1-{MAX_CONTEXT_KEY_LENGTH} characters", "context"
            )
        if not math.isfinite(value):
            raise InvalidArgument(f"must be finite, got {value!r}", f"context[{key}]")
    return frozenset(excluded)


class Router:
    """Chooses arms for Route calls from the cache; records decisions off the hot path."""

    def __init__(
        self,
        cache: ExperimentCache,
        signer: DecisionSigner,
        recorder: DecisionRecorder,
        *,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
        sticky: StickyAssignments | None = None,
    ) -> None:
        self.cache = cache
        self.signer = signer
        self.recorder = recorder
        self.rng = rng or random.Random()
        self.metrics = metrics
        self.sticky = sticky

    def route_plain(
        self,
        experiment: str,
        unit_id: str,
        excluded_arms: Sequence[str],
        context: Mapping[str, float],
        attributes: Mapping[str, str] | None = None,
    ) -> RouteDecision | None:
        """The decision for a plain Route (see ``PlainRoute``), or None: then call ``route``."""
        entry = self.cache.get(experiment)
        if (
            entry is None
            or excluded_arms
            or context
            or attributes
            or len(unit_id) > MAX_UNIT_ID_LENGTH
        ):
            return None
        plan = entry.route_plan
        if plan is None:
            plan = entry.route_plan = self._plain_route(entry)
        if plan is NOT_PLAIN:
            return None
        assert isinstance(plan, PlainRoute)
        rng = self.rng
        if plan.floor_k and rng.random() < plan.floor_k:  # the same draws as ``choose``
            index, explored = rng.choice(plan.active), True
        else:
            index, explored = plan.draws.draw(rng)  # = entry.draw(plan.active, rng)
        arm = plan.arms[index]
        assert arm is not None
        issued_ms = int(_now() * 1000)
        deadline_ms = issued_ms + plan.window_ms
        nonce = f"{nonce_bits(96):024x}"  # tokens.new_nonce, inlined: this is the hot path
        decision_id = arm.issuer.issue(issued_ms, deadline_ms, nonce)
        if explored:
            reason, counter = Reason.EXPLORE, arm.explore
        else:
            reason, counter = Reason.EXPLOIT, arm.exploit
        self.recorder.record(
            plan.name,
            plan.incarnation,
            arm.name,
            (decision_id, reason, unit_id, plan.named, None),
            # tuple.__new__ skips the NamedTuple's Python-level __new__ (same object)
            _new_tuple(PendingDecision, (nonce, arm.name, deadline_ms)) if plan.pending else None,
        )
        if counter is not None:
            counter.pending += 1.0  # BufferedCounter.inc, inlined
        return _new_tuple(
            RouteDecision,
            (
                decision_id,
                arm.name,
                arm.propensity,
                reason,
                plan.policy,
                plan.state_version,
                deadline_ms,
            ),
        )

    def _plain_route(self, entry: CachedExperiment) -> PlainRoute | object:
        experiment = entry.experiment
        if (
            entry.space is not None  # context_features: every Route builds its features
            or experiment.paused
            or experiment.pin.arm
            or experiment.pin.units
            or experiment.commit.arm
            or experiment.holdout_share > 0.0
            or experiment.sticky
            or not entry.active
            or entry.probes
            # caps leaving traffic to the fallback arm: decisions with REASON_FALLBACK
            or (entry.cap_fallback is not None and cap_leftover(entry.active, experiment.cap_of))
            or (
                experiment.burn_in > 0
                and in_burn_in_one(entry.decisions, entry.active, experiment.burn_in)
            )
        ):
            return NOT_PLAIN
        probabilities = entry.mixed_propensities(entry.active)
        capped = bool(experiment.cap_of)
        arms: list[_PlainArm | None] = [None] * len(experiment.arm_names)
        for index in entry.active:
            name = experiment.arm_names[index]
            counters = (
                (
                    self.metrics.decision_counter(experiment.name, name, Reason.EXPLOIT),
                    self.metrics.decision_counter(experiment.name, name, Reason.EXPLORE),
                )
                if self.metrics is not None
                else (None, None)
            )
            arms[index] = _PlainArm(
                name,
                probabilities[index],
                self.signer.issuer(
                    experiment.name,
                    experiment.incarnation,
                    name,
                    probabilities[index],
                    entry.state_version,
                    True,
                ),
                *counters,
            )
        return PlainRoute(
            name=experiment.name,
            incarnation=experiment.incarnation,
            policy=experiment.decision_policy.name,
            state_version=entry.state_version,
            active=entry.active,
            arms=tuple(arms),
            named=entry.named_propensities(entry.active),
            floor_k=0.0 if capped else experiment.exploration_floor * len(entry.active),
            window_ms=int(experiment.reward_window * 1000),
            pending=experiment.default_reward is not None,
            draws=entry.capped_draw(entry.active, False) if capped else entry.predrawn(),
        )

    async def route(
        self,
        experiment: str,
        unit_id: str = "",
        excluded_arms: Sequence[str] = (),
        context: Mapping[str, float] | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> RouteDecision:
        entry = self.cache.get(experiment)
        if entry is None:  # not the steady state: validate, then one look-up in the store
            check_name(experiment, "experiment")
            entry = await self.cache.refresh_one(experiment)
            if entry is None:
                raise experiment_not_found(experiment)
        # One copy of the request's protobuf map into a dict (~2.5 µs for 15 entries) serves
        # the checks, the feature vector and the log row: each access to a dict is about a
        # third of the map's, and the row needed a copy of its own anyway.
        context = dict(context) if context else {}
        if excluded_arms or context or len(unit_id) > MAX_UNIT_ID_LENGTH:
            excluded = validate_route_request(entry, unit_id, excluded_arms, context)
        else:  # the common request: nothing to check
            excluded = NO_EXCLUSIONS
        if attributes:
            attributes = dict(attributes)
            check_attributes(attributes)
        else:
            attributes = {}
        features = None
        if entry.space is not None:  # before any decision: a refused Route writes nothing
            features = _Features(entry.space.build(context, attributes), attributes)
        now = time.time()
        if entry.experiment.sticky and unit_id and self.sticky is not None:
            await self.sticky.lookup(experiment, entry.experiment.incarnation, unit_id, now)
        choice = self.choose(entry, unit_id, excluded, now, features)
        return self._issue(entry, choice, unit_id, context, now, features, attributes)

    def choose(
        self,
        entry: CachedExperiment,
        unit_id: str,
        excluded: frozenset[int],
        now: float,
        features: _Features | None = None,
    ) -> _Choice:
        experiment = entry.experiment
        eligible = tuple(i for i in entry.active if i not in excluded) if excluded else entry.active
        enabled = eligible  # arms an operator's rule may serve: active or quarantined
        if entry.guarded:
            enabled = tuple(i for i in entry.enabled if i not in excluded)
        if not enabled:
            raise FailedPrecondition(
                "every active arm is excluded or disabled; nothing can be routed",
                "excluded_arms",
                reason=ErrorReason.NO_ELIGIBLE_ARM,
            )
        index = entry.arm_index
        certain = entry.certain
        if unit_id:
            unit_arm = index.get(experiment.pin.units.get(unit_id, ""))
            if unit_arm is not None and unit_arm in enabled:
                return _Choice(unit_arm, 1.0, Reason.PINNED, True, certain(unit_arm))
        pinned = index.get(experiment.pin.active_arm(now))
        if pinned is not None and pinned in enabled:
            return _Choice(pinned, 1.0, Reason.PINNED, True, certain(pinned))
        if experiment.paused:
            arm = index.get(experiment.pause_arm)
            if arm is None or arm not in enabled:
                arm = eligible[0] if eligible else enabled[0]
            return _Choice(arm, 1.0, Reason.PAUSED, False, certain(arm))
        committed = index.get(experiment.commit.arm)
        if committed is not None and committed in eligible:
            return _Choice(committed, 1.0, Reason.COMMITTED, True, certain(committed))
        if experiment.sticky and unit_id and self.sticky is not None:
            held = self.sticky.get(experiment.name, experiment.incarnation, unit_id, now)
            if held is not None and index.get(held[0]) in eligible:
                arm_name, held_propensity, held_holdout = held
                # The response keeps the assignment's propensity; given the assignment this
                # decision was certain, and that is what the log says.
                held_arm = index[arm_name]
                if held_holdout:  # a held-out unit stays held out: never learned from
                    return _Choice(
                        held_arm, held_propensity, Reason.HOLDOUT, False, certain(held_arm)
                    )
                return _Choice(held_arm, held_propensity, Reason.STICKY, True, certain(held_arm))
        # the request excludes the arm that would serve the caps' leftover: relax them instead
        relax = bool(excluded) and entry.cap_fallback in excluded
        if entry.guarded:
            probes = tuple(p for p in entry.probes if p[0] not in excluded)
            if probes or not eligible:
                return self._guarded(
                    entry, unit_id, excluded, now, features, eligible, probes, relax
                )
        return self._bandit(entry, unit_id, eligible, now, features, relax)

    def _guarded(
        self,
        entry: CachedExperiment,
        unit_id: str,
        excluded: frozenset[int],
        now: float,
        features: _Features | None,
        eligible: tuple[int, ...],
        probes: tuple[tuple[int, float], ...],
        relax: bool = False,
    ) -> _Choice:
        """A decision while guardrails hold arms back (``policies.guardrails``): each
        quarantined arm gets its probe share of the traffic (REASON_GUARDRAIL), the rest goes
        to the bandit over the eligible arms, or to the fallback arm when none is eligible
        (REASON_FALLBACK). Both answer their probability under the whole procedure, and the
        log records the whole law, so replays stay unbiased. The bandit's share is itself
        capped, its caps' leftover to the fallback arm (``_bandit``), and answers the
        bandit's propensity, as every bandit decision under probes does."""
        names = entry.experiment.arm_names
        shares = dict(probes)
        presence = [0.0] * len(names)  # which arms the bandit may give mass (its law is later)
        for i in eligible:
            presence[i] = 1.0
        fallback = entry.fallback
        arm, reason = draw_guarded_one(self.rng.random(), presence, shares, shares, fallback)
        rest = 1.0 - math.fsum(shares.values())
        if arm is None:  # the bandit's share: its own decision, its law scaled under the probes
            inner = self._bandit(entry, unit_id, eligible, now, features, relax)
            return inner._replace(law=_under_probes(inner.law, rest, probes, names))
        if eligible:  # a probe: the whole law has the bandit's law (not drawn) under the probes
            bandit_law = self._bandit_law(entry, eligible, features, relax).law
            law = _under_probes(bandit_law, rest, probes, names)
            # the arm's probability under the whole procedure: its probe share, plus the
            # caps' leftover when it is also the fallback arm
            return _Choice(arm, law[names[arm]], Reason.GUARDRAIL, True, law)
        if arm == fallback and reason == REASON_FALLBACK and fallback in excluded:
            raise FailedPrecondition(
                "every eligible arm is quarantined or excluded by a constraint, and the "
                "fallback arm is excluded by the request",
                "excluded_arms",
                reason=ErrorReason.NO_ELIGIBLE_ARM,
            )
        whole = guarded_law_one(presence, shares, shares, fallback)
        law = {names[i]: p for i, p in enumerate(whole) if p > 0.0}
        chosen = Reason.GUARDRAIL if reason == REASON_GUARDRAIL else Reason.FALLBACK
        return _Choice(arm, whole[arm], chosen, True, law)

    def _bandit(
        self,
        entry: CachedExperiment,
        unit_id: str,
        eligible: tuple[int, ...],
        now: float,
        features: _Features | None,
        relax: bool = False,
    ) -> _Choice:
        """Holdout, burn-in and the policy (with floor and caps) over ``eligible``.

        When the eligible arms are all capped and their caps sum below 1, the capped law
        gives the leftover m to the fallback arm (``CachedExperiment.cap_fallback``): one
        uniform draws from that whole law, and a draw in the leftover's segment answers
        REASON_FALLBACK with the fallback arm's probability under it (its own capped share,
        if eligible, plus m). ``relax``: the request excludes the fallback arm, so the caps
        are relaxed in proportion instead (``policies.controls``)."""
        experiment = entry.experiment
        index = entry.arm_index
        rng = self.rng
        mixed: dict[int, float] | None = None  # plain: the state's, computed once per refresh
        live: LiveLaw | None = None  # contextual: the policy's law for this feature vector
        if entry.contextual is None:  # ``_bandit_law``, inlined for plain policies
            burning = experiment.burn_in > 0 and in_burn_in_one(
                entry.decisions, eligible, experiment.burn_in
            )
            law: Mapping[str, float] = entry.decision_law(eligible, burning, relax)
        else:
            law, burning, mixed, live = self._bandit_law(entry, eligible, features, relax)
        caps = experiment.cap_of
        fallback = None if relax else entry.cap_fallback
        if experiment.holdout_share > 0.0 and rng.random() < experiment.holdout_share:
            control = index.get(experiment.holdout_control_arm)
            if control is not None and control in eligible:
                return self._remember(
                    entry, unit_id, now, _Choice(control, 1.0, Reason.HOLDOUT, False, law)
                )
            holdout = _Choice(rng.choice(eligible), 1.0 / len(eligible), Reason.HOLDOUT, False, law)
            return self._remember(entry, unit_id, now, holdout)
        if burning:
            if caps:  # burn-in's uniform law, capped (the leftover to the fallback arm)
                arm, _, to_fallback = entry.capped_draw(eligible, True, relax).decide(rng)
                reason = Reason.FALLBACK if to_fallback else Reason.BURN_IN
                propensity = burn_in_law(experiment, eligible, fallback)[arm]
                burn = _Choice(arm, propensity, reason, True, law)
                return self._remember(entry, unit_id, now, burn)
            return self._remember(
                entry,
                unit_id,
                now,
                _Choice(rng.choice(eligible), 1.0 / len(eligible), Reason.BURN_IN, True, law),
            )
        probabilities = entry.mixed_propensities(eligible, relax) if mixed is None else mixed
        floor = experiment.exploration_floor
        to_fallback = False
        if caps:  # the capped law (floor included) is drawn directly: policies.controls
            if live is not None:
                draw = capped_law_draw(probabilities, eligible, caps, fallback, {})
                arm, _, to_fallback = draw.decide(rng)
                explored = not to_fallback and live.explored(arm, eligible)
            else:
                arm, explored, to_fallback = entry.capped_draw(eligible, False, relax).decide(rng)
        elif floor > 0.0 and rng.random() < floor * len(eligible):
            arm, explored = rng.choice(eligible), True
        elif live is not None:  # the policy's law, drawn as logged
            arm = live.pick(eligible, rng)
            explored = live.explored(arm, eligible)
        else:
            arm, explored = entry.draw(eligible, rng)
        reason = Reason.EXPLORE if explored else Reason.EXPLOIT
        if to_fallback:
            reason = Reason.FALLBACK
        choice = _Choice(arm, probabilities[arm], reason, True, law)
        return self._remember(entry, unit_id, now, choice)

    def _bandit_law(
        self,
        entry: CachedExperiment,
        eligible: tuple[int, ...],
        features: _Features | None,
        relax: bool,
    ) -> _BanditLaw:
        """The law ``_bandit`` draws from and logs (holdout, burn-in, floor, caps and their
        leftover), without drawing."""
        experiment = entry.experiment
        burning = experiment.burn_in > 0 and in_burn_in_one(
            entry.decisions, eligible, experiment.burn_in
        )
        contextual = entry.contextual
        if contextual is None:
            return _BanditLaw(entry.decision_law(eligible, burning, relax), burning, None, None)
        # The policy's law for this feature vector (exact, from the prepared model) takes the
        # place of the state's; holdout, burn-in and floor are the same.
        if features is None:
            raise ValueError("a contextual experiment's Route needs its features")
        caps = experiment.cap_of
        fallback = None if relax else entry.cap_fallback
        live = contextual.live(features.x, eligible)
        floored = floor_probabilities_one(live.law, eligible, experiment.exploration_floor)
        if caps:
            floored = cap_probabilities_one(floored, eligible, caps, fallback)
            mixed = capped_part(floored, eligible, fallback)
        else:
            mixed = {i: floored[i] for i in eligible}
        law = whole_law(experiment, entry.arm_index, eligible, burning, mixed, fallback)
        return _BanditLaw(law, burning, mixed, live)

    def _remember(
        self, entry: CachedExperiment, unit_id: str, now: float, choice: _Choice
    ) -> _Choice:
        experiment = entry.experiment
        if experiment.sticky and unit_id and self.sticky is not None:
            self.sticky.assign(
                experiment.name,
                experiment.incarnation,
                unit_id,
                experiment.arm_names[choice.arm],
                choice.propensity,
                now + (experiment.sticky_ttl or experiment.reward_window),
                choice.reason is Reason.HOLDOUT,
                [experiment.arm_names[i] for i in entry.active],
            )
        return choice

    def _issue(
        self,
        entry: CachedExperiment,
        choice: _Choice,
        unit_id: str,
        context: Mapping[str, float],
        now: float,
        features: _Features | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> RouteDecision:
        experiment = entry.experiment
        arm = experiment.arm_names[choice.arm]
        issued_ms = int(now * 1000)
        deadline_ms = issued_ms + int(experiment.reward_window * 1000)
        nonce = new_nonce()
        contextual = entry.contextual
        encoded = ""
        if contextual is not None and features is not None:
            # The linearisation point of logistic_ts's update (policies.logistic_ts): the
            # chosen arm's x.theta under the model that decided. Linear policies ignore it.
            z = 0.0
            if contextual.policy.linearised:
                z = float(contextual.model.theta[choice.arm] @ features.x)
                # sigmoid saturates long before: clipping changes no update, keeps it finite
                z = min(max(z, -1e300), 1e300) if z == z else 0.0
            encoded = encode_features(contextual.space_id, z, features.x)
        decision_id = self.signer.issue(
            Decision(
                experiment=experiment.name,
                incarnation=experiment.incarnation,
                arm=arm,
                propensity=choice.propensity,
                issued_ms=issued_ms,
                deadline_ms=deadline_ms,
                state_version=entry.state_version,
                learn=choice.learn,
                nonce=nonce,
                features=encoded,
            )
        )
        pending: PendingDecision | ContextualPending | None = None
        if choice.learn and experiment.default_reward is not None:
            if encoded:
                pending = ContextualPending(nonce, arm, deadline_ms, encoded)
            else:
                pending = PendingDecision(nonce, arm, deadline_ms)
        row: LogRow = (
            decision_id,
            choice.reason.value,
            unit_id,
            choice.law,
            context or None,  # route() made it a dict of its own
        )
        if features is not None:  # a contextual policy's vector travels in the decision id
            row = (*row, None if encoded else features.x, dict(features.attributes))
        elif attributes:  # logged (not learned from) by every experiment
            row = (*row, [], dict(attributes))
        self.recorder.record(experiment.name, experiment.incarnation, arm, row, pending)
        if self.metrics is not None:
            self.metrics.observe_decision(experiment.name, arm, choice.reason.value)
        return RouteDecision(
            decision_id=decision_id,
            arm=arm,
            propensity=choice.propensity,
            reason=choice.reason,
            policy=experiment.decision_policy.name,
            state_version=entry.state_version,
            reward_deadline_ms=deadline_ms,
        )


class StickyAssignments(Protocol):
    """Where sticky units keep their arm (implemented in sticky.py)."""

    def get(
        self, experiment: str, incarnation: str, unit_id: str, now: float
    ) -> tuple[str, float, bool] | None: ...

    async def lookup(self, experiment: str, incarnation: str, unit_id: str, now: float) -> None: ...

    def assign(
        self,
        experiment: str,
        incarnation: str,
        unit_id: str,
        arm: str,
        propensity: float,
        expires: float,
        holdout: bool = False,
        active_arms: Sequence[str] = (),
    ) -> None: ...
