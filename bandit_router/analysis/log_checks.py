"""The report's checks over recent traffic: one pass over the decision log, joined with rewards.

The decision log holds decision flushes and reward events (real or default) in commit order;
``scan_log`` reads the window once and keeps, per decision, only what the checks need (arm,
segment, covariate, unit, first-or-later exposure, reward) in flat arrays. The statistics are
the pure modules' (``policies.srm``, ``policies.segments``, ``policies.cuped``,
``policies.novelty``); this module gathers their inputs and turns their results into the
GetReport fields.

Everything here runs when a report is asked for, never on Route or Reward. Memory is bounded:
at most ``ANALYSIS_LIMIT`` decisions are analysed per report (the first ones of the window;
the report says when the window held more), at most ``MAX_SEGMENTS`` distinct segments are
kept (later values pool into "(other)"), ``MAX_UNITS`` (unit, arm) pairs are numbered for the
novelty check, and ``MAX_KEYS_SEEN`` context keys are remembered for the unknown-key message.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from bandit_router.errors import InvalidArgument
from bandit_router.model.experiments import Experiment
from bandit_router.route.decision_log import decode
from bandit_router.store.redis_store import Store
from bandit_router.v1 import admin_pb2
from policies import Stats
from policies.cuped import CupedMoments, cuped_compare
from policies.novelty import novelty_report
from policies.report import RewardModel, build_report
from policies.segments import simpson_warnings
from policies.srm import SampleRatioAccumulator, sample_ratio_test

#: Decisions one report analyses (about 30 bytes each in the arrays, plus the nonce index of
#: the reward join: 40 MB at the limit, scripts/report_scan_memory.py).
ANALYSIS_LIMIT = 200_000
#: Decisions counted for the recent share (counting costs no memory per decision).
RECENT_LIMIT = 1_000_000
#: Distinct segments kept per report; decisions of further values pool into OTHER.
MAX_SEGMENTS = 100
#: (unit, arm) pairs whose exposures are numbered for the novelty check.
MAX_UNITS = 100_000
#: Context keys remembered for the message about an unknown ``by`` or ``covariate``.
MAX_KEYS_SEEN = 100
CHUNK = 1000
#: Decisions scanned between yields to the event loop (about 10 ms of work).
YIELD_EVERY = 1000

MISSING = "(missing)"
OTHER = "(other)"
NO_UNIT = "(no unit)"


@dataclass(frozen=True)
class CheckOptions:
    """What GetReport asked for beyond the always-on checks (SRM, novelty)."""

    by: str = ""
    covariate: str = ""
    control: str = ""
    first_exposures: int = 1

    def unit_buckets(self) -> int:
        """N for ``by = "unit:N"``, 0 for a context key."""
        if not self.by.startswith("unit:"):
            return 0
        text = self.by.removeprefix("unit:")
        if not (text.isascii() and text.isdigit()) or not 2 <= int(text) <= MAX_SEGMENTS:
            raise InvalidArgument(
                f"unit-id buckets are written unit:N with N from 2 to {MAX_SEGMENTS}, "
                f"got {self.by!r}",
                "by",
            )
        return int(text)

    def validate(self, experiment: Experiment) -> int:
        """The control arm's index; raises InvalidArgument naming the field."""
        self.unit_buckets()
        if self.first_exposures < 0:
            raise InvalidArgument(
                f"must not be negative, got {self.first_exposures}", "first_exposures"
            )
        if not self.control:
            return 0
        if self.control not in experiment.arm_names:
            raise InvalidArgument(
                f"no arm {self.control!r} in {experiment.name} "
                f"(arms: {', '.join(experiment.arm_names)})",
                "control",
            )
        return experiment.arm_names.index(self.control)


@dataclass
class LogScan:
    """What one pass over the window kept (bounded; see the module doc)."""

    arm_names: tuple[str, ...]
    recent: Counter[str] = field(default_factory=Counter)
    arm: array[int] = field(default_factory=lambda: array("h"))
    segment: array[int] = field(default_factory=lambda: array("i"))
    covariate: array[float] = field(default_factory=lambda: array("d"))
    unit: array[int] = field(default_factory=lambda: array("i"))
    first: array[int] = field(default_factory=lambda: array("b"))
    reward: array[float] = field(default_factory=lambda: array("d"))
    segments: list[str] = field(default_factory=list)
    keys_seen: set[str] = field(default_factory=set)
    truncated: bool = False
    skipped: int = 0
    covariates_seen: int = 0
    srm: SampleRatioAccumulator | None = None

    @property
    def decisions(self) -> int:
        return len(self.arm)


def _bucket(unit_id: str, buckets: int) -> str:
    if not unit_id:
        return NO_UNIT
    digest = hashlib.blake2b(unit_id.encode(), digest_size=8).digest()
    return str(int.from_bytes(digest, "big") % buckets)


class LogScanner:
    """The state of one pass: index maps and the join of rewards to their decisions."""

    def __init__(self, experiment: Experiment, options: CheckOptions) -> None:
        self.options = options
        self.buckets = options.unit_buckets()
        self.first_limit = max(options.first_exposures, 1)
        self.arm_index = {name: i for i, name in enumerate(experiment.arm_names)}
        self.scan = LogScan(experiment.arm_names, srm=SampleRatioAccumulator(len(self.arm_index)))
        self.segment_index: dict[str, int] = {}
        self.unit_index: dict[str, int] = {}
        self.exposures: dict[tuple[int, int], int] = {}
        self.row_of: dict[str, int] = {}  # nonce -> row, for the reward join
        self.early: dict[str, float] = {}  # rewards ahead of their decision, by nonce
        # Shared probability tables -> (law, chosen counts): SRM per table, not per decision.
        self.tables: dict[tuple[tuple[str, float], ...], np.ndarray] = {}

    def segment_of(
        self, unit_id: str, context: dict[str, float], attributes: dict[str, str] | None = None
    ) -> int:
        """The segment of a decision: a unit-id bucket, the value of a categorical attribute,
        or of a numeric context key (an attribute wins where a request had both names)."""
        by = self.options.by
        if not by:
            return 0
        if self.buckets:
            label = _bucket(unit_id, self.buckets)
        elif attributes and by in attributes:
            label = str(attributes[by])
        else:
            value = context.get(by)
            label = MISSING if value is None else f"{value:g}"
        index = self.segment_index.get(label)
        if index is None:
            if len(self.segment_index) >= MAX_SEGMENTS - 1 and label != OTHER:
                return self.segment_of_label(OTHER)
            index = self.segment_of_label(label)
        return index

    def segment_of_label(self, label: str) -> int:
        index = self.segment_index.get(label)
        if index is None:
            index = self.segment_index[label] = len(self.scan.segments)
            self.scan.segments.append(label)
        return index

    def first_flag(self, unit_id: str, arm: int) -> int:
        """1 for a unit's first exposures to the arm, 0 for later, -1 untracked."""
        if not unit_id:
            return -1
        unit = self.unit_index.get(unit_id)
        if unit is None:
            if len(self.exposures) >= MAX_UNITS:
                return -1
            unit = self.unit_index[unit_id] = len(self.unit_index)
        key = (unit, arm)
        seen = self.exposures.get(key, 0)
        if seen == 0 and len(self.exposures) >= MAX_UNITS:
            return -1
        self.exposures[key] = seen + 1
        return 1 if seen < self.first_limit else 0

    def add_decision(self, decision: dict[str, object]) -> None:
        scan = self.scan
        arm_name = str(decision.get("arm", ""))
        scan.recent[arm_name] += 1
        if scan.decisions >= ANALYSIS_LIMIT:
            scan.truncated = True
            return
        arm = self.arm_index.get(arm_name)
        probabilities = decision.get("probabilities") or {}
        assert isinstance(probabilities, dict)
        if arm is None:  # an arm removed since: nothing to compare it with
            scan.skipped += 1
            return
        context = decision.get("context") or {}
        assert isinstance(context, dict)
        attributes = decision.get("attributes") or {}
        assert isinstance(attributes, dict)
        if len(scan.keys_seen) < MAX_KEYS_SEEN:
            scan.keys_seen.update(context)
            scan.keys_seen.update(attributes)
        unit_id = str(decision.get("unit_id", ""))
        self._count_law(arm, probabilities, bool(decision.get("probabilities_complete")))
        nonce = str(decision.get("nonce", ""))
        row = scan.decisions
        scan.arm.append(arm)
        scan.segment.append(self.segment_of(unit_id, context, attributes))
        value = context.get(self.options.covariate) if self.options.covariate else None
        if value is not None:
            scan.covariates_seen += 1
        scan.covariate.append(math.nan if value is None else float(value))
        scan.first.append(self.first_flag(unit_id, arm))  # numbers the unit first
        scan.unit.append(self.unit_index.get(unit_id, -1) if unit_id else -1)
        early = self.early.pop(nonce, None)
        scan.reward.append(math.nan if early is None else early)
        self.row_of[nonce] = row

    def _count_law(self, arm: int, probabilities: dict[str, float], complete: bool) -> None:
        if not complete or any(name not in self.arm_index for name in probabilities):
            self.scan.skipped += 1
            return
        key = tuple(probabilities.items())
        chosen = self.tables.get(key)
        if chosen is None:
            chosen = self.tables[key] = np.zeros(len(self.arm_index))
        chosen[arm] += 1.0

    def add_reward(self, nonce: str, value: float) -> None:
        """The last reward wins (a late real reward replaces a default one, as in exports)."""
        row = self.row_of.get(nonce)
        if row is None:
            if len(self.early) < ANALYSIS_LIMIT:
                self.early[nonce] = value
        else:
            self.scan.reward[row] = value

    def finish(self) -> LogScan:
        srm = self.scan.srm
        assert srm is not None
        for key, chosen in self.tables.items():
            law = np.zeros(len(self.arm_index))
            for name, p in key:
                law[self.arm_index[name]] = p
            srm.add_table(law, chosen)
        return self.scan


async def scan_log(
    store: Store, experiment: Experiment, window: float, options: CheckOptions
) -> LogScan:
    """Read the last ``window`` seconds of the decision log once (see the module doc)."""
    since_ms = int((time.time() - window) * 1000)
    scanner = LogScanner(experiment, options)
    start = f"{since_ms}-0"
    since_yield = 0
    while True:
        entries = await store.read_decision_log(experiment.name, start, CHUNK)
        for _, fields in entries:
            kind = fields.get("type", "")
            if kind == "decisions":
                if sum(scanner.scan.recent.values()) >= RECENT_LIMIT:
                    continue
                decisions = decode(fields.get("data", ""))
                for decision in decisions:
                    scanner.add_decision(decision)
                since_yield += len(decisions)
                if since_yield >= YIELD_EVERY:
                    # The scan shares the event loop with Route: a chunk of 1000 busy
                    # flushes holds tens of thousands of decisions, which would otherwise
                    # hold Route back for their whole scan.
                    since_yield = 0
                    await asyncio.sleep(0)
            elif kind in ("reward", "default"):
                scanner.add_reward(fields.get("nonce", ""), float(fields.get("reward", 0.0)))
        if len(entries) < CHUNK or sum(scanner.scan.recent.values()) >= RECENT_LIMIT:
            break
        start = "(" + entries[-1][0]
    return scanner.finish()


# -- from the scan to GetReport's fields --------------------------------------------------


def _arm_rows(
    names: tuple[str, ...],
    stats: Stats,
    model: RewardModel,
    eligible: list[bool],
    decisions: np.ndarray,
    min_rewards: int,
) -> tuple[list[admin_pb2.ArmReport], str]:
    summary = build_report(names, stats, model, eligible=eligible, min_rewards=min_rewards)
    rows = [
        admin_pb2.ArmReport(
            arm=row.arm,
            decisions=int(decisions[i]),
            rewards=row.n,
            mean=row.mean,
            ci_low=row.ci_low,
            ci_high=row.ci_high,
            prob_best=row.prob_best,
            expected_loss=row.expected_loss,
        )
        for i, row in enumerate(summary.arms)
    ]
    return rows, summary.recommendation


def _unknown_key(scan: LogScan, key: str, field_name: str, window: float) -> InvalidArgument:
    seen = ", ".join(sorted(scan.keys_seen)) or "none"
    hint = "; or unit:N for N buckets of unit ids" if field_name == "by" else ""
    return InvalidArgument(
        f"no decision of the last {window:g} s has the context key {key!r}; "
        f"keys seen: {seen}{hint}",
        field_name,
    )


def fill_checks(
    response: admin_pb2.GetReportResponse,
    scan: LogScan,
    experiment: Experiment,
    model: RewardModel,
    options: CheckOptions,
    *,
    window: float,
    min_rewards: int,
    control: int = 0,
) -> None:
    """Set GetReport's check fields from one scan (raises InvalidArgument for unknown keys)."""
    names = experiment.arm_names
    k = len(names)
    eligible = [arm.active for arm in experiment.arms]
    arm = np.frombuffer(scan.arm, dtype=np.int16).astype(np.int64)
    reward = np.frombuffer(scan.reward, dtype=np.float64)
    rewarded = ~np.isnan(reward)
    response.log_decisions = scan.decisions
    response.log_rewards = int(rewarded.sum())
    response.log_truncated = scan.truncated
    warnings: list[str] = []
    if scan.truncated:
        warnings.append(
            f"the window held more than {ANALYSIS_LIMIT} decisions; the checks read the first "
            f"{ANALYSIS_LIMIT} (shorten the window to check the most recent traffic)"
        )

    if options.by and not (options.unit_buckets() or set(scan.segments) - {MISSING, OTHER}):
        raise _unknown_key(scan, options.by, "by", window)
    if options.covariate and not scan.covariates_seen:
        raise _unknown_key(scan, options.covariate, "covariate", window)

    srm = scan.srm
    assert srm is not None
    result = sample_ratio_test(srm.observed, srm.expected, srm.outer, impossible=srm.impossible)
    response.sample_ratio.CopyFrom(
        admin_pb2.SampleRatioCheck(
            applicable=result.applicable,
            mismatch=result.mismatch,
            p_value=result.p_value,
            chi_square=result.statistic if math.isfinite(result.statistic) else 0.0,
            degrees_of_freedom=result.df,
            observed=dict(zip(names, result.observed, strict=True)),
            expected=dict(zip(names, result.expected, strict=True)),
            deterministic=srm.deterministic,
            skipped=scan.skipped,
            note=result.note,
        )
    )
    if result.mismatch:
        warnings.append(result.note)

    first = np.frombuffer(scan.first, dtype=np.int8)
    unit = np.frombuffer(scan.unit, dtype=np.int32)
    usable = rewarded & (first >= 0)
    for check in novelty_report(
        names, arm[usable], unit[usable], first[usable] == 1, reward[usable]
    ):
        response.novelty.append(
            admin_pb2.NoveltyCheck(
                arm=check.arm,
                units=check.units,
                first_mean=check.first_mean,
                later_mean=check.later_mean,
                decay=check.decay,
                ci_low=check.ci_low,
                ci_high=check.ci_high,
                p_value=check.p_value,
                detected=check.detected,
            )
        )
        if check.detected:
            warnings.append(
                f"novelty: arm {check.arm}'s reward falls from {check.first_mean:.4g} in units' "
                f"first exposures to {check.later_mean:.4g} later (p = {check.p_value:.2g}, "
                f"{check.units} units)"
            )

    if options.by:
        segment = np.frombuffer(scan.segment, dtype=np.int32).astype(np.int64)
        cells = segment * k + arm
        size = len(scan.segments) * k
        r = np.where(rewarded, reward, 0.0)
        n = np.bincount(cells[rewarded], minlength=size).reshape(-1, k).astype(float)
        total = np.bincount(cells, weights=r, minlength=size).reshape(-1, k)
        total_sq = np.bincount(cells, weights=r * r, minlength=size).reshape(-1, k)
        decisions = np.bincount(cells, minlength=size).reshape(-1, k)
        per_segment = {
            label: Stats(n[i], total[i], total_sq[i]) for i, label in enumerate(scan.segments)
        }
        response.segment_key = options.by
        for i in np.argsort(-decisions.sum(axis=1), kind="stable"):
            label = scan.segments[i]
            rows, recommendation = _arm_rows(
                names, per_segment[label], model, eligible, decisions[i], min_rewards
            )
            response.segments.append(
                admin_pb2.SegmentReport(
                    value=label,
                    decisions=int(decisions[i].sum()),
                    arms=rows,
                    recommendation=recommendation,
                )
            )
        _, flagged = simpson_warnings(
            names,
            {f"{options.by}={label}": stats for label, stats in per_segment.items()},
            model,
            eligible=eligible,
            min_rewards=min_rewards,
        )
        warnings.extend(w.message for w in flagged)

    if options.covariate:
        x = np.frombuffer(scan.covariate, dtype=np.float64)
        paired = rewarded & np.isfinite(x)
        moments = CupedMoments(k)
        moments.add_arrays(arm[paired], x[paired], reward[paired])
        cuped = cuped_compare(moments, names, control)
        response.cuped.CopyFrom(
            admin_pb2.CupedReport(
                covariate=options.covariate,
                control=names[control],
                theta=cuped.theta,
                variance_reduction=cuped.variance_reduction,
                missing=int((rewarded & ~np.isfinite(x)).sum()),
                comparisons=[
                    admin_pb2.CupedComparison(
                        arm=c.arm,
                        n=c.n,
                        control_n=c.control_n,
                        difference=c.difference,
                        ci_low=c.ci_low,
                        ci_high=c.ci_high,
                        adjusted_difference=c.adjusted_difference,
                        adjusted_ci_low=c.adjusted_ci_low,
                        adjusted_ci_high=c.adjusted_ci_high,
                        variance_reduction=c.variance_reduction,
                    )
                    for c in cuped.comparisons
                ],
            )
        )
    response.warnings.extend(warnings)
