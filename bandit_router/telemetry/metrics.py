"""Prometheus metrics of bandit-router, correct with one process or several worker processes.

Everything is built explicitly into a ``CollectorRegistry`` the server owns (nothing is
registered at import time), so tests and several servers in one process never collide on the
global registry.

Multi-process mode (several gRPC worker processes behind one port, SO_REUSEPORT) is
prometheus-client's: each process writes its values into mmap files in
``PROMETHEUS_MULTIPROC_DIR`` and the exposition registry (``exposition_registry``) merges the
files at scrape time. prometheus-client picks its value storage when it is *imported*, so the
variable must be in the environment before the first ``import prometheus_client`` in every
process (set it in the supervisor before it imports this module and before it forks/spawns
workers). ``Metrics`` refuses to start when the variable is set but the storage is not
multi-process, instead of silently exporting one worker's numbers.

The hot path (Route/Reward, ~8k calls/s on 2 cores) never calls ``.labels()``: labelled
children are resolved once and kept in plain dicts keyed by the label tuple, because
``.labels()`` validates, stringifies and locks on every call (~2 µs) while a dict hit is ~50 ns,
and the children it updates per call are buffered (``buffered_metrics``): exported values lag
by at most ``FLUSH_INTERVAL``, and ``Metrics.flush`` makes them current.
"""

from __future__ import annotations

import math
import os
import shutil
import threading
from collections.abc import Callable, Iterable
from enum import Enum
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client import multiprocess as prom_multiprocess
from prometheus_client import values as prom_values

from bandit_router.telemetry.buffered_metrics import BufferedChildren, BufferedCounter

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"

#: Request latency buckets (seconds). Route's own handler time (from the cache, no Redis) is
#: tens of microseconds, so the buckets start at 5 µs; a loaded server answers in ~100-500 µs;
#: 0.5 must be a bucket boundary because the latency SLO (99.9% of Route under 500 ms) is
#: computed from the ``le="0.5"`` bucket.
LATENCY_BUCKETS: Final[tuple[float, ...]] = (
    0.000005,
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)
#: Store (Redis) round trips: ~100 µs on loopback up to timeouts of a few seconds.
STORE_BUCKETS: Final[tuple[float, ...]] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)

#: Reward outcomes whose value is credited to the arm's statistics (see ``observe_reward``).
CREDITED_OUTCOMES: Final = frozenset({"applied", "late_applied"})

GaugeMode = Literal["livemostrecent", "livemax", "mostrecent", "max", "all", "liveall"]

_T = TypeVar("_T")


def multiprocess_enabled() -> bool:
    """Whether prometheus-client stores values in ``PROMETHEUS_MULTIPROC_DIR`` mmap files."""
    return bool(getattr(prom_values.ValueClass, "_multiprocess", False))


def prepare_multiprocess_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` empty, for the supervisor to call once before it starts any worker.

    Files of a previous run would otherwise be merged into this run's counters (a counter
    that jumps at start looks like a burst of traffic to ``rate``) and keep dead series alive.
    Call it *before* workers import prometheus-client, never while workers are running.
    """
    directory = Path(path)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    return directory


def mark_worker_dead(pid: int, path: str | os.PathLike[str] | None = None) -> None:
    """Forget a dead worker's per-process gauges (the ``live*`` modes), e.g. its cache age.

    The supervisor calls this when it reaps a worker. Counters and histograms of the dead
    worker stay in the directory on purpose: removing them would make the merged counters
    go backwards, which Prometheus reads as a reset.
    """
    directory = os.fspath(path) if path is not None else os.environ.get(MULTIPROC_ENV)
    if not directory:
        raise ValueError(f"mark_worker_dead: no path given and {MULTIPROC_ENV} is not set")
    prom_multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def exposition_registry(registry: CollectorRegistry | None = None) -> CollectorRegistry:
    """The registry to serve on /metrics.

    In multi-process mode a fresh registry whose only collector merges every worker's files
    (serving the workers' own registry would show just the scraped process). Otherwise
    ``registry`` itself, which must then be given.
    """
    if multiprocess_enabled():
        merged = CollectorRegistry(auto_describe=True)
        prom_multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        # python_info is the same in every worker. The process_* and python_gc_* collectors
        # read the process that serves the page (here the supervisor, not a worker) and
        # cannot be merged across processes, so multi-process mode leaves them out.
        PlatformCollector(registry=merged)
        return merged
    if registry is None:
        raise ValueError("exposition_registry: single-process mode needs the Metrics registry")
    return registry


def start_metrics_http_server(
    host: str, port: int, registry: CollectorRegistry
) -> tuple[Any, threading.Thread]:
    """Serve ``registry`` on http://host:port/metrics in a daemon thread; returns (server, thread).

    Pass ``exposition_registry(metrics.registry)`` (or ``metrics.exposition_registry()``) so
    multi-process mode serves the merged view. ``port=0`` picks a free port
    (``server.server_port``).
    """
    server, thread = start_http_server(port, addr=host, registry=registry)
    return server, thread


def _short_enum(value: str, prefix: str) -> str:
    """``REWARD_OUTCOME_LATE_APPLIED`` / ``LATE_APPLIED`` / ``late_applied`` -> ``late_applied``.

    Label values are normalised once per label set (children are cached), so callers may pass
    proto enum names or short names and the dashboard sees one spelling.
    """
    upper = value.upper()
    if upper.startswith(prefix):
        upper = upper[len(prefix) :]
    return upper.lower()


class Metrics:
    """Every metric of the service, registered into one registry, with cached children."""

    def __init__(self, registry: CollectorRegistry) -> None:
        if os.environ.get(MULTIPROC_ENV) and not multiprocess_enabled():
            raise RuntimeError(
                f"{MULTIPROC_ENV} is set but prometheus_client was imported before it was: "
                "set the variable before the first import of prometheus_client in every process"
            )
        self.registry = registry
        self.multiprocess = multiprocess_enabled()
        self._lock = threading.Lock()
        # ``x_created`` series double every counter and histogram in the text format and no
        # PromQL function needs them (rate handles resets). prometheus-client's switch is
        # process-wide; every Metrics of the process wants it off.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        if not self.multiprocess:
            # What the default registry would have: process_* (CPU, memory, open fds, start
            # time), python_info and python_gc_*. They read the process at scrape time only.
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)

        def gauge(name: str, doc: str, labels: tuple[str, ...], mode: GaugeMode) -> Gauge:
            return Gauge(name, doc, labels, registry=registry, multiprocess_mode=mode)

        rpc_labels = ("grpc_type", "grpc_service", "grpc_method")
        self.grpc_started = Counter(
            "grpc_server_started_total",
            "RPCs started on the server.",
            rpc_labels,
            registry=registry,
        )
        self.grpc_handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, regardless of success or failure.",
            (*rpc_labels, "grpc_code"),
            registry=registry,
        )
        self.grpc_handling = Histogram(
            "grpc_server_handling_seconds",
            "Time from receiving an RPC until the application handler finished "
            "(the latency-SLO histogram for Route and Reward).",
            rpc_labels,
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self.decisions = Counter(
            "bandit_router_decisions_total",
            "Decisions returned by Route, by chosen arm and reason.",
            ("experiment", "arm", "reason"),
            registry=registry,
        )
        self.rewards = Counter(
            "bandit_router_rewards_total",
            "Reward calls, by outcome (applied, duplicate, late_ignored, late_applied, recorded).",
            ("experiment", "arm", "outcome"),
            registry=registry,
        )
        self.reward_value = Counter(
            "bandit_router_reward_value_total",
            "Sum of reward values credited to the arm (applied, late_applied and default rewards).",
            ("experiment", "arm"),
            registry=registry,
        )
        self.default_rewards = Counter(
            "bandit_router_default_rewards_total",
            "Default rewards credited to decisions that got no reward by their deadline.",
            ("experiment", "arm"),
            registry=registry,
        )
        # Derived from the shared store state, so every worker computes the same value: the
        # most recent write wins, and a dead worker's stale value disappears with it.
        self.posterior_mean = gauge(
            "bandit_router_arm_posterior_mean",
            "Posterior mean reward of the arm.",
            ("experiment", "arm"),
            "livemostrecent",
        )
        self.prob_best = gauge(
            "bandit_router_arm_probability_best_ratio",
            "Posterior probability that the arm has the highest mean.",
            ("experiment", "arm"),
            "livemostrecent",
        )
        self.exploration_share = gauge(
            "bandit_router_exploration_ratio",
            "Share of recent decisions that explored (chose an arm other than the greedy one).",
            ("experiment",),
            "livemostrecent",
        )
        # Set when a report reads the decision log (GetReport, `bandit-router report`): the
        # check needs the log, which the hot path never reads. Same value on every worker.
        self.sample_ratio_p = gauge(
            "bandit_router_sample_ratio_p_value",
            "p-value of the last report's sample-ratio-mismatch test (below 0.001: mismatch).",
            ("experiment",),
            "livemostrecent",
        )
        # Per-worker quantities: the worst live worker is what matters.
        self.cache_age = gauge(
            "bandit_router_cache_age_seconds",
            "Age of the in-process state cache (worst live worker).",
            ("experiment",),
            "livemax",
        )
        self.drift_statistic = gauge(
            "bandit_router_drift_statistic",
            "Page-Hinkley statistic of the arm's reward mean (max of both directions).",
            ("experiment", "arm"),
            "livemax",
        )
        self.drift_detected = gauge(
            "bandit_router_drift_detected",
            "1 while the drift detector reports a change of the arm's reward mean.",
            ("experiment", "arm"),
            "livemax",
        )
        self.committed = gauge(
            "bandit_router_experiment_committed",
            "1 while the experiment serves the winner its stopping rule committed to, else 0.",
            ("experiment",),
            "livemax",
        )
        self.arm_quarantined = gauge(
            "bandit_router_arm_quarantined",
            "1 while a guardrail holds the arm in quarantine (probe traffic only), else 0.",
            ("experiment", "arm"),
            "livemax",
        )
        self.metric_mean = gauge(
            "bandit_router_arm_metric_mean",
            "Mean of a declared metric over the arm's rewards that carried it (never discounted).",
            ("experiment", "arm", "metric"),
            "livemostrecent",
        )
        self.metric_observations = gauge(
            "bandit_router_arm_metric_observations",
            "Rewards of the arm that carried the metric (the shared count, every worker alike).",
            ("experiment", "arm", "metric"),
            "livemostrecent",
        )
        self.guardrail_transitions = Counter(
            "bandit_router_guardrail_transitions_total",
            "Guardrail transitions this worker wrote, by the state entered "
            "(quarantined or active).",
            ("experiment", "arm", "state"),
            registry=registry,
        )
        self.drift_alarms = Counter(
            "bandit_router_drift_alarms_total",
            "Drift alarms raised (rising edges of drift_detected), counted per detecting worker.",
            ("experiment", "arm"),
            registry=registry,
        )
        self.store_duration = Histogram(
            "bandit_router_store_duration_seconds",
            "Store (Redis) operation latency.",
            ("operation",),
            registry=registry,
            buckets=STORE_BUCKETS,
        )
        self.store_errors = Counter(
            "bandit_router_store_errors_total",
            "Store operations that failed.",
            ("operation",),
            registry=registry,
        )

        # Children caches. Keys are the raw arguments, so a hit costs one dict lookup.
        self._decision_children: dict[tuple[str, str, str], BufferedCounter] = {}
        self._reward_children: dict[tuple[str, str, str], tuple[Any, Any | None]] = {}
        self._default_children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._posterior_children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._drift_children: dict[tuple[str, str], tuple[Any, Any, Any]] = {}
        self._drift_state: dict[tuple[str, str], bool] = {}
        self._exploration_children: dict[str, Any] = {}
        self._committed_children: dict[str, Any] = {}
        self._quarantined_children: dict[tuple[str, str], Any] = {}
        self._metric_children: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._sample_ratio_children: dict[str, Any] = {}
        self._cache_age_children: dict[str, Any] = {}
        self._store_children: dict[str, tuple[Any, Any]] = {}
        self._rpc_children: dict[tuple[str, str, str], RpcInstruments] = {}
        self.buffered = BufferedChildren()

    def flush(self) -> None:
        """Add what the hot path buffered to the exported values (event loop thread only)."""
        self.buffered.flush()

    def exposition_registry(self) -> CollectorRegistry:
        """What /metrics must serve: the merged files in multi-process mode, else ``registry``."""
        return exposition_registry(self.registry)

    def _child(self, cache: dict[Any, _T], key: Any, make: Callable[[], _T]) -> _T:
        child = cache.get(key)
        if child is None:
            with self._lock:
                child = cache.get(key)
                if child is None:
                    child = make()
                    cache[key] = child
        return child

    # -- gRPC ------------------------------------------------------------------------------

    def rpc_instruments(
        self, service: str, method: str, grpc_type: str = "unary"
    ) -> RpcInstruments:
        """Resolved children of one RPC method, for ``rpc_metrics``' per-call fast path."""
        key = (grpc_type, service, method)
        return self._child(self._rpc_children, key, lambda: RpcInstruments(self, *key))

    def observe_rpc(self, service: str, method: str, code: str, seconds: float) -> None:
        """Record one completed unary RPC (counts it as started too).

        ``code`` is a gRPC status name such as ``OK`` or ``UNAVAILABLE`` (``grpc.StatusCode``
        members are accepted too). Served calls go through ``rpc_metrics`` instead, which
        counts a call as started when it starts, so in-flight calls show as
        started-but-not-handled.
        """
        instruments = self.rpc_instruments(service, method)
        instruments.started.inc()
        instruments.finish(code, seconds)

    # -- decisions and rewards -------------------------------------------------------------

    def observe_decision(self, experiment: str, arm: str, reason: str) -> None:
        """Count a decision; ``reason`` is a Reason name (``EXPLOIT`` or ``REASON_EXPLOIT``)."""
        child = self._decision_children.get((experiment, arm, reason))
        if child is None:
            child = self.decision_counter(experiment, arm, reason)
        child.inc()

    def decision_counter(self, experiment: str, arm: str, reason: str) -> BufferedCounter:
        """The decisions counter of one (experiment, arm, reason), for callers that keep it."""
        return self._child(
            self._decision_children,
            (experiment, arm, reason),
            lambda: self.buffered.counter(
                self.decisions.labels(experiment, arm, _short_enum(reason, "REASON_"))
            ),
        )

    def observe_reward(self, experiment: str, arm: str, outcome: str, value: float) -> None:
        """Count a Reward call; add ``value`` to the value sum only when it was credited.

        Duplicates, ignored late rewards and recorded-only rewards did not change the arm's
        statistics, so adding their value would make value/count disagree with the posterior.
        """
        key = (experiment, arm, outcome)
        children = self._reward_children.get(key)
        if children is None:

            def make() -> tuple[Any, Any | None]:
                short = _short_enum(outcome, "REWARD_OUTCOME_")
                credited = short in CREDITED_OUTCOMES
                value_child = (
                    self.buffered.counter(self.reward_value.labels(experiment, arm))
                    if credited
                    else None
                )
                return self.buffered.counter(
                    self.rewards.labels(experiment, arm, short)
                ), value_child

            children = self._child(self._reward_children, key, make)
        count_child, value_child = children
        count_child.inc()
        if value_child is not None and value != 0.0:
            value_child.inc(value)

    def observe_default_rewards(
        self, experiment: str, arm: str, count: int, value_sum: float
    ) -> None:
        """Count default rewards credited by the deadline sweeper; their values are credited."""
        if count <= 0:
            return
        key = (experiment, arm)
        count_child, value_child = self._child(
            self._default_children,
            key,
            lambda: (
                self.default_rewards.labels(experiment, arm),
                self.reward_value.labels(experiment, arm),
            ),
        )
        count_child.inc(count)
        if value_sum != 0.0:
            value_child.inc(value_sum)

    # -- model state ----------------------------------------------------------------------

    def set_arm_posterior(self, experiment: str, arm: str, mean: float, prob_best: float) -> None:
        key = (experiment, arm)
        mean_child, best_child = self._child(
            self._posterior_children,
            key,
            lambda: (
                self.posterior_mean.labels(experiment, arm),
                self.prob_best.labels(experiment, arm),
            ),
        )
        mean_child.set(mean)
        best_child.set(prob_best)

    def set_exploration_share(self, experiment: str, share: float) -> None:
        child = self._child(
            self._exploration_children,
            experiment,
            lambda: self.exploration_share.labels(experiment),
        )
        child.set(share)

    def set_sample_ratio(self, experiment: str, p_value: float) -> None:
        child = self._child(
            self._sample_ratio_children,
            experiment,
            lambda: self.sample_ratio_p.labels(experiment),
        )
        child.set(p_value)

    def set_cache_age(self, experiment: str, seconds: float) -> None:
        child = self._child(
            self._cache_age_children, experiment, lambda: self.cache_age.labels(experiment)
        )
        child.set(seconds)

    def set_committed(self, experiment: str, committed: bool) -> None:
        child = self._child(
            self._committed_children, experiment, lambda: self.committed.labels(experiment)
        )
        child.set(1.0 if committed else 0.0)

    def set_arm_quarantined(self, experiment: str, arm: str, quarantined: bool) -> None:
        child = self._child(
            self._quarantined_children,
            (experiment, arm),
            lambda: self.arm_quarantined.labels(experiment, arm),
        )
        child.set(1.0 if quarantined else 0.0)

    def set_arm_metric(
        self, experiment: str, arm: str, metric: str, count: float, mean: float
    ) -> None:
        mean_child, count_child = self._child(
            self._metric_children,
            (experiment, arm, metric),
            lambda: (
                self.metric_mean.labels(experiment, arm, metric),
                self.metric_observations.labels(experiment, arm, metric),
            ),
        )
        mean_child.set(mean)
        count_child.set(count)

    def count_guardrail_transition(self, experiment: str, arm: str, state: str) -> None:
        self.guardrail_transitions.labels(experiment, arm, state).inc()

    def set_drift(self, experiment: str, arm: str, statistic: float, detected: bool) -> None:
        """Export the detector state; a False->True transition counts one alarm."""
        key = (experiment, arm)
        stat_child, detected_child, alarms_child = self._child(
            self._drift_children,
            key,
            lambda: (
                self.drift_statistic.labels(experiment, arm),
                self.drift_detected.labels(experiment, arm),
                self.drift_alarms.labels(experiment, arm),
            ),
        )
        stat_child.set(statistic)
        detected_child.set(1.0 if detected else 0.0)
        if detected and not self._drift_state.get(key, False):
            alarms_child.inc()
        self._drift_state[key] = detected

    # -- store ----------------------------------------------------------------------------

    def observe_store(self, operation: str, seconds: float, ok: bool) -> None:
        duration_child, error_child = self._child(
            self._store_children,
            operation,
            lambda: (
                self.buffered.histogram(self.store_duration.labels(operation)),
                self.buffered.counter(self.store_errors.labels(operation)),
            ),
        )
        duration_child.observe(seconds)
        if not ok:
            error_child.inc()

    # -- lifecycle ------------------------------------------------------------------------

    def remove_experiment(self, experiment: str) -> None:
        """Drop the label sets of a deleted experiment so its series stop being exported.

        Single-process mode removes them from the registry. prometheus-client cannot delete
        entries from the multi-process mmap files, so there this process's per-experiment
        gauges are set to NaN (a gap in Grafana, never a stale number) and the counters stay
        until the directory is recreated at the next deployment.
        """
        with self._lock:
            self.flush()  # the removed children must not keep buffered increments
            self.buffered.forget(
                [
                    child
                    for cache in (self._decision_children, self._reward_children)
                    for key, children in cache.items()
                    if key[0] == experiment
                    for child in (children if isinstance(children, tuple) else (children,))
                    if child is not None
                ]
            )
            caches: Iterable[dict[Any, Any]] = (
                self._decision_children,
                self._reward_children,
                self._default_children,
                self._posterior_children,
                self._drift_children,
                self._drift_state,
                self._quarantined_children,
                self._metric_children,
            )
            for cache in caches:
                for key in [k for k in cache if k[0] == experiment]:
                    del cache[key]
            self._exploration_children.pop(experiment, None)
            self._sample_ratio_children.pop(experiment, None)
            self._cache_age_children.pop(experiment, None)
            self._committed_children.pop(experiment, None)

        labelled: tuple[Counter | Gauge, ...] = (
            self.decisions,
            self.rewards,
            self.reward_value,
            self.default_rewards,
            self.posterior_mean,
            self.prob_best,
            self.exploration_share,
            self.sample_ratio_p,
            self.cache_age,
            self.committed,
            self.arm_quarantined,
            self.metric_mean,
            self.metric_observations,
            self.guardrail_transitions,
            self.drift_statistic,
            self.drift_detected,
            self.drift_alarms,
        )
        for metric in labelled:
            if self.multiprocess:
                if isinstance(metric, Gauge):
                    for labelvalues, child in _children_of(metric):
                        if labelvalues[0] == experiment:
                            child.set(math.nan)
            else:
                metric.remove_by_labels({"experiment": experiment})


def _children_of(metric: Gauge) -> list[tuple[tuple[str, ...], Any]]:
    """The existing children of a labelled metric (prometheus-client keeps them in ``_metrics``)."""
    with metric._lock:
        return [(tuple(labels), child) for labels, child in metric._metrics.items()]


class RpcInstruments:
    """The resolved children of one (type, service, method): a call touches only these."""

    __slots__ = ("_buffered", "_handled", "_handled_parent", "_labels", "handling", "started")

    def __init__(self, metrics: Metrics, grpc_type: str, service: str, method: str) -> None:
        self._labels = (grpc_type, service, method)
        self._buffered = metrics.buffered
        self._handled_parent = metrics.grpc_handled
        self._handled: dict[str | Enum, BufferedCounter] = {}
        self.started = metrics.buffered.counter(metrics.grpc_started.labels(*self._labels))
        self.handling = metrics.buffered.histogram(metrics.grpc_handling.labels(*self._labels))

    def finish(self, code: str | Enum, seconds: float) -> None:
        """Count one finished call by its status: a name, or an enum member such as a
        ``grpc.StatusCode`` (looked up as is, so the per-call path never builds a string)."""
        child = self._handled.get(code)
        if child is None:
            name = code.name if isinstance(code, Enum) else str(code).upper()
            child = self._buffered.counter(self._handled_parent.labels(*self._labels, name))
            self._handled[code] = child
        child.inc()
        self.handling.observe(seconds)
