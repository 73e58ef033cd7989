"""Traffic caps (``exploration.max_share``) over a real gRPC channel and a real redis-server.

Arm ``a`` is by far the best (its prior says so), so uncapped Thompson sampling would send it
nearly everything; capped at 0.2, Route draws from the capped law and logs it. The law of
the state is constant (no rewards), so the 5,000 decisions are i.i.d.: a's count is
Binomial(5000, 0.2), and for every arm the count minus 5000 x its logged probability is a
sum of centred Bernoullis with variance 5000 q (1 - q). Both are checked at z = 5 (two-sided
level 6e-7); the logged probability of ``a`` is exactly the cap.

When the arms left eligible are all capped and their caps sum to 1 - m < 1 (the others
quarantined or excluded by the request), the fallback arm serves m with REASON_FALLBACK: the
number of FALLBACK decisions is Binomial(ROUTES, m), checked at the same z, and every
decision answers and logs its arm's exact probability under the whole law.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from bandit_router.client import BanditClient, Reason, RouteResult
from bandit_router.errors import InvalidArgument
from bandit_router.operations.experiment_files import experiment_to_mapping, experiments_from_text
from bandit_router.v1 import experiment_pb2 as pb

from .servers import ServerThread

pytestmark = pytest.mark.integration

ROUTES = 5000
CAP = 0.2
Z = 5.0


@pytest.fixture
def client(redis_backed_server: ServerThread) -> Iterator[BanditClient]:
    with BanditClient(redis_backed_server.target, timeout=5, max_attempts=1) as c:
        yield c


def test_a_capped_best_arm_gets_its_cap_and_the_log_says_so(client: BanditClient) -> None:
    client.create_experiment(
        pb.Experiment(
            name="caps",
            arms=[
                pb.Arm(name="a", prior_n=200, prior_sum=180),
                pb.Arm(name="b", prior_n=200, prior_sum=100),
                pb.Arm(name="c", prior_n=200, prior_sum=90),
            ],
            policy=pb.PolicySpec(name="thompson"),
            exploration=pb.ExplorationControls(max_share={"a": CAP}),
        )
    )
    time.sleep(0.15)  # two cache refreshes
    decisions = [client.route("caps") for _ in range(ROUTES)]
    counts = Counter(d.arm for d in decisions)
    bound = Z * math.sqrt(ROUTES * CAP * (1 - CAP))
    assert abs(counts["a"] - ROUTES * CAP) <= bound, counts
    assert all(d.propensity == CAP for d in decisions if d.arm == "a")
    time.sleep(0.3)  # the recorder's flush
    records = {r.decision_id: r for r in client.export_decisions("caps")}
    assert set(records) == {d.decision_id for d in decisions}
    for arm in ("a", "b", "c"):
        logged = [records[d.decision_id].probabilities[arm] for d in decisions]
        mean = sum(logged) / ROUTES
        spread = Z * math.sqrt(ROUTES * mean * (1 - mean))
        assert abs(counts[arm] - ROUTES * mean) <= spread, (arm, counts, mean)
    assert {records[d.decision_id].probabilities["a"] for d in decisions} == {CAP}
    assert all(records[d.decision_id].probabilities_complete for d in decisions)
    shown = client.get_experiment("caps").experiment.exploration.max_share
    assert dict(shown) == {"a": CAP}


def capped_with_fallback(name: str, **fields: object) -> pb.Experiment:
    """Arms a (uncapped, the best by its prior), b, c, d capped at 0.2, 0.3, 0.25."""
    return pb.Experiment(
        name=name,
        arms=[
            pb.Arm(name="a", prior_n=200, prior_sum=180),
            pb.Arm(name="b", prior_n=200, prior_sum=100),
            pb.Arm(name="c", prior_n=200, prior_sum=90),
            pb.Arm(name="d", prior_n=200, prior_sum=120),
        ],
        policy=pb.PolicySpec(name="thompson"),
        exploration=pb.ExplorationControls(max_share={"b": 0.2, "c": 0.3, "d": 0.25}),
        **fields,  # type: ignore[arg-type]
    )


def check_fallback_share(
    client: BanditClient,
    name: str,
    routes: list[RouteResult],
    whole: dict[str, float],
    fallback: str,
    leftover: float,
) -> None:
    """FALLBACK decisions serve ``fallback`` in Binomial(ROUTES, leftover) of the Routes (z =
    5); every decision's propensity, and every record's probabilities, are the whole law."""
    fallbacks = [d for d in routes if d.reason is Reason.FALLBACK]
    bound = Z * math.sqrt(ROUTES * leftover * (1 - leftover))
    assert abs(len(fallbacks) - ROUTES * leftover) <= bound, len(fallbacks)
    assert {d.arm for d in fallbacks} == {fallback}
    others = {d.reason for d in routes if d.reason is not Reason.FALLBACK}
    assert others <= {Reason.EXPLORE, Reason.EXPLOIT}, others
    counts = Counter(d.arm for d in routes)
    for arm, p in whole.items():
        assert abs(counts[arm] - ROUTES * p) <= Z * math.sqrt(ROUTES * p * (1 - p)), counts
    for d in routes:
        assert d.propensity == pytest.approx(whole[d.arm], abs=1e-12)
    time.sleep(0.3)  # the recorder's flush
    records = {r.decision_id: r for r in client.export_decisions(name)}
    for d in routes:
        record = records[d.decision_id]
        assert record.probabilities_complete
        assert dict(record.probabilities) == pytest.approx(whole, abs=1e-12)


def test_quarantine_leaving_only_capped_arms_sends_the_rest_to_the_fallback(
    client: BanditClient,
) -> None:
    """a is forced into quarantine (no probes): b, c, d are eligible, capped at 0.2, 0.3, 0.25,
    and leave m = 0.25 to the fallback arm a, which serves it although quarantined (as it
    serves when no arm is eligible)."""
    client.create_experiment(
        capped_with_fallback(
            "capfall-q",
            metrics=[pb.MetricSpec(name="error", kind=pb.METRIC_KIND_BINARY)],
            guardrails=[
                pb.GuardrailRule(metric="error", statistic=pb.GUARDRAIL_STATISTIC_RATE, max=0.05)
            ],
            fallback_arm="a",
        )
    )
    client.set_guardrail_override("capfall-q", "a", "force_quarantine", reason="outage")
    time.sleep(0.15)  # two cache refreshes
    decisions = [client.route("capfall-q") for _ in range(ROUTES)]
    whole = {"a": 0.25, "b": 0.2, "c": 0.3, "d": 0.25}
    check_fallback_share(client, "capfall-q", decisions, whole, "a", 0.25)


def test_an_exclusion_leaving_only_capped_arms_sends_the_rest_to_the_fallback(
    client: BanditClient,
) -> None:
    """Excluding a leaves b, c, d: m = 0.25 goes to the fallback arm c on top of its cap, so c
    is served with probability 0.55. Excluding c as well leaves no fallback that may serve:
    b and d get their caps relaxed in proportion, never FALLBACK."""
    client.create_experiment(capped_with_fallback("capfall-x", fallback_arm="c"))
    time.sleep(0.15)
    decisions = [client.route("capfall-x", excluded_arms=["a"]) for _ in range(ROUTES)]
    whole = {"b": 0.2, "c": 0.55, "d": 0.25}
    check_fallback_share(client, "capfall-x", decisions, whole, "c", 0.25)
    relaxed = [client.route("capfall-x", excluded_arms=["a", "c"]) for _ in range(500)]
    assert all(d.reason is not Reason.FALLBACK for d in relaxed)
    shares = {"b": 0.2 / 0.45, "d": 0.25 / 0.45}
    assert all(d.propensity == pytest.approx(shares[d.arm], abs=1e-12) for d in relaxed)


def test_files_declare_caps_and_name_a_bad_one() -> None:
    text = """
experiments:
  - name: caps
    arms: [a, b]
    exploration: {max_share: {a: 0.1}}
"""
    (experiment,) = experiments_from_text(text, "caps.yaml")
    assert experiment.max_share == {"a": 0.1}
    assert experiment_to_mapping(experiment)["exploration"] == {"max_share": {"a": 0.1}}
    for bad, field in [
        ("{max_share: {z: 0.1}}", "exploration.max_share[z]"),
        ("{max_share: {a: 2}}", "exploration.max_share[a]"),
        ("{max_share: {a: x}}", "exploration.max_share[a]"),
        ("{max_share: 0.1}", "exploration.max_share"),
    ]:
        with pytest.raises(InvalidArgument) as raised:
            experiments_from_text(text.replace("{max_share: {a: 0.1}}", bad), "caps.yaml")
        assert raised.value.field.endswith(field), raised.value.field
