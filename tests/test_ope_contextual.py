"""Off-policy evaluation of contextual targets on a simulated linear contextual problem.

The problem: d = 5 (an intercept and four standard normal context keys f1..f4), 3 arms,
reward x.theta_a + N(0, SIGMA^2). The logger is uniformly random (propensity 1/3, whole
laws logged). Targets: the greedy policy of the true coefficients (``lin_ucb`` with
alpha = 0 at statistics whose ridge mean is exactly THETA: A = 0, b = lambda theta), and a
``lin_ucb`` (alpha = 1) at the statistics fitted on the log's first half
(``replay.fitted_target``), scored on the second half.

True values: E_x[sum_a pi(a|x) x.theta_a] by Monte Carlo over MC contexts drawn once. Its
standard error (sd of the summand ~ 1 over sqrt(MC)) is < 0.003, under 5 % of the
intervals' half-widths (~0.05 to 0.08 at these sizes), so it barely moves the coverage.

Coverage: over SEEDS seeds, a calibrated 95 % interval covers the truth Binomial(SEEDS,
0.95) times; ``min_covered`` is the smallest count with P(Binomial < count) <= ALPHA. An
estimator off by a bias of one standard error covers ~83 % of the time, and then passes the
bound with probability < 1 %: the check has power.

DR against IPS (uniform logging mu = 1/3, a deterministic target pi(x), model m right):
Var(IPS term) = E[3 (m_pi(x)^2 + SIGMA^2)] - V^2 and Var(DR term) = Var(m_pi(x)) +
3 SIGMA^2, so the ratio of half-widths is sqrt(Var DR / Var IPS), computed here by Monte
Carlo; the cross-fitted ridge model is fitted, not exact, which adds O(d / n) relative
variance (under 2 % at n = 1000 per arm and fold), and each sample standard deviation has a
relative error ~ 1 / sqrt(2 n) (2 %): the mean observed ratio must be within 10 % of theory.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats as scipy_stats

from bandit_router.model.experiments import ContextFeature
from bandit_router.route.features import FeatureSpace
from policies import create_policy
from policies.contextual import ContextualPolicy, ContextualStats
from simulations.cli import build_parser
from simulations.contextual_ope import FeatureSpec, feature_matrix
from simulations.logs import DecisionRecord, LoggedData, write_decision_log
from simulations.replay import Target, evaluate, fitted_target

THETA = np.array(
    [
        [0.2, 0.8, -0.3, 0.0, 0.4],
        [0.4, -0.5, 0.6, 0.3, 0.0],
        [0.0, 0.1, 0.2, -0.6, -0.5],
    ]
)
SIGMA = 0.5
KEYS = ("f1", "f2", "f3", "f4")
FEATURES = tuple(FeatureSpec(k) for k in KEYS)
ARMS = ("a", "b", "c")
N = 2000
SEEDS = 20
ALPHA = 1e-3
MC = 200_000


def min_covered(seeds: int, alpha: float = ALPHA) -> int:
    count = 0
    while scipy_stats.binom.cdf(count, seeds, 0.95) <= alpha:
        count += 1
    return count


def contexts(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.column_stack([np.ones(n), rng.standard_normal((n, len(KEYS)))])


def log(seed: int, n: int = N, no_c_when_f1_positive: bool = False) -> LoggedData:
    """A uniformly random logger (or one that never plays c where f1 > 0)."""
    rng = np.random.default_rng(seed)
    x = contexts(rng, n)
    laws = np.full((n, 3), 1 / 3)
    if no_c_when_f1_positive:
        laws[x[:, 1] > 0] = (0.5, 0.5, 0.0)
    arms = (rng.random(n)[:, None] > laws.cumsum(axis=1)).sum(axis=1)
    rewards = (x * THETA[arms]).sum(axis=1) + SIGMA * rng.standard_normal(n)
    records = [
        DecisionRecord(
            decision_id=str(i),
            experiment="e",
            arm=ARMS[arms[i]],
            propensity=float(laws[i, arms[i]]),
            context={k: float(v) for k, v in zip(KEYS, x[i, 1:], strict=True)},
            reward=float(rewards[i]),
            probabilities=dict(zip(ARMS, map(float, laws[i]), strict=True)),
            probabilities_complete=True,
            features=[float(v) for v in x[i]],
        )
        for i in range(n)
    ]
    return LoggedData.from_records(records, list(ARMS))


def greedy() -> tuple[ContextualPolicy, ContextualStats]:
    """lin_ucb with alpha 0 at statistics whose ridge mean (lambda I)^-1 b is THETA."""
    policy = create_policy("lin_ucb", {"alpha": 0.0, "lambda": 1.0}, contextual=True)
    stats = ContextualStats.zeros(3, 5)
    stats.b[:] = THETA
    return policy, stats


MC_X = contexts(np.random.default_rng(12345), MC)
MC_MEANS = MC_X @ THETA.T  # (MC, arms): x.theta_a


def true_value(policy: ContextualPolicy, stats: ContextualStats) -> float:
    law = policy.probabilities(stats, MC_X)
    return float((law * MC_MEANS).sum(axis=1).mean())


def test_contextual_targets_recover_their_known_values() -> None:
    policy, stats = greedy()
    target = Target.contextual(policy, FEATURES, stats, "greedy")
    truth = true_value(policy, stats)
    covered = {(t, m): 0 for t in ("greedy", "lin_ucb") for m in ("ips", "snips", "dr")}
    ratios = []
    learner = create_policy("lin_ucb", {"alpha": 1.0}, contextual=True)
    for seed in range(SEEDS):
        data = log(seed)
        result = evaluate(target, data, methods=("ips", "snips", "dr"))
        by = {e.method: e for e in result.estimates}
        for method in ("ips", "snips", "dr"):
            covered["greedy", method] += by[method].covers(truth)
        assert by["dr"].half_width < by["ips"].half_width
        ratios.append(by["dr"].half_width / by["ips"].half_width)
        fitted, rest = fitted_target(learner, FEATURES, data)
        assert rest.size == N // 2
        assert fitted.contextual_stats is not None
        fitted_truth = true_value(learner, fitted.contextual_stats)
        result = evaluate(fitted, rest, methods=("ips", "snips", "dr"))
        for estimate in result.estimates:
            covered["lin_ucb", estimate.method] += estimate.covers(fitted_truth)
    bound = min_covered(SEEDS)
    assert all(count >= bound for count in covered.values()), (bound, covered)
    pi = MC_MEANS.argmax(axis=1)
    m_pi = MC_MEANS[np.arange(MC), pi]
    var_ips = float((3 * (m_pi**2 + SIGMA**2)).mean() - m_pi.mean() ** 2)
    var_dr = float(m_pi.var() + 3 * SIGMA**2)
    theory = math.sqrt(var_dr / var_ips)
    assert theory < 0.8
    assert abs(float(np.mean(ratios)) - theory) < 0.1 * theory, (np.mean(ratios), theory)


def test_support_diagnostics_when_the_logger_never_plays_an_arm_in_a_region() -> None:
    policy, stats = greedy()
    data = log(7, no_c_when_f1_positive=True)
    result = evaluate(Target.contextual(policy, FEATURES, stats, "greedy"), data)
    x = np.column_stack([np.ones(data.size), data.contexts])  # context_names sorted: f1..f4
    lacking = int(((x[:, 1] > 0) & ((x @ THETA.T).argmax(axis=1) == 2)).sum())
    assert 0 < lacking < data.size // 2
    assert result.support is not None
    assert (result.support.checked, result.support.supported) == (data.size, data.size - lacking)
    assert any("no support" in w and "restricted" in w for w in result.warnings)
    methods = {e.method for e in result.estimates}
    assert {"ips", "snips", "dr", "bounds"} <= methods
    assert next(e for e in result.estimates if e.method == "dr").n == data.size - lacking


def test_feature_vectors_match_the_service_and_missing_features_are_explained() -> None:
    declared = (
        ContextFeature("f1", scale=2.0),
        ContextFeature("tier", values=("gold", "silver")),
        ContextFeature("absent"),
    )
    specs = tuple(FeatureSpec(f.name, f.scale, f.values, f.required) for f in declared)
    rng = np.random.default_rng(3)
    ctx = [{"f1": float(v), "other": 1.0} if v > 0 else {} for v in rng.standard_normal(50)]
    attrs = [{"tier": str(rng.choice(["gold", "silver", "bronze"]))} for _ in range(50)]
    attrs[0] = {}
    matrix = feature_matrix(specs, ctx, attrs)
    space = FeatureSpace(declared)
    expected = [space.build(c, a) for c, a in zip(ctx, attrs, strict=True)]
    assert np.array_equal(matrix.x, np.asarray(expected))
    assert matrix.never_seen == ("absent",)
    required = (FeatureSpec("f1", required=True),)
    matrix = feature_matrix(required, ctx, attrs)
    missing = sum(1 for c in ctx if "f1" not in c)
    assert matrix.missing_required == (("f1", missing),)
    assert int((~matrix.usable).sum()) == missing
    # A target that requires f1 is scored only where the request carried it.
    data = log(11, n=400)
    policy, _ = greedy()
    stats = ContextualStats.zeros(3, 3)
    stats.b[:] = THETA[:, :3]
    partial = [dict(c) for c in data.context_maps]
    for c in partial[::4]:
        del c["f1"]
    data = LoggedData(**{**data.__dict__, "context_maps": tuple(partial)})
    target = Target.contextual(policy, (required[0], FeatureSpec("f2")), stats, "req")
    result = evaluate(target, data, methods=("dr",))
    assert result.estimates[0].n == 300
    assert any("required features missing (f1 on 100 decisions)" in w for w in result.warnings)


def test_replay_command_reads_a_contextual_target_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = log(5, n=600)
    records = [
        DecisionRecord(
            decision_id=str(i),
            experiment="e",
            arm=ARMS[int(data.arms[i])],
            propensity=1 / 3,
            context=dict(data.context_maps[i]),
            reward=float(data.rewards[i]),
        )
        for i in range(data.size)
    ]
    write_decision_log(records, tmp_path / "log.jsonl")
    entry = {
        "name": "e",
        "arms": [{"name": a} for a in ARMS],
        "policy": {"name": "lin_ucb", "params": {"alpha": 0.5}},
        "context_features": [{"name": k} for k in KEYS],
    }
    (tmp_path / "target.yaml").write_text(yaml.safe_dump({"experiments": [entry]}))
    args = build_parser().parse_args(
        [
            "replay",
            str(tmp_path / "log.jsonl"),
            "--target",
            str(tmp_path / "target.yaml"),
            "--target",
            "uniform",
            "--json",
            str(tmp_path / "out.json"),
        ]
    )
    assert args.func(args) == 0
    out = json.loads((tmp_path / "out.json").read_text())
    contextual, uniform = out["targets"]
    assert "lin_ucb" in contextual["target"] and "fitted on 300 decisions" in contextual["target"]
    assert contextual["estimates"]["dr"]["n"] == 300
    assert uniform["estimates"]["dr"]["n"] == 600
    # The learned target beats uniform by far more than both intervals (on this problem a
    # policy near the greedy one is worth ~0.8, uniform ~0.2).
    assert contextual["estimates"]["dr"]["ci95_low"] > uniform["estimates"]["dr"]["ci95_high"]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"name": "lin_ts"}))
    args = build_parser().parse_args(
        ["replay", str(tmp_path / "log.jsonl"), "--target", str(tmp_path / "bad.yaml")]
    )
    capsys.readouterr()
    assert args.func(args) == 2
    assert "contextual but no context_features" in capsys.readouterr().err
