"""Buffered hot-path metrics export exactly what direct prometheus-client updates would."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram

from bandit_router.telemetry.buffered_metrics import BufferedChildren
from bandit_router.telemetry.metrics import LATENCY_BUCKETS

# Values on and around every bucket boundary, where "less than or equal" matters.
EDGES = [b * f for b in LATENCY_BUCKETS for f in (0.999, 1.0, 1.001)]
AMOUNTS = st.one_of(st.sampled_from(EDGES), st.floats(0.0, 5.0, allow_nan=False))


def _samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {
        (sample.name, sample.labels.get("le", "")): sample.value
        for family in registry.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


@settings(max_examples=200, deadline=None)
@given(st.lists(AMOUNTS, max_size=60), st.integers(0, 60))
def test_buffered_histogram_and_counter_match_direct_updates(
    amounts: list[float], flush_after: int
) -> None:
    direct, buffered = CollectorRegistry(), CollectorRegistry()
    histograms = [
        Histogram("h", "h", ["m"], registry=r, buckets=LATENCY_BUCKETS) for r in (direct, buffered)
    ]
    counters = [Counter("c", "c", ["m"], registry=r) for r in (direct, buffered)]
    children = BufferedChildren()
    direct_histogram, direct_counter = histograms[0].labels("Route"), counters[0].labels("Route")
    hot_histogram = children.histogram(histograms[1].labels("Route"))
    hot_counter = children.counter(counters[1].labels("Route"))
    for index, amount in enumerate(amounts):
        direct_histogram.observe(amount)
        direct_counter.inc()
        hot_histogram.observe(amount)
        hot_counter.inc()
        if index == flush_after:  # flushing mid-way must not lose or repeat anything
            children.flush()
    children.flush()
    children.flush()  # idempotent when nothing is pending
    got, want = _samples(buffered), _samples(direct)
    assert got.keys() == want.keys()
    for name, value in want.items():
        if name[0] == "h_sum":  # added in another order: equal up to rounding
            assert math.isclose(got[name], value, rel_tol=1e-12, abs_tol=1e-15)
        else:  # bucket counts and the counter: exactly
            assert got[name] == value, name


def test_nothing_is_exported_before_a_flush_and_forgotten_children_stop() -> None:
    registry = CollectorRegistry()
    counter = Counter("c", "c", ["m"], registry=registry)
    children = BufferedChildren()
    hot = children.counter(counter.labels("x"))
    hot.inc(3)
    assert registry.get_sample_value("c_total", {"m": "x"}) == 0.0
    children.flush()
    assert registry.get_sample_value("c_total", {"m": "x"}) == 3.0
    children.forget([hot])
    hot.inc()
    children.flush()
    assert registry.get_sample_value("c_total", {"m": "x"}) == 3.0
