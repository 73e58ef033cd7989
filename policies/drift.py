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

Scale. Steps are standardised by the stream's own standard deviation (see ``PageHinkley``),
so ``delta`` and ``threshold`` are in standard deviations and the false-alarm rate is the
same for rewards of 200 +- 20 and of 0.001 +- 0.0001: ``false_alarm_probability`` states it,
``threshold_for`` inverts it. Bernoulli steps are skewed, so for bounded rewards the steps are
also multiplied by ``bernoulli_tilt_factor`` to keep the Gaussian exponent.

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


def false_alarm_probability(horizon: float, delta: float, threshold: float) -> float:
    """P(at least one false alarm within ``horizon`` stationary observations), standardised units.

    The run length to a false alarm is close to geometric (memoryless, the statistic regenerates
    at every return to 0), so ``P = 1 - exp(-horizon / ARL)`` with the two-sided Siegmund ARL at
    sigma = 1. ``delta`` and ``threshold`` are in standard deviations of the reward.
    """
    arl = false_alarm_arl(delta, threshold, 1.0)
    return -math.expm1(-horizon / arl)


def threshold_for(false_alarm: float, horizon: float, delta: float) -> float:
    """The threshold (in standard deviations) whose ``false_alarm_probability`` over ``horizon``
    observations is ``false_alarm``: what an operator picks instead of a raw lambda."""
    if not 0.0 < false_alarm < 1.0:
        raise ValueError("false_alarm: must be in (0, 1)")
    if not delta > 0.0:
        raise ValueError("delta: must be > 0")
    low, high = 0.0, 1.0
    while false_alarm_probability(horizon, delta, high) > false_alarm:
        low, high = high, 2.0 * high
    for _ in range(100):
        mid = 0.5 * (low + high)
        if false_alarm_probability(horizon, delta, mid) > false_alarm:
            low = mid
        else:
            high = mid
    return high


def bernoulli_tilt_factor(p: ArrayLike, delta: float, iterations: int = 40) -> FloatArray:
    """``min(1, theta / (2 delta))`` where ``theta > 0`` solves ``E exp(theta (z - delta)) = 1``
    for the standardised Bernoulli(p) step ``z = (x - p) / sqrt(p (1 - p))``.

    Why: a one-sided CUSUM with steps ``z - delta`` crosses ``h`` from 0 with probability about
    ``exp(-theta h)`` (Wald's identity / Cramer-Lundberg); for Gaussian steps ``theta = 2
    delta``, which is what the Siegmund ARL assumes. A rare success (small p) is a jump of
    ``sqrt((1 - p) / p)`` standard deviations, a heavy right tail with a smaller ``theta``:
    without a correction Bernoulli(0.02) arms alarm 80 times as often as Gaussian ones.
    Multiplying the steps by this factor gives every p the Gaussian exponent ``2 delta h``.
    Capped at 1: never more sensitive than the Gaussian calibration. Bisection, vectorised.
    """
    p_arr = np.asarray(p, dtype=np.float64)
    if delta <= 0.0:
        return np.ones_like(p_arr)
    sd = np.sqrt(p_arr * (1.0 - p_arr))
    up, down = (1.0 - p_arr) / sd - delta, -p_arr / sd - delta

    def log_mgf(theta: FloatArray) -> FloatArray:
        a, b = theta * up, theta * down
        top = np.maximum(a, b)
        result: FloatArray = top + np.log(p_arr * np.exp(a - top) + (1.0 - p_arr) * np.exp(b - top))
        return result

    high = np.full_like(p_arr, 2.0 * delta)
    capped = log_mgf(high) <= 0.0  # root at or beyond 2 delta: lighter tail than Gaussian
    low = np.zeros_like(p_arr)
    for _ in range(iterations):
        mid = 0.5 * (low + high)
        above = log_mgf(mid) > 0.0
        high = np.where(above, mid, high)
        low = np.where(above, low, mid)
    result: FloatArray = np.where(capped, 1.0, low / (2.0 * delta))
    return result


_LOGITS = np.linspace(-28.0, 28.0, 2801)

# Defaults: tolerate a quarter of a standard deviation; threshold_for(0.005, 10_000, 0.25) is
# 25.07, so the Gaussian approximation predicts 0.52% of stationary arms alarming within 10^4
# rewards at threshold 25. The documented (and tested) level is 1% per arm per 10^4 rewards,
# which leaves room for the estimated variance and the Bernoulli correction's approximation.
DEFAULT_DELTA = 0.25
DEFAULT_THRESHOLD = 25.0
DEFAULT_WARMUP = 30
DOCUMENTED_FALSE_ALARM = 0.01
DOCUMENTED_HORIZON = 10_000


class PageHinkley:
    """Two-sided Page-Hinkley detectors for ``batch_shape + (n_arms,)`` independent streams,
    on standardised residuals, so that ``delta`` and ``threshold`` are in standard deviations
    of the stream and the false-alarm rate does not depend on the reward's scale.

    Scale. Each step ``x - mu`` is divided by the stream's standard deviation as estimated
    *before* the step (the change being tested cannot shrink its own evidence):

    * ``sigma`` given: a known standard deviation, the same for every stream (``sigma=1``
      is the classic test in reward units);
    * ``bounds=(low, high)`` given: rewards in a bounded range treated as Bernoulli trials on
      it, the model the service's Beta posterior uses; the variance is
      ``(high - low)^2 p (1 - p)`` with the Laplace-smoothed share ``p = (s + 1) / (n + 2)``,
      exact for binary rewards, an upper bound (fewer alarms, longer delays) for others,
      and never 0 when an arm has shown only zeros;
    * otherwise the running sample variance, merged exactly across batches when
      ``delta_sum_sq`` is given (from the store's ``sum_sq``), floored at ``1e-9 |mean|`` so
      that a constant stream's float noise is not evidence, while a real change of a
      constant stream is.

    The first ``warmup`` observations only estimate the mean and the variance; the test
    statistic starts after them (a variance from three rewards would make the first steps
    arbitrary). ``statistic`` is ``max(PH_up, PH_down)``; ``detected`` latches True at the
    first alarm and stays True until ``reset``.
    """

    def __init__(
        self,
        n_arms: int,
        *,
        delta: float = DEFAULT_DELTA,
        threshold: float = DEFAULT_THRESHOLD,
        warmup: int = DEFAULT_WARMUP,
        sigma: float | None = None,
        bounds: tuple[float, float] | None = None,
        batch_shape: tuple[int, ...] = (),
    ) -> None:
        if n_arms < 1:
            raise ValueError("n_arms: must be at least 1")
        if not (math.isfinite(delta) and delta >= 0):
            raise ValueError("delta: must be a finite number >= 0")
        if not (math.isfinite(threshold) and threshold > 0):
            raise ValueError("threshold: must be a finite number > 0")
        if warmup < 0:
            raise ValueError("warmup: must be >= 0")
        if sigma is not None and not (math.isfinite(sigma) and sigma > 0):
            raise ValueError("sigma: must be a finite number > 0")
        if bounds is not None and not (
            math.isfinite(bounds[0]) and math.isfinite(bounds[1]) and bounds[0] < bounds[1]
        ):
            raise ValueError("bounds: must be finite with low < high")
        if sigma is not None and bounds is not None:
            raise ValueError("sigma and bounds: give at most one")
        self.delta = float(delta)
        self.threshold = float(threshold)
        self.warmup = int(warmup)
        self.sigma = sigma
        self.bounds = bounds
        self.shape: tuple[int, ...] = (*batch_shape, n_arms)
        self.n = np.zeros(self.shape)
        self.mean = np.zeros(self.shape)
        self._m2 = np.zeros(self.shape)
        self._m_up = np.zeros(self.shape)
        self._min_up = np.zeros(self.shape)
        self._m_down = np.zeros(self.shape)
        self._min_down = np.zeros(self.shape)
        self._detected = np.zeros(self.shape, dtype=bool)
        # The tilt factor is smooth in logit(p): tabulate it once, interpolate per update.
        self._tilt = bernoulli_tilt_factor(1.0 / (1.0 + np.exp(-_LOGITS)), self.delta)

    @property
    def statistic_up(self) -> FloatArray:
        """Evidence that the mean increased (PH_up), in standard deviations."""
        result: FloatArray = self._m_up - self._min_up
        return result

    @property
    def statistic_down(self) -> FloatArray:
        """Evidence that the mean decreased (PH_down), in standard deviations."""
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

    def scale(self) -> FloatArray:
        """The standard deviation each stream's next step is divided by."""
        if self.sigma is not None:
            return np.full(self.shape, self.sigma)
        if self.bounds is not None:
            width = self.bounds[1] - self.bounds[0]
            share = self._share()
            result: FloatArray = width * np.sqrt(share * (1.0 - share))
            return result
        variance = self._m2 / np.maximum(self.n - 1.0, 1.0)
        floor = 1e-9 * np.abs(self.mean) + 1e-300
        return np.maximum(np.sqrt(variance), floor)

    def _share(self) -> FloatArray:
        """Laplace-smoothed mean on the bounds' [0, 1] scale (never exactly 0 or 1)."""
        assert self.bounds is not None
        low, high = self.bounds
        share = ((self.mean - low) * self.n / (high - low) + 1.0) / (self.n + 2.0)
        result: FloatArray = np.clip(share, 1e-12, 1.0 - 1e-12)
        return result

    def update(
        self, delta_n: ArrayLike, delta_sum: ArrayLike, delta_sum_sq: ArrayLike | None = None
    ) -> BoolArray:
        """Feed ``delta_n`` new observations per stream with sum ``delta_sum`` (and sum of
        squares ``delta_sum_sq``, used for the sample variance; without it a batch has no
        spread of its own).

        Shapes broadcast to ``batch_shape + (n_arms,)``. Streams with ``delta_n == 0`` are
        untouched (their sums are ignored: float noise of a store read, not data). Returns the
        alarms raised by this update (streams that became detected).
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
        if delta_sum_sq is None:
            within = np.zeros(self.shape)
        else:
            q = np.broadcast_to(np.asarray(delta_sum_sq, dtype=np.float64), self.shape)
            within = np.maximum(q - s * batch_mean, 0.0)  # sum of squares about the batch mean
        prior_n = self.n
        # Steps start once the warm-up is complete (a batch straddling it only warms up).
        testing = active & (prior_n >= max(self.warmup, 1))
        # sum_{i=1..k} (b - mu_i) with mu_i the running mean after the i-th equal observation.
        centred = prior_n * (batch_mean - self.mean) * harmonic_difference(prior_n, k)
        step = np.where(testing, centred / self.scale(), 0.0)
        slack = np.where(testing, self.delta * k, 0.0)
        if self.bounds is None:
            self._m_up += step - slack
            self._m_down += -step - slack
        else:
            logit = np.log(self._share()) - np.log1p(-self._share())
            # factor(1 - p) is factor(p) at -logit: the fall of a Bernoulli(p) is the rise of
            # a Bernoulli(1 - p).
            self._m_up += (step - slack) * np.interp(logit, _LOGITS, self._tilt)
            self._m_down += (-step - slack) * np.interp(-logit, _LOGITS, self._tilt)
        np.minimum(self._min_up, self._m_up, out=self._min_up)
        np.minimum(self._min_down, self._m_down, out=self._min_down)
        new_n = prior_n + k
        safe_new = np.where(active, new_n, 1.0)
        # Chan et al.: merge the batch's mean and spread into the running ones.
        gap = batch_mean - self.mean
        self._m2 = np.where(
            active, self._m2 + within + gap * gap * prior_n * k / safe_new, self._m2
        )
        self.mean = np.where(active, (prior_n * self.mean + s) / safe_new, self.mean)
        self.n = new_n
        alarm = testing & (self.statistic > self.threshold) & ~self._detected
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
        for array in (
            self.n,
            self.mean,
            self._m2,
            self._m_up,
            self._min_up,
            self._m_down,
            self._min_down,
        ):
            array[mask] = 0.0
        self._detected[mask] = False
