"""Many independent runs of one serving policy in one environment, all advanced together.

Each step is one call of the policy's vectorised ``select`` and ``update`` over the batch of
runs, so the cost of a study grows with the horizon, not with runs x horizon Python calls.
The policy object is the serving code itself: the simulation owns only the environment,
the rewards in flight, the cache refresh and the bookkeeping of regret.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from scipy import special

from policies.base import BoolArray, Policy, Stats
from policies.contextual import ContextualPolicy, ContextualStats
from simulations.contextual_environments import ContextualEnvironment
from simulations.environments import Environment, FloatArray, IntArray
from simulations.slo import GuardrailOutcome, simulate_slo
from simulations.study import Study
from simulations.theory import lai_robbins_constant

ProgressCallback = Callable[[int], None]

#: Steps between progress callbacks: a callback per step would cost more than the step.
PROGRESS_EVERY = 100


def mean_ci(values: FloatArray, level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of its Student-t confidence interval over independent runs."""
    n = values.shape[0]
    mean = float(values.mean())
    if n < 2:
        return mean, float("nan")
    quantile = float(special.stdtrit(n - 1, 0.5 + level / 2))
    return mean, quantile * float(values.std(ddof=1)) / float(np.sqrt(n))


@dataclass(frozen=True)
class RunResult:
    """What one policy did over every run. Per-run arrays keep the first axis for runs."""

    label: str
    policy: str
    params: dict[str, float]
    steps: IntArray  # step counts at which regret was recorded, ending at the horizon
    regret: FloatArray  # (runs, len(steps)) cumulative pseudo-regret
    best_arm_rate: FloatArray  # (runs,) share of decisions that chose a best arm
    allocation: FloatArray  # (runs, arms) share of decisions per arm over the final window
    cost: FloatArray | None  # (runs,) mean cost per decision
    latency: FloatArray | None  # (runs,) mean latency per decision
    guardrails: GuardrailOutcome | None = None  # SLO studies: trips and delays per run

    @property
    def runs(self) -> int:
        return int(self.regret.shape[0])

    @property
    def horizon(self) -> int:
        return int(self.steps[-1])

    def final_regret(self) -> tuple[float, float]:
        """Mean cumulative regret at the horizon and its 95 % CI half-width."""
        return mean_ci(self.regret[:, -1])

    def regret_band(self) -> tuple[FloatArray, FloatArray]:
        """Mean regret curve and the 95 % CI half-width at every recorded step."""
        n = self.runs
        mean = self.regret.mean(axis=0)
        if n < 2:
            return mean, np.full_like(mean, np.nan)
        quantile = float(special.stdtrit(n - 1, 0.975))
        return mean, quantile * self.regret.std(axis=0, ddof=1) / np.sqrt(n)


def checkpoint_steps(horizon: int, points: int) -> IntArray:
    """Step counts 1..horizon, evenly spaced, always including the horizon."""
    grid = np.linspace(1, horizon, num=max(2, min(points, horizon)))
    return np.unique(np.rint(grid).astype(np.int64))


class RewardsInFlight:
    """Rewards sent but not yet applied, in a ring of arrival slots.

    A run may have several rewards arriving at the same step (random delays), so each slot
    has lanes; delivering a slot costs one ``policy.update`` per occupied lane, and the
    lanes grow only as far as the busiest slot ever needs.
    """

    def __init__(self, max_delay: int, runs: int) -> None:
        self.size = max_delay + 1
        self.runs = np.arange(runs)
        self.count = np.zeros((self.size, runs), dtype=np.int64)
        self.arms = np.zeros((self.size, 1, runs), dtype=np.int64)
        self.rewards = np.zeros((self.size, 1, runs), dtype=np.float64)

    def push(
        self, step: int, arms: IntArray, rewards: FloatArray, delays: IntArray, sent: BoolArray
    ) -> None:
        """Schedule each sent reward of ``step`` for step ``step + delay``."""
        runs = self.runs[sent]
        slots = (step + delays[sent]) % self.size
        lanes = self.count[slots, runs]
        if lanes.size and int(lanes.max()) >= self.arms.shape[1]:
            self._grow(int(lanes.max()) + 1)
        self.arms[slots, lanes, runs] = arms[sent]
        self.rewards[slots, lanes, runs] = rewards[sent]
        self.count[slots, runs] += 1

    def pop(self, step: int) -> Iterator[tuple[IntArray, FloatArray, BoolArray]]:
        """Rewards arriving at ``step``, one lane (at most one reward per run) at a time."""
        slot = step % self.size
        count = self.count[slot].copy()
        self.count[slot] = 0
        for lane in range(int(count.max(initial=0))):
            yield self.arms[slot, lane], self.rewards[slot, lane], lane < count

    def _grow(self, lanes: int) -> None:
        extra = lanes - self.arms.shape[1]
        pad = ((0, 0), (0, extra), (0, 0))
        self.arms = np.pad(self.arms, pad)
        self.rewards = np.pad(self.rewards, pad)


def simulate(
    policy: Policy,
    environment: Environment,
    *,
    horizon: int,
    runs: int,
    seed: int,
    label: str | None = None,
    checkpoints: int = 200,
    final_window: float = 0.1,
    progress: ProgressCallback | None = None,
) -> RunResult:
    """Run ``policy`` ``runs`` times for ``horizon`` steps; reproducible bit for bit from ``seed``.

    The seed is split into independent streams for the environment, the policy and the
    feedback (delays, dropped rewards). The environment stream does not depend on the
    policy, so every policy of a study sees the same traffic (common random numbers).
    Regret is pseudo-regret: the best arm's mean minus the chosen arm's mean, summed.
    """
    if horizon < 1 or runs < 1:
        raise ValueError("horizon and runs must be >= 1")
    streams = Streams.from_seed(seed)
    ledger = Ledger(environment, horizon, runs, checkpoints, final_window)
    stats = Stats.zeros(environment.n_arms, (runs,))
    # Statistics are updated in place (a fresh batch-sized result per step cost as much in
    # page faults as the arithmetic); with a refresh period the policy decides from a copy
    # taken every ``refresh_every`` steps, as replicas decide from their cached copy.
    lagged = environment.feedback.refresh_every > 1
    visible = _copy(stats) if lagged else stats
    feedback = environment.feedback
    in_flight = RewardsInFlight(environment.max_delay, runs) if environment.max_delay > 0 else None

    means = environment.means.start(runs, streams.env)
    for step in range(horizon):
        if step > 0:
            means = environment.means.advance(step, means, streams.env)
        arms = policy.select(visible, streams.policy).arms
        chosen = ledger.record(step, means, arms)
        rewards = environment.rewards.sample(chosen, arms, streams.env)
        delays = environment.delay.sample(runs, streams.feedback)
        sent: BoolArray | None = None
        if feedback.drop_rate > 0:
            dropped = streams.feedback.random(runs) < feedback.drop_rate
            if feedback.default_reward is None:
                sent = ~dropped
            else:
                rewards = np.where(dropped, feedback.default_reward, rewards)
                if delays is None:
                    delays = np.zeros(runs, dtype=np.int64)
                delays = np.where(dropped, feedback.default_delay, delays)

        if in_flight is None:
            policy.update_inplace(stats, arms, rewards, sent)
        else:
            if delays is None:
                delays = np.zeros(runs, dtype=np.int64)
            in_flight.push(
                step, arms, rewards, delays, np.ones(runs, bool) if sent is None else sent
            )
            for lane_arms, lane_rewards, observed in in_flight.pop(step):
                policy.update_inplace(stats, lane_arms, lane_rewards, observed)
        if lagged and (step + 1) % feedback.refresh_every == 0:
            visible = _copy(stats)
        if progress is not None and (step + 1) % PROGRESS_EVERY == 0:
            progress(PROGRESS_EVERY)
    if progress is not None and horizon % PROGRESS_EVERY:
        progress(horizon % PROGRESS_EVERY)
    return ledger.result(label or policy.name, policy.name, policy.describe())


def simulate_contextual(
    policy: Policy | ContextualPolicy,
    environment: ContextualEnvironment,
    *,
    horizon: int,
    runs: int,
    seed: int,
    label: str | None = None,
    checkpoints: int = 200,
    final_window: float = 0.1,
    progress: ProgressCallback | None = None,
) -> RunResult:
    """Run ``policy`` ``runs`` times for ``horizon`` steps, every run advanced together.

    The environment stream (contexts, rewards) is the same for every policy of a study: it
    does not depend on the decisions (common random numbers), so differences in regret
    between policies have less noise than either regret.
    """
    if horizon < 1 or runs < 1:
        raise ValueError("horizon and runs must be >= 1")
    streams = Streams.from_seed(seed)
    ledger = Ledger(environment, horizon, runs, checkpoints, final_window)
    k = environment.n_arms
    cstats = ContextualStats.zeros(k, environment.dim, (runs,))
    stats = Stats.zeros(k, (runs,))
    for step in range(horizon):
        x, p = environment.draw(runs, streams.env)
        if isinstance(policy, ContextualPolicy):
            arms = policy.select(cstats, x, streams.policy).arms
        else:
            arms = policy.select(stats, streams.policy).arms
        ledger.record(step, environment.means(p), arms)
        rewards = environment.rewards(p, arms, streams.env)
        if isinstance(policy, ContextualPolicy):
            policy.update_inplace(cstats, arms, x, rewards)
        else:
            policy.update_inplace(stats, arms, rewards)
        if progress is not None and (step + 1) % PROGRESS_EVERY == 0:
            progress(PROGRESS_EVERY)
    if progress is not None and horizon % PROGRESS_EVERY:
        progress(horizon % PROGRESS_EVERY)
    return ledger.result(label or policy.name, policy.name, policy.describe())


def _copy(stats: Stats) -> Stats:
    return Stats(stats.n.copy(), stats.total.copy(), stats.total_sq.copy())


@dataclass(frozen=True)
class Streams:
    """Independent random streams split from one seed: environment, policy, feedback.

    The environment stream does not depend on the policy, so every policy of a study (and a
    live run of the same study) sees the same traffic: common random numbers.
    """

    env: np.random.Generator
    policy: np.random.Generator
    feedback: np.random.Generator

    @classmethod
    def from_seed(cls, seed: int) -> Streams:
        env, policy, feedback = np.random.SeedSequence(seed).spawn(3)
        return cls(*(np.random.default_rng(s) for s in (env, policy, feedback)))


class Ledger:
    """Regret, best-arm rate, allocation, cost and latency of every run, step by step.

    Shared by the simulated and the live runner so both report exactly the same numbers.
    """

    def __init__(
        self,
        environment: Environment | ContextualEnvironment,
        horizon: int,
        runs: int,
        checkpoints: int,
        final_window: float,
    ) -> None:
        self.environment = environment
        self.horizon = horizon
        self.rows = np.arange(runs)
        self.steps = checkpoint_steps(horizon, checkpoints)
        self.curves = np.zeros((runs, self.steps.size))
        self.next_checkpoint = 0
        self.window_start = horizon - max(1, round(horizon * final_window))
        self.regret = np.zeros(runs)
        self.best_pulls = np.zeros(runs)
        self.window_counts = np.zeros((runs, environment.n_arms))
        self.cost = np.zeros(runs)
        self.latency = np.zeros(runs)

    def record(self, step: int, means: FloatArray, arms: IntArray) -> FloatArray:
        """Book the decisions of ``step``; returns the chosen arms' means."""
        chosen = means[self.rows, arms]
        best = means.max(axis=1)
        self.regret += best - chosen
        self.best_pulls += chosen >= best
        if step >= self.window_start:
            self.window_counts[self.rows, arms] += 1.0
        if self.environment.cost is not None:
            self.cost += self.environment.cost[arms]
        if self.environment.latency is not None:
            self.latency += self.environment.latency[arms]
        if step + 1 == self.steps[self.next_checkpoint]:
            self.curves[:, self.next_checkpoint] = self.regret
            self.next_checkpoint += 1
        return chosen

    def result(self, label: str, policy: str, params: dict[str, float]) -> RunResult:
        horizon = self.horizon
        return RunResult(
            label=label,
            policy=policy,
            params=params,
            steps=self.steps,
            regret=self.curves,
            best_arm_rate=self.best_pulls / horizon,
            allocation=self.window_counts / self.window_counts.sum(axis=1, keepdims=True),
            cost=None if self.environment.cost is None else self.cost / horizon,
            latency=None if self.environment.latency is None else self.latency / horizon,
        )


@dataclass(frozen=True)
class StudyResult:
    """Every policy of a study on the same environment, horizon, runs and seed."""

    study: Study
    results: tuple[RunResult, ...]

    @property
    def lai_robbins_constant(self) -> float | None:
        """C(mu) when the study is in the bound's setting (stationary Bernoulli), else None."""
        env = self.study.environment
        if isinstance(env, ContextualEnvironment) or not env.is_stationary_bernoulli:
            return None
        return lai_robbins_constant(env.means.initial)

    @property
    def reference_rates(self) -> tuple[float, float] | None:
        """Contextual studies: (oracle, best fixed arm) mean reward per decision, else None."""
        env = self.study.environment
        return env.reference_rates() if isinstance(env, ContextualEnvironment) else None


def run_study(study: Study, progress: ProgressCallback | None = None) -> StudyResult:
    """Simulate every policy of the study; all share the study's seed (common random numbers)."""
    results = []
    environment = study.environment
    for spec, policy in zip(study.policies, study.build_policies(), strict=True):
        if isinstance(environment, ContextualEnvironment):
            results.append(
                simulate_contextual(
                    policy,
                    environment,
                    horizon=study.horizon,
                    runs=study.runs,
                    seed=study.seed,
                    label=spec.label,
                    checkpoints=study.checkpoints,
                    progress=progress,
                )
            )
            continue
        if not isinstance(policy, Policy):
            raise ValueError(f"{spec.label}: a contextual policy needs a contextual environment")
        if study.slo is not None:
            steps = checkpoint_steps(study.horizon, study.checkpoints)
            curves, best, allocation, outcome = simulate_slo(
                policy,
                study.slo,
                horizon=study.horizon,
                runs=study.runs,
                seed=study.seed,
                checkpoints=steps,
                progress=progress,
            )
            results.append(
                RunResult(
                    spec.label,
                    policy.name,
                    policy.describe(),
                    steps,
                    curves,
                    best,
                    allocation,
                    None,
                    None,
                    outcome,
                )
            )
            continue
        results.append(
            simulate(
                policy,
                environment,
                horizon=study.horizon,
                runs=study.runs,
                seed=study.seed,
                label=spec.label,
                checkpoints=study.checkpoints,
                progress=progress,
            )
        )
    return StudyResult(study, tuple(results))
