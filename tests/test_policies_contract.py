"""Policies: registry validation, the shared contract, reproducibility and the data shapes."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import (
    POLICY_NAMES,
    Policy,
    PolicyConfigError,
    ScalarStats,
    Stats,
    create_policy,
    parameter_specs,
)

BOUNDED = {"thompson", "top_two_thompson", "kl_ucb"}  # rewards in [0, 1]


def test_registry_lists_every_policy() -> None:
    assert POLICY_NAMES == (
        "decaying_epsilon_greedy",
        "epsilon_greedy",
        "gaussian_thompson",
        "kl_ucb",
        "thompson",
        "top_two_thompson",
        "ucb1",
    )
    for name in POLICY_NAMES:
        policy = create_policy(name, {})
        assert policy.name == name
        assert set(policy.describe()) == set(parameter_specs(name))
        assert policy.describe()["gamma"] == 1.0


def test_unknown_policy_names_the_field_and_the_choices() -> None:
    with pytest.raises(PolicyConfigError) as error:
        create_policy("thompsn", {})
    assert error.value.field == "policy.name"
    assert "allowed: " in str(error.value) and "thompson" in str(error.value)


BAD_VALUES = [
    ("thompson", "alpha0", 0.0),
    ("thompson", "beta0", -1.0),
    ("top_two_thompson", "alpha0", 0.0),
    ("top_two_thompson", "leader_probability", 1.1),
    ("top_two_thompson", "leader_probability", -0.1),
    ("gaussian_thompson", "kappa0", 0.0),
    ("gaussian_thompson", "alpha0", -2.0),
    ("gaussian_thompson", "beta0", 0.0),
    ("gaussian_thompson", "mu0", math.inf),
    ("ucb1", "c", -0.5),
    ("kl_ucb", "c", -1.0),
    ("epsilon_greedy", "epsilon", 1.5),
    ("epsilon_greedy", "epsilon", -0.01),
    ("epsilon_greedy", "epsilon", math.nan),
    ("decaying_epsilon_greedy", "c", 0.0),
    *[(name, "gamma", value) for name in POLICY_NAMES for value in (0.0, 1.01, -1.0, math.nan)],
    *[(name, "not_a_param", 1.0) for name in POLICY_NAMES],
    ("thompson", "alpha0", "1"),
    ("epsilon_greedy", "epsilon", True),
]


@pytest.mark.parametrize(("name", "field", "value"), BAD_VALUES)
def test_bad_parameters_raise_naming_the_field(name: str, field: str, value: object) -> None:
    with pytest.raises(PolicyConfigError) as error:
        create_policy(name, {field: value})  # type: ignore[dict-item]
    assert error.value.field == field


def test_boundary_values_are_accepted() -> None:
    create_policy("epsilon_greedy", {"epsilon": 0.0, "gamma": 1.0})
    create_policy("epsilon_greedy", {"epsilon": 1, "gamma": 1e-9})
    create_policy("top_two_thompson", {"leader_probability": 0.0})
    create_policy("ucb1", {"c": 0.0})
    create_policy("gaussian_thompson", {"mu0": -5.0, "kappa0": 1e-6})


def test_stats_mapping_round_trip() -> None:
    stats = Stats(np.array([3.0, 0.0, 2.5]), np.array([1.0, 0.0, 2.0]), np.array([1.0, 0, 1.7]))
    names = ["a", "b:c", "ü"]
    flat = stats.to_mapping(names)
    assert flat["b:c:n"] == 0.0 and flat["a:sum"] == 1.0
    back = Stats.from_mapping({k: repr(v).encode() for k, v in flat.items()}, names)
    pairs = zip(
        (stats.n, stats.total, stats.total_sq), (back.n, back.total, back.total_sq), strict=True
    )
    for x, y in pairs:
        np.testing.assert_array_equal(x, y)
    missing = Stats.from_mapping({"a:n": 2.0}, names)
    np.testing.assert_array_equal(missing.n, [2.0, 0.0, 0.0])
    assert stats.row() == ScalarStats((3.0, 0.0, 2.5), (1.0, 0.0, 2.0), (1.0, 0.0, 1.7))


def test_update_discounts_every_arm_of_observing_rows() -> None:
    policy = create_policy("ucb1", {"gamma": 0.5})
    stats = Stats(np.array([[2.0, 4.0]] * 2), np.array([[1.0, 2.0]] * 2), np.zeros((2, 2)))
    new = policy.update(stats, np.array([1, 0]), np.array([1.0, 0.5]), np.array([True, False]))
    np.testing.assert_array_equal(new.n, [[1.0, 3.0], [2.0, 4.0]])
    np.testing.assert_array_equal(new.total, [[0.5, 2.0], [1.0, 2.0]])


def _stats_strategy(bounded: bool) -> st.SearchStrategy[tuple[Stats, np.ndarray]]:
    @st.composite
    def build(draw: st.DrawFn) -> tuple[Stats, np.ndarray]:
        k = draw(st.integers(1, 6))
        counts = st.sampled_from([0.0, 0.3, 1.0, 7.0, 250.0, 1e5])
        n = np.array(draw(st.lists(counts, min_size=k, max_size=k)))
        share = np.array(draw(st.lists(st.floats(0.0, 1.0), min_size=k, max_size=k)))
        if bounded:
            total = n * share
            total_sq = total
        else:
            scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
            total = n * (share - 0.5) * scale
            total_sq = total**2 / np.maximum(n, 1e-300) + n * scale**2 * share
        mask = np.array(draw(st.lists(st.booleans(), min_size=k, max_size=k)))
        mask[draw(st.integers(0, k - 1))] = True
        return Stats(n, total, total_sq), mask

    return build()


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_probabilities_are_a_distribution_for_any_state(name: str) -> None:
    policy = create_policy(name, {})

    @settings(max_examples=40, deadline=None)
    @given(_stats_strategy(name in BOUNDED))
    def check(case: tuple[Stats, np.ndarray]) -> None:
        stats, mask = case
        probs = policy.probabilities(stats, mask)
        assert np.all(np.isfinite(probs)) and np.all(probs >= 0.0)
        assert np.all(probs[~mask] == 0.0)
        assert abs(probs.sum() - 1.0) < 1e-12  # normalised: only rounding remains
        one = policy.probabilities_one(stats.row(), list(np.flatnonzero(mask)))
        np.testing.assert_allclose(one, probs, rtol=0, atol=1e-15)
        arm, _ = policy.select_one(stats.row(), random.Random(0), list(np.flatnonzero(mask)))
        assert mask[arm]

    check()


def _random_walk(policy: Policy, seed: int, steps: int = 30) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    stats = Stats.zeros(4, (64,))
    mask = np.array([True, True, False, True])
    chosen = []
    for _ in range(steps):
        selection = policy.select(stats, rng, mask)
        won = rng.random(64) < np.array([0.2, 0.5, 0.9, 0.4])[selection.arms]
        rewards = won.astype(np.float64)
        stats = policy.update(stats, selection.arms, rewards)
        chosen.append(selection.arms)
    return np.array(chosen), stats.n


def _scalar_walk(policy: Policy, seed: int, steps: int = 200) -> list[tuple[int, bool]]:
    rng = random.Random(seed)
    n, total = [0.0] * 4, [0.0] * 4
    out = []
    for _ in range(steps):
        stats = ScalarStats(tuple(n), tuple(total), tuple(total))
        arm, explored = policy.select_one(stats, rng, [0, 1, 3])
        n[arm] += 1.0
        total[arm] += float(rng.random() < (0.2, 0.5, 0.9, 0.4)[arm])
        out.append((arm, explored))
    return out


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_same_seed_same_choices(name: str) -> None:
    policy = create_policy(name, {"gamma": 0.99})
    first, n_first = _random_walk(policy, 7)
    second, n_second = _random_walk(policy, 7)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(n_first, n_second)
    assert not (first == 2).any()  # ineligible arm never chosen
    other, _ = _random_walk(policy, 8)
    if name not in {"ucb1", "kl_ucb"}:  # deterministic but for ties
        assert (first != other).any()
    assert _scalar_walk(policy, 3) == _scalar_walk(policy, 3)
    assert all(arm != 2 for arm, _ in _scalar_walk(policy, 4))


def test_explored_means_not_greedy() -> None:
    rng = np.random.default_rng(0)
    same = Stats(np.full((500, 3), 10.0), np.full((500, 3), 4.0), np.full((500, 3), 4.0))
    for name in ("thompson", "gaussian_thompson", "top_two_thompson"):
        policy = create_policy(name, {})
        assert not policy.select(same, rng).explored.any()  # ties in mean are greedy
    ucb = create_policy("ucb1", {})
    partly = Stats(np.array([5.0, 0.0]), np.array([5.0, 0.0]), np.array([5.0, 0.0]))
    choice = ucb.select(partly, rng)
    assert choice.arms.item() == 1 and choice.explored.item()  # unplayed first: exploration
    assert ucb.select_one(partly.row(), random.Random(0), [0, 1]) == (1, True)
    greedy = create_policy("epsilon_greedy", {"epsilon": 0.0})
    batch = Stats(np.full((100, 2), 4.0), np.tile([1.0, 3.0], (100, 1)), np.zeros((100, 2)))
    choice = greedy.select(batch, rng)
    assert (choice.arms == 1).all() and not choice.explored.any()
    explore = create_policy("epsilon_greedy", {"epsilon": 1.0}).select(batch, rng)
    np.testing.assert_array_equal(explore.explored, explore.arms == 0)


def test_single_eligible_arm_is_certain() -> None:
    stats = Stats(np.array([3.0, 9.0, 1.0]), np.array([1.0, 8.0, 0.0]), np.array([1, 8.0, 0]))
    mask = np.array([False, False, True])
    for name in POLICY_NAMES:
        policy = create_policy(name, {})
        np.testing.assert_array_equal(policy.probabilities(stats, mask), [0.0, 0.0, 1.0])
        assert policy.select(stats, np.random.default_rng(0), mask).arms.item() == 2
        assert policy.select_one(stats.row(), random.Random(0), [2])[0] == 2
