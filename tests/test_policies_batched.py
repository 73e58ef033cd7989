"""Policies: the fast paths (in-place update, chunked draws, pre-drawn blocks) keep the maths.

In-place and pure updates must agree bit for bit; chunked draws must not depend on the thread
count; every sampler must follow its law. Statistical checks use fixed seeds and the same
levels as test_policies_laws (chi-square 1e-6, KS p > 1e-6), so a correct implementation
passes with certainty for these seeds while a wrong law of a few per cent fails.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import numpy as np
import pytest
from scipy import special
from scipy import stats as sps

from policies import POLICY_NAMES, Stats, create_policy, sampling
from policies.base import explored_flags
from policies.predrawn import PredrawnDecisions
from policies.sampling import (
    CHUNK_VARIATES,
    SCRATCH_MAX_BYTES,
    chunk_bounds,
    chunk_rows,
    draw_threads,
    run_chunks,
    scratch,
    set_draw_threads,
    standard_gamma_into,
)
from policies.thompson import CLOSED_FORM_MIN, SELECT_CHUNK_VARIATES, beta_draws

from .test_policies_laws import BERNOULLI, CONTINUOUS

CHI2_LEVEL = 1e-6
KS_LEVEL = 1e-6

STATE = BERNOULLI


@pytest.fixture
def threads() -> Iterator[None]:
    """Tests that set the draw threads leave the process default behind them."""
    yield
    set_draw_threads(None)


def _chi_square_ok(counts: np.ndarray, probs: np.ndarray) -> None:
    assert counts[probs == 0].sum() == 0
    live = probs > 0
    expected = counts.sum() * probs[live]
    statistic = float(((counts[live] - expected) ** 2 / expected).sum())
    dof = int(live.sum()) - 1
    if dof > 0:
        assert statistic < sps.chi2.ppf(1 - CHI2_LEVEL, dof), (counts, expected)


def _random_stats(rng: np.random.Generator, shape: tuple[int, ...]) -> Stats:
    n = rng.choice([0.0, 1.0, 3.0, 7.5, 40.0], size=shape)
    total = n * rng.random(shape)
    return Stats(n, total, total * rng.random(shape))


@pytest.mark.parametrize("name", POLICY_NAMES)
@pytest.mark.parametrize("gamma", [1.0, 0.9])
@pytest.mark.parametrize("batch", [(), (7,), (3, 4)])
def test_update_inplace_equals_update_bit_for_bit(
    name: str, gamma: float, batch: tuple[int, ...]
) -> None:
    policy = create_policy(name, {"gamma": gamma})
    rng = np.random.default_rng(31)
    for observed in (None, rng.random(batch) < 0.6):
        stats = _random_stats(rng, (*batch, 5))
        before = [x.copy() for x in (stats.n, stats.total, stats.total_sq)]
        arms = rng.integers(0, 5, size=batch)
        rewards = rng.random(batch)
        pure = policy.update(stats, arms, rewards, observed)
        for x, y in zip(before, (stats.n, stats.total, stats.total_sq), strict=True):
            np.testing.assert_array_equal(x, y)  # update leaves its input alone
        policy.update_inplace(stats, arms, rewards, observed)
        for x, y in zip(
            (pure.n, pure.total, pure.total_sq),
            (stats.n, stats.total, stats.total_sq),
            strict=True,
        ):
            np.testing.assert_array_equal(x, y)
            assert x.tobytes() == y.tobytes()  # bit for bit, signs of zeros included


def test_update_matches_the_onehot_rule() -> None:
    """The rule as first written (one-hot, discount per observing row), checked directly."""
    policy = create_policy("ucb1", {"gamma": 0.8})
    rng = np.random.default_rng(5)
    stats = _random_stats(rng, (50, 4))
    arms, rewards = rng.integers(0, 4, 50), rng.random(50) * 3.0
    observed = rng.random(50) < 0.7
    onehot = np.zeros((50, 4))
    np.put_along_axis(onehot, arms[:, None], 1.0, axis=-1)
    onehot *= observed[:, None]
    decay = np.where(onehot.sum(axis=-1, keepdims=True) > 0, 0.8, 1.0)
    r = rewards[:, None]
    new = policy.update(stats, arms, rewards, observed)
    np.testing.assert_array_equal(new.n, stats.n * decay + onehot)
    np.testing.assert_array_equal(new.total, stats.total * decay + onehot * r)
    np.testing.assert_array_equal(new.total_sq, stats.total_sq * decay + onehot * r * r)


def test_update_inplace_checks_its_arrays_and_arms() -> None:
    policy = create_policy("thompson", {})
    stats = Stats.zeros(3, (4,))
    with pytest.raises(IndexError):
        policy.update_inplace(stats, np.array([0, 1, 3, 0]), np.ones(4))
    policy.update_inplace(stats, np.array([-1, 0, 0, 0]), np.ones(4))  # as numpy indexes
    np.testing.assert_array_equal(stats.n[:, 2], [1.0, 0.0, 0.0, 0.0])
    shared = np.broadcast_to(np.zeros(3), (4, 3))
    for bad in (
        Stats(shared, shared, shared),  # read-only view
        Stats(np.zeros((3, 4)).T, np.zeros((4, 3)), np.zeros((4, 3))),  # not C-contiguous
        Stats(np.zeros((4, 3), dtype=np.float32), np.zeros((4, 3)), np.zeros((4, 3))),
    ):
        with pytest.raises(ValueError, match="update_inplace"):
            policy.update_inplace(bad, np.zeros(4, dtype=np.int64), np.ones(4))
    # the pure update accepts all of them
    new = policy.update(Stats(shared, shared, shared), np.zeros(4, dtype=np.int64), np.ones(4))
    np.testing.assert_array_equal(new.n[:, 0], 1.0)


def test_scratch_buffers_are_reused_per_thread_only() -> None:
    first = scratch((2, 100, 5), 2)
    assert all(a is b for a, b in zip(first, scratch((2, 100, 5), 2), strict=True))
    other: list[tuple[np.ndarray, ...]] = []
    worker = threading.Thread(target=lambda: other.append(scratch((2, 100, 5), 2)))
    worker.start()
    worker.join()
    assert not any(np.shares_memory(a, b) for a in first for b in other[0])
    huge = (SCRATCH_MAX_BYTES // 8 + 1,)
    assert scratch(huge, 1)[0] is not scratch(huge, 1)[0]


def test_chunks_depend_on_the_size_alone() -> None:
    assert chunk_bounds(CHUNK_VARIATES) == [0, CHUNK_VARIATES]
    bounds = chunk_bounds(100_000)
    assert bounds[0] == 0 and bounds[-1] == 100_000 and len(bounds) == 5
    assert max(np.diff(bounds)) - min(np.diff(bounds)) <= 1


@pytest.mark.usefixtures("threads")
def test_gamma_draws_do_not_depend_on_the_thread_count() -> None:
    shapes = np.random.default_rng(1).choice([0.3, 1.0, 2.5, 40.0], size=3 * CHUNK_VARIATES + 17)
    results = []
    for count in (1, 2, 3):
        set_draw_threads(count)
        assert draw_threads() == count
        out = np.empty_like(shapes)
        standard_gamma_into(np.random.default_rng(9), shapes, out)
        results.append(out)
    for other in results[1:]:
        assert other.tobytes() == results[0].tobytes()
    # and the variates are Gamma(shape): probability integral transform -> uniform
    uniform = special.gammainc(shapes, results[0])
    assert sps.kstest(uniform, "uniform").pvalue > KS_LEVEL
    # below two chunks the caller's generator draws directly
    small = np.full(1000, 2.5)
    out = np.empty_like(small)
    standard_gamma_into(np.random.default_rng(9), small, out)
    np.testing.assert_array_equal(out, np.random.default_rng(9).standard_gamma(small))


def _early_stats(rng: np.random.Generator, shape: tuple[int, ...]) -> Stats:
    """Low conversion rates: most arms without successes (a = 1), some without failures
    (b = 1), so Beta draws take the closed-form path and the gamma ratio side by side."""
    n = rng.choice([0.0, 1.0, 2.0, 5.0, 12.0], size=shape)
    total = np.where(rng.random(shape) < 0.15, n * rng.random(shape), 0.0)
    total = np.where(rng.random(shape) < 0.05, n, total)  # all successes: b = 1
    return Stats(n, total, total)


@pytest.mark.usefixtures("threads")
@pytest.mark.parametrize("early", [False, True])
@pytest.mark.parametrize("batch", [(20_000,), (40, 500)])
def test_thompson_select_is_reproducible_for_any_thread_count(
    early: bool, batch: tuple[int, ...]
) -> None:
    policy = create_policy("thompson", {"gamma": 0.99})
    rng = np.random.default_rng(2)
    stats = (_early_stats if early else _random_stats)(rng, (*batch, 5))
    assert len(chunk_rows(20_000, 10, SELECT_CHUNK_VARIATES)) - 1 >= 3  # several chunks
    mask = np.array([True, True, False, True, True])
    for eligible in (mask, None):
        outcomes = []
        for count in (1, 2, 8):
            set_draw_threads(count)
            selection = policy.select(stats, np.random.default_rng(44), eligible)
            assert selection.arms.shape == selection.explored.shape == batch
            outcomes.append((selection.arms.tobytes(), selection.explored.tobytes()))
        assert outcomes[1] == outcomes[0] and outcomes[2] == outcomes[0]
    assert not (policy.select(stats, np.random.default_rng(44), mask).arms == 2).any()


def test_row_chunks_depend_on_the_shape_alone() -> None:
    assert chunk_rows(1024, 64, SELECT_CHUNK_VARIATES) == [0, 1024]  # a pre-drawn block
    assert chunk_rows(1000, 20, SELECT_CHUNK_VARIATES) == [0, 1000]  # 1,000 runs x 10 arms
    bounds = chunk_rows(10_000, 10, SELECT_CHUNK_VARIATES)
    assert bounds == [0, 5000, 10_000]
    bounds = chunk_rows(12_345, 10, SELECT_CHUNK_VARIATES)
    assert bounds[0] == 0 and bounds[-1] == 12_345
    assert max(np.diff(bounds)) - min(np.diff(bounds)) <= 1
    assert max(np.diff(bounds)) * 10 <= SELECT_CHUNK_VARIATES
    assert chunk_rows(3, 10**6, SELECT_CHUNK_VARIATES) == [0, 1, 2, 3]  # a row per chunk
    assert chunk_rows(0, 10, SELECT_CHUNK_VARIATES) == [0, 0]


@pytest.mark.usefixtures("threads")
def test_small_selects_stay_on_the_callers_thread_and_generator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A live state and a pre-drawn block (here 1,024 x 32 arms) never hand work to a
    thread, and consume exactly what the same select does with threading disabled."""

    def no_pool(workers: int) -> None:
        raise AssertionError("a small draw used the thread pool")

    policy = create_policy("thompson", {})
    rng = np.random.default_rng(6)
    block = _early_stats(rng, (1024, 32))
    live = Stats(block.n[0], block.total[0], block.total_sq[0])
    expected = []
    set_draw_threads(1)
    for stats in (live, block):
        generator = np.random.default_rng(7)
        selection = policy.select(stats, generator)
        expected.append((selection.arms.tobytes(), generator.bit_generator.state))
    set_draw_threads(8)
    monkeypatch.setattr(sampling, "_executor", no_pool)
    for stats, (arms, state) in zip((live, block), expected, strict=True):
        generator = np.random.default_rng(7)
        assert policy.select(stats, generator).arms.tobytes() == arms
        assert generator.bit_generator.state == state


@pytest.mark.usefixtures("threads")
def test_run_chunks_runs_each_chunk_once_and_reraises() -> None:
    for count in (1, 2, 8):
        set_draw_threads(count)
        seen: list[int] = []
        run_chunks(13, seen.append)
        assert sorted(seen) == list(range(13))

        def fail(i: int) -> None:
            if i == 5:
                raise RuntimeError("chunk 5")

        with pytest.raises(RuntimeError, match="chunk 5"):
            run_chunks(13, fail)


@pytest.mark.usefixtures("threads")
@pytest.mark.parametrize("threads_count", [1, 2])
def test_chunked_thompson_select_follows_probabilities(threads_count: int) -> None:
    """Many copies of one early state: chunked, threaded, closed-form and gamma draws mixed;
    the choices must follow the exact propensities, explored flags the posterior means."""
    set_draw_threads(threads_count)
    policy = create_policy("thompson", {})
    state = Stats(
        np.array([10.0, 4.0, 30.0, 0.0, 6.0]),
        np.array([0.0, 4.0, 3.0, 0.0, 1.0]),  # a = 1, b = 1, both > 1, a = b = 1, both > 1
        np.array([0.0, 4.0, 3.0, 0.0, 1.0]),
    )
    runs = 40_000
    assert len(chunk_rows(runs, 10, SELECT_CHUNK_VARIATES)) > 3
    batch = Stats(
        *(np.array(np.broadcast_to(x, (runs, 5))) for x in (state.n, state.total, state.total_sq))
    )
    mask = np.array([True, True, True, False, True])
    for eligible in (None, mask):
        selection = policy.select(batch, np.random.default_rng(17), eligible)
        probs = policy.probabilities(state, eligible)
        _chi_square_ok(np.bincount(selection.arms, minlength=5), probs)
        row = state.row()
        listed = [i for i in range(5) if eligible is None or eligible[i]]
        for arm in np.unique(selection.arms):
            flags = selection.explored[selection.arms == arm]
            assert (flags == policy.explored_one(row, listed, int(arm))).all()


@pytest.mark.parametrize(
    ("a", "b"),
    [(0.5, 0.5), (1.0, 1.0), (0.3, 2.0), (2.0, 0.3), (1.0, 30.0), (50.0, 500.0), (0.05, 0.7)],
)
def test_beta_draws_are_beta(a: float, b: float) -> None:
    # one shape pair per test, in a batch large enough for chunked, threaded gamma draws
    size = 40_000
    params = np.empty((2, size))
    params[0], params[1] = a, b
    draws = beta_draws(np.random.default_rng(13), params, np.empty_like(params))
    uniform = special.betainc(a, b, draws)
    assert sps.kstest(uniform, "uniform").pvalue > KS_LEVEL


@pytest.mark.parametrize("chunked", [True, False])
@pytest.mark.parametrize("share_one", [0.1, 0.5, 1.0])
def test_beta_draws_mixing_closed_form_and_gammas_are_beta(chunked: bool, share_one: float) -> None:
    """Per-element shapes, a = 1 and b = 1 (closed form) among others (gamma ratio and
    Johnk): the probability integral transform of every draw with its own shapes is uniform,
    and it is so for each kind of element apart."""
    rng = np.random.default_rng(23)
    size = 60_000
    a = rng.choice([0.05, 0.4, 1.0, 2.5, 30.0], size=size)
    b = rng.choice([0.3, 1.0, 4.0, 200.0, 0.1], size=size)
    one = rng.random(size) < share_one
    side = rng.random(size) < 0.7
    a[one & side] = 1.0
    b[one & ~side] = 1.0
    params = np.stack([a, b])
    draws = beta_draws(np.random.default_rng(29), params, np.empty_like(params), chunked)
    assert ((draws >= 0.0) & (draws <= 1.0)).all()
    uniform = special.betainc(a, b, draws)
    kinds = {
        "all": np.ones(size, dtype=bool),
        "a = 1": a == 1.0,
        "b = 1": (b == 1.0) & (a != 1.0),
        "gamma ratio": (a != 1.0) & (b != 1.0) & ((a > 1.0) | (b > 1.0)),
        "johnk": (a != 1.0) & (b != 1.0) & (a <= 1.0) & (b <= 1.0),
    }
    for kind, where in kinds.items():
        if where.any():  # share 1.0: closed form only
            assert sps.kstest(uniform[where], "uniform").pvalue > KS_LEVEL, kind


def test_beta_draws_below_the_closed_form_minimum_are_numpys_gamma_ratio() -> None:
    """A live state's few draws (and any draw with few a = 1 or b = 1) keep the gamma ratio:
    the same variates as before the closed form existed."""
    params = np.array([[1.0, 3.0, 1.0, 7.0, 2.0], [5.0, 1.0, 2.0, 9.0, 2.0]])
    assert params[0].size < CLOSED_FORM_MIN
    draws = beta_draws(np.random.default_rng(3), params, np.empty_like(params)).copy()
    gammas = np.random.default_rng(3).standard_gamma(params)
    np.testing.assert_allclose(draws, gammas[0] / (gammas[0] + gammas[1]), rtol=1e-15)


def test_thompson_breaks_saturated_ties_uniformly() -> None:
    # Tiny priors: most Beta draws underflow to exactly 0 or round to 1, so the argmax is
    # decided by uniform tie-breaking; identical arms must still be chosen 1/4 each.
    policy = create_policy("thompson", {"alpha0": 1e-3, "beta0": 1e-3})
    stats = Stats.zeros(4, (40_000,))
    arms = policy.select(stats, np.random.default_rng(8)).arms
    _chi_square_ok(np.bincount(arms, minlength=4), np.full(4, 0.25))
    # and with an ineligible arm: 1/3 each over the others, never the excluded one
    mask = np.array([True, False, True, True])
    arms = policy.select(stats, np.random.default_rng(9), mask).arms
    _chi_square_ok(np.bincount(arms, minlength=4), np.array([1, 0, 1, 1]) / 3)


def test_explored_flags_agree_with_the_reduction() -> None:
    rng = np.random.default_rng(3)
    greedy = rng.random((500, 6))
    greedy[rng.random((500, 6)) < 0.2] = 0.5  # ties in greedy value
    mask = rng.random((500, 6)) < 0.8
    mask[:, 0] = True
    arms = rng.integers(0, 6, 500)
    values = np.where(mask, greedy, -np.inf)
    chosen = np.take_along_axis(values, arms[:, None], axis=-1)[:, 0]
    np.testing.assert_array_equal(explored_flags(greedy, mask, arms), chosen < values.max(-1))


# -- pre-drawn live decisions ----------------------------------------------------------------


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_predrawn_decisions_follow_probabilities(name: str) -> None:
    policy = create_policy(name, {})
    state = CONTINUOUS if name == "gaussian_thompson" else STATE
    eligible = [0, 1, 2, 4]
    mask = np.array([True, True, True, False, True])
    probs = policy.probabilities(state, mask)
    block = PredrawnDecisions(policy, state, eligible, block_size=1000)
    rng = random.Random(21)
    decisions = [block.draw(rng) for _ in range(40_000)]
    assert block.refills == 4 + 40  # 64, 128, 256 and 512 (960 in all), then 1000 each
    arms = np.array([arm for arm, _ in decisions])
    _chi_square_ok(np.bincount(arms, minlength=5), probs)
    row = state.row()
    for arm, explored in set(decisions):
        assert explored == policy.explored_one(row, eligible, arm)


def test_predrawn_blocks_are_policy_select_in_batch_order() -> None:
    policy = create_policy("thompson", {})
    block = PredrawnDecisions(policy, STATE.row(), (0, 1, 2, 3, 4), block_size=64)
    rng = random.Random(5)
    first = [block.draw(rng) for _ in range(64)]
    assert block.remaining == 0 and block.refills == 1
    second = block.draw(rng)
    assert block.refills == 2 and block.remaining == 63
    replay = random.Random(5)
    for expected_block in (first, [second]):
        generator = np.random.default_rng(replay.getrandbits(64))
        batch = Stats(
            *(np.broadcast_to(x, (64, 5)) for x in (STATE.n, STATE.total, STATE.total_sq))
        )
        selection = policy.select(batch, generator, np.ones(5, dtype=bool))
        expected = list(zip(selection.arms.tolist(), selection.explored.tolist(), strict=True))
        assert expected[: len(expected_block)] == expected_block
    again = PredrawnDecisions(policy, STATE, [0, 1, 2, 3, 4], block_size=64)
    rng = random.Random(5)
    assert [again.draw(rng) for _ in range(65)] == [*first, second]


def test_predrawn_blocks_start_small_and_double_up_to_the_block_size() -> None:
    """A state that serves few Routes before the next refresh draws little: 64, then twice
    as many each refill, up to ``block_size``; the stream is still policy.select's batches."""
    policy = create_policy("thompson", {})
    block = PredrawnDecisions(policy, STATE.row(), (0, 1, 2, 3, 4), block_size=300)
    rng, sizes = random.Random(8), []
    for _ in range(64 + 128 + 256 + 300 + 300):
        before = block.refills
        block.draw(rng)
        if block.refills > before:
            sizes.append(block.remaining + 1)
    assert sizes == [64, 128, 256, 300, 300]
    replay = random.Random(8)
    generator = np.random.default_rng(replay.getrandbits(64))
    batch = Stats(*(np.broadcast_to(x, (64, 5)) for x in (STATE.n, STATE.total, STATE.total_sq)))
    first = policy.select(batch, generator, np.ones(5, dtype=bool))
    again, again_rng = (
        PredrawnDecisions(policy, STATE.row(), (0, 1, 2, 3, 4), 300),
        random.Random(8),
    )
    assert [again.draw(again_rng)[0] for _ in range(64)] == first.arms.tolist()


def test_predrawn_keeps_its_own_copy_of_the_state() -> None:
    policy = create_policy("thompson", {})
    state = Stats(STATE.n.copy(), STATE.total.copy(), STATE.total_sq.copy())
    block = PredrawnDecisions(policy, state, [1, 2], block_size=4000)
    state.n[1] = state.total[1] = 1e6  # arm 1 would now always win
    rng = random.Random(3)
    arms = np.array([block.draw(rng)[0] for _ in range(4000)])
    probs = policy.probabilities(STATE, np.array([False, True, True, False, False]))
    _chi_square_ok(np.bincount(arms, minlength=5), probs)


def test_predrawn_rejects_bad_arguments() -> None:
    policy = create_policy("thompson", {})
    with pytest.raises(ValueError, match="eligible"):
        PredrawnDecisions(policy, STATE, [])
    with pytest.raises(ValueError, match="eligible"):
        PredrawnDecisions(policy, STATE, [0, 5])
    with pytest.raises(ValueError, match="block_size"):
        PredrawnDecisions(policy, STATE, [0], block_size=0)
    with pytest.raises(ValueError, match="first_block"):
        PredrawnDecisions(policy, STATE, [0], first_block=0)
    with pytest.raises(ValueError, match="single state"):
        PredrawnDecisions(policy, Stats.zeros(5, (2,)), [0])
