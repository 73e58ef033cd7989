"""Simulated traffic: what each arm pays, how that changes, and when the service hears of it.

An environment is split into independent parts so a study can combine them freely: a mean
process (stationary, piecewise-stationary, drifting), a reward model (Bernoulli, Gaussian),
a delay model (none, fixed, geometric, uniform), and the service's feedback behaviour (cache
refresh every N steps, rewards never sent and replaced by a default). Every method works on
all runs at once, arrays of shape ``(runs, arms)``, so the runner does one array operation
per step whatever the number of runs.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def _as_means(values: Sequence[float] | FloatArray) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size < 2:
        raise ValueError("means: need a list of at least two arm means")
    if not np.all(np.isfinite(array)):
        raise ValueError("means: every mean must be a finite number")
    return array


# -- mean processes --------------------------------------------------------------------------


class MeanProcess(ABC):
    """How the arms' expected rewards evolve over the steps of one run."""

    @property
    @abstractmethod
    def initial(self) -> FloatArray:
        """Means at step 0, shape ``(arms,)``."""

    @property
    def n_arms(self) -> int:
        return int(self.initial.shape[0])

    @property
    def stationary(self) -> bool:
        return False

    def start(self, runs: int, rng: np.random.Generator) -> FloatArray:
        """Means of every run at step 0, shape ``(runs, arms)``."""
        return np.broadcast_to(self.initial, (runs, self.n_arms))

    @abstractmethod
    def advance(self, step: int, means: FloatArray, rng: np.random.Generator) -> FloatArray:
        """Means at ``step`` (>= 1) given the means at ``step - 1``; may return ``means``."""

    def all_means(self) -> list[FloatArray]:
        """Every deterministic mean vector the process takes (for bound checks)."""
        return [self.initial]


@dataclass(frozen=True)
class Stationary(MeanProcess):
    means: FloatArray

    @property
    def initial(self) -> FloatArray:
        return self.means

    @property
    def stationary(self) -> bool:
        return True

    def advance(self, step: int, means: FloatArray, rng: np.random.Generator) -> FloatArray:
        return means


@dataclass(frozen=True)
class PiecewiseStationary(MeanProcess):
    """Means jump at given steps, the same steps in every run (a release, a price change)."""

    means: FloatArray
    changes: tuple[tuple[int, FloatArray], ...]

    def __post_init__(self) -> None:
        steps = [step for step, _ in self.changes]
        if steps != sorted(set(steps)) or (steps and steps[0] < 1):
            raise ValueError("changes: steps must be increasing and >= 1")
        for _, means in self.changes:
            if means.shape != self.means.shape:
                raise ValueError("changes: every segment needs one mean per arm")

    @property
    def initial(self) -> FloatArray:
        return self.means

    def advance(self, step: int, means: FloatArray, rng: np.random.Generator) -> FloatArray:
        for at, new in self.changes:
            if at == step:
                return np.broadcast_to(new, means.shape)
        return means

    def all_means(self) -> list[FloatArray]:
        return [self.means, *(means for _, means in self.changes)]


@dataclass(frozen=True)
class Drifting(MeanProcess):
    """Each mean follows its own Gaussian random walk, reflected into ``[low, high]``.

    Every run draws its own path: drift is a property of the traffic, not of a scenario,
    so a policy is judged on how it tracks any slow path rather than one lucky path.
    """

    means: FloatArray
    sigma: float
    low: float = 0.0
    high: float = 1.0

    def __post_init__(self) -> None:
        if not (self.sigma > 0 and math.isfinite(self.sigma)):
            raise ValueError("sigma: must be a positive number")
        if not self.low < self.high:
            raise ValueError("low: must be below high")
        if np.any(self.means < self.low) or np.any(self.means > self.high):
            raise ValueError("means: must lie within [low, high]")

    @property
    def initial(self) -> FloatArray:
        return self.means

    def start(self, runs: int, rng: np.random.Generator) -> FloatArray:
        return np.tile(self.means, (runs, 1))

    def advance(self, step: int, means: FloatArray, rng: np.random.Generator) -> FloatArray:
        moved = means + self.sigma * rng.standard_normal(means.shape)
        moved = np.where(moved < self.low, 2 * self.low - moved, moved)
        moved = np.where(moved > self.high, 2 * self.high - moved, moved)
        return np.clip(moved, self.low, self.high)


# -- reward models ---------------------------------------------------------------------------


class RewardModel(ABC):
    """Draws one reward per run for the chosen arms."""

    name: str
    bounds: tuple[float, float]

    @abstractmethod
    def sample(self, means: FloatArray, arms: IntArray, rng: np.random.Generator) -> FloatArray:
        """Rewards given the chosen arms' means, shape ``(runs,)``.

        The draw uses the same random numbers whatever arms were chosen, so two policies
        simulated from the same seed see common random numbers and their difference in
        regret has less noise than either regret.
        """


@dataclass(frozen=True)
class Bernoulli(RewardModel):
    name: str = "bernoulli"
    bounds: tuple[float, float] = (0.0, 1.0)

    def sample(self, means: FloatArray, arms: IntArray, rng: np.random.Generator) -> FloatArray:
        return (rng.random(means.shape) < means).astype(np.float64)


@dataclass(frozen=True)
class Gaussian(RewardModel):
    sigma: FloatArray = field(default_factory=lambda: np.ones(1))
    name: str = "gaussian"
    bounds: tuple[float, float] = (-math.inf, math.inf)

    def __post_init__(self) -> None:
        if np.any(~(self.sigma > 0)) or not np.all(np.isfinite(self.sigma)):
            raise ValueError("sigma: every standard deviation must be a positive number")

    def sample(self, means: FloatArray, arms: IntArray, rng: np.random.Generator) -> FloatArray:
        noise = rng.standard_normal(means.shape)
        sigma = self.sigma[arms] if self.sigma.size > 1 else self.sigma[0]
        return means + sigma * noise


# -- delays ----------------------------------------------------------------------------------


class DelayModel(ABC):
    """Steps between a decision and its reward reaching the store (0: before the next step)."""

    @property
    @abstractmethod
    def max_delay(self) -> int:
        """Largest delay drawn; bounds the runner's buffer of rewards in flight."""

    @property
    @abstractmethod
    def mean(self) -> float:
        """Expected delay in steps."""

    @abstractmethod
    def sample(self, runs: int, rng: np.random.Generator) -> IntArray | None:
        """Delay per run, or None for no delay at all."""


@dataclass(frozen=True)
class NoDelay(DelayModel):
    @property
    def max_delay(self) -> int:
        return 0

    @property
    def mean(self) -> float:
        return 0.0

    def sample(self, runs: int, rng: np.random.Generator) -> IntArray | None:
        return None


@dataclass(frozen=True)
class FixedDelay(DelayModel):
    steps: int

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError("steps: must be >= 0")

    @property
    def max_delay(self) -> int:
        return self.steps

    @property
    def mean(self) -> float:
        return float(self.steps)

    def sample(self, runs: int, rng: np.random.Generator) -> IntArray | None:
        return np.full(runs, self.steps, dtype=np.int64)


@dataclass(frozen=True)
class GeometricDelay(DelayModel):
    """Memoryless delays on 0, 1, 2, ... with the given mean, truncated at ``cap``.

    The cap defaults to the 99.99 % quantile, so truncation moves the mean by < 0.01 %.
    """

    mean_steps: float
    cap: int | None = None

    def __post_init__(self) -> None:
        if not (self.mean_steps > 0 and math.isfinite(self.mean_steps)):
            raise ValueError("mean: must be a positive number")
        if self.cap is not None and self.cap < 1:
            raise ValueError("max: must be >= 1")

    @property
    def _p(self) -> float:
        return 1.0 / (self.mean_steps + 1.0)

    @property
    def max_delay(self) -> int:
        if self.cap is not None:
            return self.cap
        # P(D >= k) = (1 - p)^k; choose k with tail 1e-4.
        return max(1, math.ceil(math.log(1e-4) / math.log1p(-self._p)))

    @property
    def mean(self) -> float:
        return self.mean_steps

    def sample(self, runs: int, rng: np.random.Generator) -> IntArray | None:
        delays = rng.geometric(self._p, runs).astype(np.int64) - 1
        return np.minimum(delays, self.max_delay)


@dataclass(frozen=True)
class UniformDelay(DelayModel):
    low: int
    high: int

    def __post_init__(self) -> None:
        if not 0 <= self.low <= self.high:
            raise ValueError("low: need 0 <= low <= high")

    @property
    def max_delay(self) -> int:
        return self.high

    @property
    def mean(self) -> float:
        return (self.low + self.high) / 2.0

    def sample(self, runs: int, rng: np.random.Generator) -> IntArray | None:
        return rng.integers(self.low, self.high + 1, runs, dtype=np.int64)


# -- the environment -------------------------------------------------------------------------


@dataclass(frozen=True)
class Feedback:
    """How the service turns outcomes into statistics.

    ``refresh_every``: the policy decides on statistics refreshed every N steps, as the
    service's state cache does. ``drop_rate``: share of rewards the backend never sends;
    the service then applies ``default_reward`` after ``default_delay`` steps, or nothing
    when ``default_reward`` is None.
    """

    refresh_every: int = 1
    drop_rate: float = 0.0
    default_reward: float | None = None
    default_delay: int = 0

    def __post_init__(self) -> None:
        if self.refresh_every < 1:
            raise ValueError("refresh_every: must be >= 1")
        if not 0.0 <= self.drop_rate < 1.0:
            raise ValueError("drop_rate: must be in [0, 1)")
        if self.default_delay < 0:
            raise ValueError("default_delay: must be >= 0")
        if self.default_reward is not None and not math.isfinite(self.default_reward):
            raise ValueError("default_reward: must be a finite number")


@dataclass(frozen=True)
class Environment:
    """Everything a run needs besides the policy."""

    arm_names: tuple[str, ...]
    means: MeanProcess
    rewards: RewardModel
    delay: DelayModel = field(default_factory=NoDelay)
    feedback: Feedback = field(default_factory=Feedback)
    cost: FloatArray | None = None
    latency: FloatArray | None = None

    def __post_init__(self) -> None:
        k = self.means.n_arms
        if len(self.arm_names) != k:
            raise ValueError(f"arms: expected {k} names, got {len(self.arm_names)}")
        if len(set(self.arm_names)) != k:
            raise ValueError("arms: names must be unique")
        for name, values in (("cost", self.cost), ("latency", self.latency)):
            if values is not None and values.shape != (k,):
                raise ValueError(f"{name}: need one value per arm ({k})")
        if isinstance(self.rewards, Gaussian) and self.rewards.sigma.size not in (1, k):
            raise ValueError(f"sigma: need one value or one per arm ({k})")
        low, high = self.rewards.bounds
        if low > -math.inf or high < math.inf:
            for means in self.means.all_means():
                if np.any(means < low) or np.any(means > high):
                    raise ValueError(
                        f"means: {self.rewards.name} means must lie in [{low}, {high}]"
                    )
        process = self.means
        if isinstance(process, Drifting) and (process.low < low or process.high > high):
            raise ValueError(f"drift: low/high must lie in [{low}, {high}]")

    @property
    def n_arms(self) -> int:
        return self.means.n_arms

    @property
    def reward_bounds(self) -> tuple[float, float]:
        """Every reward the store may see, default rewards included."""
        low, high = self.rewards.bounds
        default = self.feedback.default_reward
        if default is not None and self.feedback.drop_rate > 0:
            low, high = min(low, default), max(high, default)
        return low, high

    @property
    def max_delay(self) -> int:
        default = self.feedback.default_delay if self.feedback.drop_rate > 0 else 0
        return max(self.delay.max_delay, default)

    @property
    def is_stationary_bernoulli(self) -> bool:
        """The setting of the Lai-Robbins bound: stationary Bernoulli arms, full feedback."""
        return self.means.stationary and isinstance(self.rewards, Bernoulli)

    @classmethod
    def bernoulli(
        cls,
        means: Sequence[float],
        *,
        arm_names: Sequence[str] | None = None,
        delay: DelayModel | None = None,
        feedback: Feedback | None = None,
    ) -> Environment:
        """Stationary Bernoulli arms, named ``arm0, arm1, ...`` unless ``arm_names`` is given."""
        process = Stationary(_as_means(means))
        names = tuple(arm_names) if arm_names is not None else default_arm_names(process.n_arms)
        return cls(names, process, Bernoulli(), delay or NoDelay(), feedback or Feedback())

    @classmethod
    def gaussian(
        cls,
        means: Sequence[float],
        sigma: float | Sequence[float] = 1.0,
        *,
        arm_names: Sequence[str] | None = None,
        delay: DelayModel | None = None,
        feedback: Feedback | None = None,
    ) -> Environment:
        """Stationary Gaussian arms with one noise level or one per arm."""
        process = Stationary(_as_means(means))
        sigmas = np.atleast_1d(np.asarray(sigma, dtype=np.float64))
        names = tuple(arm_names) if arm_names is not None else default_arm_names(process.n_arms)
        return cls(names, process, Gaussian(sigmas), delay or NoDelay(), feedback or Feedback())


def default_arm_names(n_arms: int) -> tuple[str, ...]:
    return tuple(f"arm{i}" for i in range(n_arms))
