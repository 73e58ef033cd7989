"""Change detection on each arm's reward mean: a two-sided Page-Hinkley test, vectorised.

Why Page-Hinkley: the bandit's posterior assumes stationary rewards; when an arm's mean moves
(a bug fix, a seasonal shift) the posterior keeps trusting months of stale evidence and routes
traffic wrongly for a long time. The service wants an alarm in O(lambda / change) observations
with a controlled false-alarm rate, from sufficient statistics only, in O(1) state per arm.

Statistic (per arm, per direction). With running mean ``mu_t`` of the observations so far
(including ``x_t``) and tolerated change ``delta``::

    m_up_t   = sum_{s<=t} (x_s - mu_s - delta)     PH_up   = m_up_t   - min_{s<=t} m_up_s
    m_down_t = sum_{s<=t} (mu_s - x_s - delta)     PH_down = m_down_t - min_{s<=t} m_down_s

An alarm is raised when ``max(PH_up, PH_down) > threshold`` (lambda) and the arm has at least
``min_samples`` observations. Before a change, each PH is a random walk with drift ``-delta``
reflected at 0, i.e. a CUSUM: false alarms are rare (average run length grows like
``exp(2 * delta * lambda / sigma^2)``). After the mean moves by ``change``, the matching
direction drifts upward at about ``|change| - delta`` per observation, so the expected delay
is about ``lambda / (|change| - delta)`` observations (a little more because the running mean
slowly absorbs the new level; see ``expected_delay``).

Batched input. Each replica sees only a share of the Reward calls but every replica reads the
shared statistics, so the service feeds the per-refresh *increments* of (n, sum): ``delta_n``
observations whose sum is ``delta_sum``. The batch is treated as ``delta_n`` observations all
equal to the batch mean ``b = delta_sum / delta_n`` (the approximation: the within-batch order
and spread are unknown and ignored). Under that approximation the update is *exact*, not a
single averaged step: with ``N`` prior observations and mean ``mu``,
``sum_{i=1..k} (b - mu_i) = N (b - mu) (H_{N+k} - H_N)`` where ``H`` are harmonic numbers
(computed with the digamma function), and the running minimum within the batch is attained at
an endpoint (the partial sums are concave or monotone), so the minimum is exact as well.
The alarm is checked at batch ends only, so a batch adds at most its own length to the delay.

Counts must be raw (undiscounted) increments; when the store's statistics are reset the
service calls ``reset`` instead of feeding a negative increment.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from policies.base import BoolArray, FloatArray, IntArray

_SHIFT = 10


def _digamma_shift_diff(a: FloatArray, b: FloatArray) -> FloatArray:
    """psi(a) - psi(b) for a >= b >= 1, accurate when both are huge and close.

    Shifting both arguments by 10 makes the asymptotic series accurate to ~1e-14; the log
    difference is taken as ``log1p`` so that ``a - b`` tiny relative to ``a`` keeps its
    precision (H_{N+k} - H_N with N = 10^9, k = 3 is 3e-9).
    """
    shift_a = np.zeros_like(a)
    shift_b = np.zeros_like(b)
    for j in range(_SHIFT):
        shift_a += 1.0 / (a + j)
        shift_b += 1.0 / (b + j)
    x = a + _SHIFT
    y = b + _SHIFT

    def tail(z: FloatArray) -> FloatArray:
        inv2 = 1.0 / (z * z)
        series = inv2 * (
            1 / 12 - inv2 * (1 / 120 - inv2 * (1 / 252 - inv2 * (1 / 240 - inv2 / 132)))
        )
        result: FloatArray = -0.5 / z - series
        return result

    diff: FloatArray = np.log1p((x - y) / y) + tail(x) - tail(y) - (shift_a - shift_b)
    return diff


def harmonic_difference(n: ArrayLike, k: ArrayLike) -> FloatArray:
    """H_{n+k} - H_n = sum_{i=1..k} 1/(n+i), for real n >= 0 and k >= 0."""
    n_arr = np.asarray(n, dtype=np.float64)
    k_arr = np.asarray(k, dtype=np.float64)
    return _digamma_shift_diff(n_arr + k_arr + 1.0, n_arr + 1.0)


def expected_delay(
    change: float, delta: float, threshold: float, prior_n: float = math.inf
) -> float:
    """Fluid-limit detection delay (observations) after the mean moves by ``change``.

    Solves ``|change| * N * ln(1 + D / N) - delta * D = threshold`` for D: the post-change
    drift is ``|change| * N / (N + i) - delta`` because the running mean of ``N`` pre-change
    observations absorbs the new level. With ``prior_n = inf`` it is ``threshold / (|change| -
    delta)``. Ignores the head start of the statistic (shortens the delay by a few
    observations) and the overshoot at the crossing (lengthens it by under one step).
    """
    drift = abs(change) - delta
    if drift <= 0:
        return math.inf
    if math.isinf(prior_n):
        return threshold / drift

    def excess(d: float) -> float:
        return abs(change) * prior_n * math.log1p(d / prior_n) - delta * d - threshold

    low, high = 0.0, threshold / drift
    while excess(high) < 0:
        if high > 1e12 or excess(2 * high) <= excess(high):
            return math.inf
        low, high = high, 2 * high
    for _ in range(200):
        mid = 0.5 * (low + high)
        if excess(mid) < 0:
            low = mid
        else:
            high = mid
    return high


def false_alarm_arl(delta: float, threshold: float, sigma: float, two_sided: bool = True) -> float:
    """Average number of stationary observations between false alarms (Siegmund's approximation).

    One direction is a CUSUM with drift ``-delta`` and step variance ``sigma^2``; Siegmund's
    corrected diffusion approximation gives ``ARL = (e^{a} - 1 - a) / (2 delta^2 / sigma^2)``
    with ``a = 2 delta (threshold + 1.166 sigma) / sigma^2``. Two directions alarm
    independently to first order, so their rates add (half the ARL). ``sigma`` is the reward
    standard deviation (0.5 for a Bernoulli arm at 0.5, the worst case).
    """
    if delta <= 0:
        return math.inf if threshold == math.inf else 0.0
    a = 2.0 * delta * (threshold + 1.166 * sigma) / (sigma * sigma)
    arl = math.expm1(a) - a
    arl /= 2.0 * delta * delta / (sigma * sigma)
    return arl / 2.0 if two_sided else arl


class PageHinkley:
    """Two-sided Page-Hinkley detectors for ``batch_shape + (n_arms,)`` independent streams.

    ``statistic`` is ``max(PH_up, PH_down)``; ``detected`` latches True at the first alarm and
    stays True until ``reset`` (the service acts on an alarm once, e.g. switches to a
    discounted policy, then resets). The batch axes exist so that tests and simulations run
    thousands of seeds in one call.
    """

    def __init__(
        self,
        n_arms: int,
        *,
        delta: float = 0.05,
        threshold: float = 50.0,
        min_samples: int = 30,
        batch_shape: tuple[int, ...] = (),
    ) -> None:
        if n_arms < 1:
            raise ValueError("n_arms: must be at least 1")
        if not (math.isfinite(delta) and delta >= 0):
            raise ValueError("delta: must be a finite number >= 0")
        if not (math.isfinite(threshold) and threshold > 0):
            raise ValueError("threshold: must be a finite number > 0")
        if min_samples < 0:
            raise ValueError("min_samples: must be >= 0")
        self.delta = float(delta)
        self.threshold = float(threshold)
        self.min_samples = int(min_samples)
        self.shape: tuple[int, ...] = (*batch_shape, n_arms)
        self.n = np.zeros(self.shape)
        self.mean = np.zeros(self.shape)
        self._m_up = np.zeros(self.shape)
        self._min_up = np.zeros(self.shape)
        self._m_down = np.zeros(self.shape)
        self._min_down = np.zeros(self.shape)
        self._detected = np.zeros(self.shape, dtype=bool)

    @property
    def statistic_up(self) -> FloatArray:
        """Evidence that the mean increased (PH_up)."""
        result: FloatArray = self._m_up - self._min_up
        return result

    @property
    def statistic_down(self) -> FloatArray:
        """Evidence that the mean decreased (PH_down)."""
        result: FloatArray = self._m_down - self._min_down
        return result

    @property
    def statistic(self) -> FloatArray:
        """``max(PH_up, PH_down)``: what is compared with ``threshold`` and exported."""
        return np.maximum(self.statistic_up, self.statistic_down)

    @property
    def detected(self) -> BoolArray:
        return self._detected.copy()

    @property
    def direction(self) -> IntArray:
        """+1 where the larger statistic says the mean rose, -1 where it fell, 0 if undetected."""
        sign = np.where(self.statistic_up >= self.statistic_down, 1, -1).astype(np.int64)
        result: IntArray = np.where(self._detected, sign, 0)
        return result

    def update(self, delta_n: ArrayLike, delta_sum: ArrayLike) -> BoolArray:
        """Feed ``delta_n`` new observations per stream with sum ``delta_sum``.

        Shapes broadcast to ``batch_shape + (n_arms,)``. Streams with ``delta_n == 0`` are
        untouched (their ``delta_sum`` is ignored: float noise of a store read, not data).
        Returns the alarms raised by this update (streams that became detected).
        """
        k = np.broadcast_to(np.asarray(delta_n, dtype=np.float64), self.shape)
        s = np.broadcast_to(np.asarray(delta_sum, dtype=np.float64), self.shape)
        if not (np.isfinite(k).all() and np.isfinite(s).all()):
            raise ValueError("update: increments must be finite")
        if (k < 0).any():
            raise ValueError("update: delta_n < 0; reset the detector when the statistics reset")
        active = k > 0
        safe_k = np.where(active, k, 1.0)
        batch_mean = s / safe_k
        prior_n = self.n
        # sum_{i=1..k} (b - mu_i) with mu_i the running mean after the i-th equal observation.
        centred = prior_n * (batch_mean - self.mean) * harmonic_difference(prior_n, k)
        centred = np.where(active, centred, 0.0)
        slack = self.delta * k
        self._m_up += centred - slack
        self._m_down += -centred - slack
        np.minimum(self._min_up, self._m_up, out=self._min_up)
        np.minimum(self._min_down, self._m_down, out=self._min_down)
        new_n = prior_n + k
        self.mean = np.where(
            active, (prior_n * self.mean + s) / np.where(active, new_n, 1.0), self.mean
        )
        self.n = new_n
        alarm = (
            active
            & (self.n >= self.min_samples)
            & (self.statistic > self.threshold)
            & ~self._detected
        )
        self._detected |= alarm
        return alarm

    def reset(self, arm: int | None = None, *, where: ArrayLike | None = None) -> None:
        """Forget the history of one arm (all batch elements), of ``where`` (a mask), or all."""
        mask = np.zeros(self.shape, dtype=bool)
        if arm is None and where is None:
            mask[...] = True
        if arm is not None:
            mask[..., arm] = True
        if where is not None:
            mask |= np.broadcast_to(np.asarray(where, dtype=bool), self.shape)
        for array in (self.n, self.mean, self._m_up, self._min_up, self._m_down, self._min_down):
            array[mask] = 0.0
        self._detected[mask] = False
