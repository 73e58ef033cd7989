"""The dashboard's JSON document: what GetReport computes, plus pins, pause and share history.

The numbers of an arm are GetReport's own (``ReportBuilder.report_with_config``), so the page,
``bandit-router report`` and the Admin API never disagree. Only the recent share differs in
source: here it is the share of the last ``SHARE_WINDOW`` seconds from ``TrafficHistory``.

Shape (``version`` 1)::

    {"version": 1, "generated_at": <unix s>, "share_window_seconds": 300,
     "sample_interval_seconds": 5, "experiments": [
       {"name", "policy", "paused", "pause_arm", "state_version", "recommendation",
        "pin": {"arm", "reason", "expires_at", "units"} | null,
        "arms": [{"arm", "state" ("active"|"disabled"), "pinned", "decisions", "rewards",
                  "mean", "ci_low", "ci_high", "prob_best", "expected_loss", "recent_share",
                  "drift_detected", "drift_statistic"}],
        "share_history": [{"t": <unix s>, "shares": {arm: share}}]}]}
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

from bandit_router.analysis.reports import ReportBuilder
from bandit_router.dashboard.traffic import TrafficHistory
from bandit_router.errors import NotFound
from bandit_router.model.experiments import Experiment
from bandit_router.route.cache import ExperimentCache
from bandit_router.v1 import admin_pb2, experiment_pb2

log = logging.getLogger(__name__)

VERSION = 1
SHARE_WINDOW = 300.0
#: However many pages poll, the document is computed at most once per this many seconds.
MIN_RECOMPUTE = 1.0


def experiment_document(
    report: admin_pb2.GetReportResponse,
    experiment: Experiment,
    history: list[tuple[float, dict[str, float]]],
    now: float,
) -> dict[str, Any]:
    """One experiment's entry: the report's numbers as JSON numbers, enums as short words."""
    pinned = experiment.pin.active_arm(now)
    pin = None
    if pinned or experiment.pin.units:
        pin = {
            "arm": pinned,
            "reason": experiment.pin.reason if pinned else "",
            "expires_at": experiment.pin.expires_at if pinned else 0.0,
            "units": len(experiment.pin.units),
        }
    return {
        "name": report.experiment,
        "policy": report.policy,
        "paused": experiment.paused,
        "pause_arm": experiment.pause_arm,
        "state_version": report.state_version,
        "recommendation": report.recommendation,
        "pin": pin,
        "arms": [
            {
                "arm": arm.arm,
                "state": "active" if arm.state == experiment_pb2.ARM_STATE_ACTIVE else "disabled",
                "pinned": arm.arm == pinned,
                "decisions": arm.decisions,
                "rewards": _finite(arm.rewards),
                "mean": _finite(arm.mean),
                "ci_low": _finite(arm.ci_low),
                "ci_high": _finite(arm.ci_high),
                "prob_best": _finite(arm.prob_best),
                "expected_loss": _finite(arm.expected_loss),
                "recent_share": _finite(arm.recent_share),
                "drift_detected": arm.drift_detected,
                "drift_statistic": _finite(arm.drift_statistic),
            }
            for arm in report.arms
        ],
        "share_history": [{"t": at, "shares": shares} for at, shares in history],
    }


def _finite(value: float) -> float | None:
    """JSON has no NaN or infinity: an undefined number is null (the page shows a dash)."""
    return value if math.isfinite(value) else None


class DashboardData:
    """Computes the document on the event loop, at most once per ``MIN_RECOMPUTE`` seconds."""

    def __init__(
        self,
        reports: ReportBuilder,
        cache: ExperimentCache,
        history: TrafficHistory,
        *,
        actions: bool = False,
    ) -> None:
        self.actions = actions
        self.reports = reports
        self.cache = cache
        self.history = history
        self._lock = asyncio.Lock()
        self._document: dict[str, Any] | None = None
        self._computed_at = 0.0

    async def document(self) -> dict[str, Any]:
        async with self._lock:  # concurrent polls share one computation
            if self._document is None or time.monotonic() - self._computed_at >= MIN_RECOMPUTE:
                self._document = await self._compute()
                self._computed_at = time.monotonic()
            return self._document

    async def _compute(self) -> dict[str, Any]:
        now = time.time()
        experiments = []
        for name in sorted(self.cache.names()):
            try:
                report, experiment = await self.reports.report_with_config(
                    name,
                    SHARE_WINDOW,
                    self.history.shares(name, SHARE_WINDOW, self.cache.get(name)),
                )
            except NotFound:
                continue  # deleted since the cache listed it
            experiments.append(
                experiment_document(report, experiment, self.history.series(name), now)
            )
        return {
            "version": VERSION,
            "generated_at": now,
            "share_window_seconds": SHARE_WINDOW,
            "sample_interval_seconds": self.history.interval,
            # Whether the page may offer operator actions (the server has tokens).
            "actions": self.actions,
            "experiments": experiments,
        }
