"""GetReport's checks over the decision log on a real server: segments with the Simpson's
warning, novelty, CUPED and sample-ratio numbers equal to the pure maths on the exported log,
and bad input (unknown keys, bad bucket counts, unknown control arm) as INVALID_ARGUMENT
with the keys seen, through gRPC and through `bandit-router report`.

The statistics themselves are tested statistically in tests/test_experiment_checks.py; here
the data are chosen so the expected outcome holds with certainty or exactly.
"""

from __future__ import annotations

import math
import time
from typing import Any

import grpc
import numpy as np
import pytest

from bandit_router.cli import main as cli_main
from bandit_router.client import BanditClient
from bandit_router.v1 import admin_pb2
from policies.cuped import CupedMoments, cuped_compare
from policies.srm import SampleRatioAccumulator, sample_ratio_test

from .servers import ServerThread

pytestmark = pytest.mark.integration

LINGER = 0.3  # decisions reach the log within the recorder's 25 ms linger


def report(client: BanditClient, experiment: str, **fields: Any) -> admin_pb2.GetReportResponse:
    response: admin_pb2.GetReportResponse = client.call_admin(
        "GetReport", admin_pb2.GetReportRequest(experiment=experiment, **fields)
    )
    return response


def test_segments_flag_a_reversal_and_unknown_keys_list_the_keys_seen(
    embedded_server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    # Simpson: b is better on mobile=0 (0.95 vs 0.8) and on mobile=1 (0.3 vs 0.1), but a got
    # its traffic where rewards are easy, so overall a wins (0.72 vs 0.39). Each reversal is
    # 3.7 posterior standard deviations or more: P(b > a) > 0.999 in both segments.
    plan = {  # (mobile, arm): (decisions, rewards of 1)
        (0, "a"): (400, 320),
        (0, "b"): (60, 57),
        (1, "a"): (60, 6),
        (1, "b"): (400, 120),
    }
    with BanditClient(embedded_server.target, timeout=5) as client:
        client.create_experiment("seg", ["a", "b"], reward_window=600)
        for (mobile, arm), (count, ones) in plan.items():
            other = "b" if arm == "a" else "a"
            for i in range(count):
                decision = client.route(
                    "seg", f"u{i}", excluded_arms=[other], context={"mobile": mobile, "x": 1}
                )
                client.reward(decision.decision_id, 1.0 if i < ones else 0.0)
        time.sleep(LINGER)
        response = report(client, "seg", by="mobile")
        assert response.segment_key == "mobile"
        segments = {s.value: s for s in response.segments}
        assert set(segments) == {"0", "1"}
        for (mobile, arm), (count, ones) in plan.items():
            row = {r.arm: r for r in segments[str(mobile)].arms}[arm]
            assert (row.decisions, row.rewards) == (count, count)
            assert row.mean == pytest.approx((1 + ones) / (2 + count), abs=1e-12)  # Beta(1, 1)
        flagged = [w for w in response.warnings if "hides a losing segment" in w]
        assert len(flagged) == 2 and all("arm b beats the overall winner a" in w for w in flagged)

        buckets = report(client, "seg", by="unit:4")
        assert {s.value for s in buckets.segments} <= {"0", "1", "2", "3"}
        assert sum(s.decisions for s in buckets.segments) == 920

        cases: list[tuple[dict[str, Any], str, str]] = [
            ({"by": "country"}, "by", "keys seen: mobile, x"),
            ({"covariate": "pre"}, "covariate", "keys seen: mobile, x"),
            ({"by": "unit:1"}, "by", "unit:N with N from 2"),
            ({"by": "unit:\u00b2"}, "by", "unit:N with N from 2"),  # a digit int() refuses
            ({"control": "zzz"}, "control", "no arm 'zzz'"),
            ({"first_exposures": -2}, "first_exposures", "must not be negative"),
        ]
        for fields, field, needle in cases:
            with pytest.raises(grpc.RpcError) as raised:
                report(client, "seg", **fields)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            details = str(raised.value.details())
            assert details.startswith(f"{field}: ") and needle in details

    assert cli_main(["report", "seg", "--by", "country", "--target", embedded_server.target]) == 1
    err = capsys.readouterr().err
    assert "INVALID_ARGUMENT" in err and "keys seen: mobile, x" in err and "unit:N" in err
    assert cli_main(["report", "seg", "--by", "mobile", "--target", embedded_server.target]) == 0
    out = capsys.readouterr().out
    assert "mobile = 0" in out and "mobile = 1" in out and "hides a losing segment" in out


def test_novelty_is_flagged_for_a_fading_arm(embedded_server: ServerThread) -> None:
    # 40 units see arm a three times: reward 1 the first time, 0 after (a certain decay);
    # arm b's units get the same reward every time (no decay).
    with BanditClient(embedded_server.target, timeout=5) as client:
        client.create_experiment("novel", ["a", "b"], reward_window=600)
        for unit in range(40):
            for exposure in range(3):
                d = client.route("novel", f"a{unit}", excluded_arms=["b"])
                client.reward(d.decision_id, 1.0 if exposure == 0 else 0.0)
                d = client.route("novel", f"b{unit}", excluded_arms=["a"])
                client.reward(d.decision_id, float(unit % 2))
        time.sleep(LINGER)
        response = report(client, "novel")
    checks = {c.arm: c for c in response.novelty}
    assert checks["a"].units == 40 and checks["a"].detected
    assert (checks["a"].first_mean, checks["a"].later_mean, checks["a"].decay) == (1.0, 0.0, 1.0)
    assert checks["b"].decay == 0.0 and not checks["b"].detected
    assert any(w.startswith("novelty: arm a's reward falls") for w in response.warnings)


def test_cuped_and_sample_ratio_equal_the_maths_on_the_exported_log(
    embedded_server: ServerThread,
) -> None:
    rng = np.random.default_rng(1)
    with BanditClient(embedded_server.target, timeout=5) as client:
        client.create_experiment("cup", ["a", "b", "c"], reward_window=600)
        for i in range(300):
            pre = float(rng.uniform(0, 10))
            decision = client.route("cup", f"u{i}", context={"pre_metric": pre})
            lift = {"a": 0.0, "b": 0.05, "c": 0.1}[decision.arm]
            value = min(max(0.05 + 0.07 * pre + lift + float(rng.normal(0, 0.1)), 0.0), 1.0)
            client.reward(decision.decision_id, value)
        time.sleep(LINGER)
        response = report(client, "cup", covariate="pre_metric", control="a")
        records = list(client.export_decisions("cup"))
    assert response.log_decisions == response.log_rewards == len(records) == 300
    names = ("a", "b", "c")
    index = {name: i for i, name in enumerate(names)}
    moments = CupedMoments(3)
    srm = SampleRatioAccumulator(3)
    for record in records:
        moments.add(index[record.arm], record.context["pre_metric"], record.reward)
        assert record.probabilities_complete
        srm.add(index[record.arm], np.array([record.probabilities.get(n, 0.0) for n in names]))
    expected = cuped_compare(moments, names, control=0)
    cuped = response.cuped
    assert (cuped.covariate, cuped.control, cuped.missing) == ("pre_metric", "a", 0)
    assert cuped.theta == pytest.approx(expected.theta, rel=1e-9)
    assert cuped.variance_reduction == pytest.approx(expected.variance_reduction, rel=1e-9)
    assert cuped.variance_reduction > 0.5  # rho ~ 0.89 by construction: r^2 ~ 0.8
    # 300 randomised decisions over 3 arms: the test needs two arms expected >= 5 times.
    assert response.sample_ratio.applicable
    for got, want in zip(cuped.comparisons, expected.comparisons, strict=True):
        assert got.arm == want.arm
        assert got.adjusted_difference == pytest.approx(want.adjusted_difference, rel=1e-9)
        assert got.adjusted_ci_high == pytest.approx(want.adjusted_ci_high, rel=1e-9)
    check = sample_ratio_test(srm.observed, srm.expected, srm.outer)
    ratio = response.sample_ratio
    assert ratio.applicable == check.applicable
    assert ratio.degrees_of_freedom == check.df
    assert ratio.chi_square == pytest.approx(check.statistic, rel=1e-9, abs=1e-12)
    assert math.isclose(ratio.p_value, check.p_value, rel_tol=1e-9, abs_tol=1e-15)
    assert dict(ratio.observed) == dict(zip(names, check.observed, strict=True))
    # The gauge holds the p-value of the last report that ran the test.
    gauge = embedded_server.app.metrics.registry.get_sample_value(
        "bandit_router_sample_ratio_p_value", {"experiment": "cup"}
    )
    assert gauge == ratio.p_value
