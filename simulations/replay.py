"""Evaluating a target policy on a decision log: targets, the replay method, and the report.

A target is a fixed arm, uniform, or any serving policy. For the importance-weighted
estimators a serving policy decides at each logged decision on the statistics of every
reward logged before it (the service's statistics, had it switched policy then). The replay
method (Li et al. 2011) instead lets the policy learn from its own choices: walk the log,
keep a decision only where the policy picks the logged arm, and feed the policy only those
rewards. On a uniformly random log the kept decisions are distributed as an on-policy run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

from policies.base import Policy, Stats
from simulations import ope
from simulations.environments import FloatArray, IntArray
from simulations.logs import LoggedData

#: Relative spread of propensities around 1/K below which a log counts as uniformly random.
UNIFORM_TOLERANCE = 1e-3
#: Target probabilities are computed for this many decisions per vectorised policy call.
CHUNK = 4096


@dataclass(frozen=True)
class Target:
    """What to evaluate: ``kind`` is "arm", "uniform" or "policy"."""

    kind: str
    label: str
    arm: str | None = None
    policy: Policy | None = None

    @classmethod
    def fixed_arm(cls, arm: str) -> Target:
        return cls("arm", f"arm:{arm}", arm=arm)

    @classmethod
    def uniform(cls) -> Target:
        return cls("uniform", "uniform")

    @classmethod
    def serving(cls, policy: Policy, label: str | None = None) -> Target:
        return cls("policy", label or policy.name, policy=policy)


def target_probabilities(target: Target, data: LoggedData) -> FloatArray:
    """The target's probability of every arm at every logged decision, shape ``(n, arms)``."""
    n, k = data.size, data.n_arms
    if target.kind == "uniform":
        return np.full((n, k), 1.0 / k)
    if target.kind == "arm":
        if target.arm not in data.arm_names:
            raise ValueError(f"target arm {target.arm!r} is not one of {list(data.arm_names)}")
        probabilities = np.zeros((n, k))
        probabilities[:, data.arm_names.index(target.arm)] = 1.0
        return probabilities
    policy = _policy(target)
    history = _stats_before_each(policy, data)
    out = np.empty((n, k))
    for start in range(0, n, CHUNK):
        chunk = slice(start, start + CHUNK)
        out[chunk] = policy.probabilities(
            Stats(history.n[chunk], history.total[chunk], history.total_sq[chunk])
        )
    return out


def _policy(target: Target) -> Policy:
    if target.policy is None:
        raise ValueError(f"target {target.label!r} has no policy")
    return target.policy


def _stats_before_each(policy: Policy, data: LoggedData) -> Stats:
    """Statistics as the service held them before each decision, updated by the policy itself
    (so discounting follows the policy's own rule)."""
    k = data.n_arms
    n_hist = np.empty((data.size, k))
    total_hist = np.empty((data.size, k))
    sq_hist = np.empty((data.size, k))
    stats = Stats.zeros(k)
    for i in range(data.size):
        n_hist[i], total_hist[i], sq_hist[i] = stats.n, stats.total, stats.total_sq
        stats = policy.update(stats, np.asarray(data.arms[i]), np.asarray(data.rewards[i]))
    return Stats(n_hist, total_hist, sq_hist)


@dataclass(frozen=True)
class ReplayResult:
    """Li et al. replay over ``replays`` independent passes (policy randomness only)."""

    estimate: ope.Estimate
    matched: float  # mean number of kept decisions per pass
    uniform_log: bool


def replay(target: Target, data: LoggedData, *, seed: int = 0, replays: int = 1) -> ReplayResult:
    """The replay estimate: mean reward over the decisions where the target agreed with the log.

    Each pass is one batch element, so all passes advance together, one policy call per
    logged decision. The interval treats the kept rewards of a pass as independent draws
    (exact for a non-learning target, the usual approximation for a learning one) and
    averages the per-pass variances, ignoring the variance the averaging removes.
    """
    rng = np.random.default_rng(seed)
    n, k = data.size, data.n_arms
    kept = np.zeros((replays, n), dtype=bool)
    if target.kind == "policy":
        policy = _policy(target)
        stats = Stats.zeros(k, (replays,))
        for i in range(n):
            chosen = policy.select(stats, rng).arms
            match = chosen == data.arms[i]
            kept[:, i] = match
            logged_arm = np.full(replays, data.arms[i])
            reward = np.full(replays, data.rewards[i])
            stats = policy.update(stats, logged_arm, reward, match)
    else:
        probabilities = target_probabilities(target, data)
        cumulative = probabilities.cumsum(axis=1)
        draws = rng.random((replays, n))
        chosen = (draws[..., None] > cumulative[None]).sum(axis=2)
        kept = np.asarray(np.minimum(chosen, k - 1) == data.arms[None], dtype=bool)
    counts = kept.sum(axis=1)
    sums = (kept * data.rewards[None]).sum(axis=1)
    squares = (kept * data.rewards[None] ** 2).sum(axis=1)
    safe = np.maximum(counts, 1)
    values = sums / safe
    variances = np.where(
        counts > 1, (squares - counts * values**2) / np.maximum(counts - 1, 1), 0.0
    )
    value = float(values.mean())
    m = float(counts.mean())
    if m >= 2:
        quantile = float(special.stdtrit(max(1.0, m - 1), 0.975))
        half = quantile * math.sqrt(float((variances / safe).mean()))
    else:
        half = math.inf
    estimate = ope.Estimate("replay", value, value - half, value + half, round(m))
    return ReplayResult(estimate, m, is_uniform_log(data))


def is_uniform_log(data: LoggedData) -> bool:
    expected = 1.0 / data.n_arms
    return bool(np.all(np.abs(data.propensities - expected) <= UNIFORM_TOLERANCE * expected))


@dataclass(frozen=True)
class Evaluation:
    target: str
    estimates: tuple[ope.Estimate, ...]
    diagnostics: ope.WeightDiagnostics
    replay_matched: float
    warnings: tuple[str, ...]


Estimator = Callable[[IntArray, FloatArray, FloatArray, FloatArray], ope.Estimate]
ESTIMATORS: tuple[tuple[str, Estimator], ...] = (
    ("ips", ope.ips),
    ("snips", ope.snips),
    ("dr", ope.doubly_robust),
)


def evaluate(
    target: Target,
    data: LoggedData,
    *,
    seed: int = 0,
    replays: int = 1,
    methods: Sequence[str] = (),
) -> Evaluation:
    """Every estimator for one target, with weight diagnostics and warnings."""
    if data.size == 0:
        raise ValueError("the log has no decision with an observed reward")
    wanted = set(methods) or {"replay", "ips", "snips", "dr"}
    probabilities = target_probabilities(target, data)
    estimates = []
    warnings: list[str] = []
    matched = math.nan
    if "replay" in wanted:
        result = replay(target, data, seed=seed, replays=replays)
        estimates.append(result.estimate)
        matched = result.matched
        if not result.uniform_log:
            warnings.append(
                "replay assumes a uniformly random log (propensity 1/K everywhere); this log is "
                "not, so the replay estimate is biased: trust IPS/SNIPS/DR instead"
            )
    for name, estimator in ESTIMATORS:
        if name in wanted:
            estimates.append(estimator(data.arms, data.rewards, data.propensities, probabilities))
    diagnostics = ope.diagnose_weights(data.arms, data.propensities, probabilities)
    warnings.extend(diagnostics.warnings)
    if data.skipped:
        warnings.append(
            f"{data.skipped} decisions without an observed reward were left out (assumes rewards "
            "go missing independently of arm and outcome)"
        )
    return Evaluation(target.label, tuple(estimates), diagnostics, matched, tuple(warnings))
