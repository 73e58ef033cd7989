"""Contextual experiments' contract without a server: declared features, validation, the
feature vector a Route builds, the files operators write, and the signed ids that carry it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from bandit_router.errors import InvalidArgument
from bandit_router.model.convert import experiment_of, experiment_to_pb
from bandit_router.model.experiments import (
    MAX_FEATURES,
    Arm,
    ContextFeature,
    Experiment,
    PolicySpec,
)
from bandit_router.operations.experiment_files import load_experiments
from bandit_router.route.cache import ContextualState
from bandit_router.route.features import (
    MAX_ATTRIBUTES,
    FeatureSpace,
    check_attributes,
    decode_features,
    encode_features,
)
from bandit_router.route.tokens import Decision, DecisionSigner, parse_unverified
from bandit_router.store.redis_store import ExperimentState
from policies import ContextualStats
from policies.contextual import FEATURE_MAGNITUDE_LIMIT

TIER = ContextFeature("tier", values=("free", "premium"))
LENGTH = ContextFeature("length", scale=1000.0)


def contextual(**changes: object) -> Experiment:
    base = Experiment(
        "ctx", (Arm("a"), Arm("b")), PolicySpec("lin_ts"), context_features=(LENGTH, TIER)
    )
    return base.with_changes(**changes)


def refused(experiment: Experiment) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as raised:
        experiment.validated()
    return raised.value


# -- the experiment --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lin_ts", "lin_ucb", "logistic_ts"])
def test_contextual_policies_are_accepted_with_features(name: str) -> None:
    experiment = contextual(policy=PolicySpec(name)).validated()
    assert experiment.feature_columns == (
        "(intercept)",
        "length",
        "tier=free",
        "tier=premium",
        "tier=(other)",
    )
    assert experiment.feature_space  # a fingerprint the store keeps


@pytest.mark.parametrize("name", ["lin_ts", "lin_ucb", "logistic_ts"])
def test_contextual_policy_without_features_is_refused(name: str) -> None:
    error = refused(contextual(policy=PolicySpec(name), context_features=()))
    assert error.field == "experiment.context_features"


def test_a_plain_policy_may_declare_features_to_log_them() -> None:
    experiment = contextual(policy=PolicySpec("thompson")).validated()
    assert experiment.feature_space == ""  # nothing learned from them


@pytest.mark.parametrize(
    ("features", "field"),
    [
        ((ContextFeature("bad name"),), "experiment.context_features[0].name"),
        ((LENGTH, LENGTH), "experiment.context_features[1].name"),
        ((ContextFeature("x", scale=0.0),), "experiment.context_features[0].scale"),
        ((ContextFeature("x", scale=math.nan),), "experiment.context_features[0].scale"),
        ((ContextFeature("x", values=("a", "a")),), "experiment.context_features[0].values"),
        ((ContextFeature("x", values=("ok", "no way")),), "context_features[0].values[1]"),
        (
            tuple(ContextFeature(f"f{i}") for i in range(MAX_FEATURES)),  # + intercept
            "experiment.context_features",
        ),
    ],
)
def test_bad_features_name_their_field(features: tuple[ContextFeature, ...], field: str) -> None:
    error = refused(contextual(context_features=features))
    assert field in error.field


def test_the_feature_limit_counts_columns() -> None:
    fits = tuple(ContextFeature(f"f{i}") for i in range(MAX_FEATURES - 1))
    assert len(contextual(context_features=fits).validated().feature_columns) == MAX_FEATURES
    wide = (ContextFeature("c", values=tuple(f"v{i}" for i in range(MAX_FEATURES - 1))),)
    assert "at most 64" in refused(contextual(context_features=wide)).message


def test_what_the_statistics_mean_decides_whether_a_reset_is_needed() -> None:
    before = contextual()
    assert not before.needs_reset_to_become(before.with_changes(policy=PolicySpec("lin_ucb")))
    assert before.needs_reset_to_become(before.with_changes(policy=PolicySpec("logistic_ts")))
    assert before.needs_reset_to_become(before.with_changes(policy=PolicySpec("thompson")))
    assert before.needs_reset_to_become(before.with_changes(context_features=(LENGTH,)))
    plain = before.with_changes(policy=PolicySpec("thompson"))
    assert not plain.needs_reset_to_become(plain.with_changes(context_features=()))


def test_json_and_protobuf_round_trips_keep_the_features() -> None:
    experiment = contextual(
        context_features=(LENGTH, TIER, ContextFeature("seg", required=True))
    ).validated()
    assert Experiment.from_json_dict(experiment.to_json_dict()) == experiment
    back = experiment_of(experiment_to_pb(experiment))
    assert back.context_features == experiment.context_features
    assert back.policy == experiment.policy


def test_experiment_files_declare_features(tmp_path: Path) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(
        "experiments:\n"
        "  - name: router\n"
        "    arms: [small, large]\n"
        "    policy: {name: lin_ts, params: {v: 0.5}}\n"
        "    context_features:\n"
        "      - seg0\n"
        "      - {name: length, scale: 1000, required: true}\n"
        "      - {name: tier, values: [free, premium]}\n"
    )
    (experiment,) = load_experiments(path)
    assert experiment.context_features == (
        ContextFeature("seg0"),
        ContextFeature("length", 1000.0, (), True),
        TIER,
    )
    toml = tmp_path / "e.toml"
    toml.write_text(
        '[[experiments]]\nname = "r"\narms = ["a"]\npolicy = "lin_ucb"\n'
        'context_features = ["seg0", {name = "tier", values = ["x"]}]\n'
    )
    assert len(load_experiments(toml)[0].feature_columns) == 4
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiments:\n  - {name: r, arms: [a], policy: lin_ts}\n")
    with pytest.raises(InvalidArgument) as raised:
        load_experiments(bad)
    assert raised.value.field.endswith("experiments[0].context_features")


# -- the feature vector ----------------------------------------------------------------------


def test_vector_has_intercept_scaled_numbers_and_one_hot_with_other() -> None:
    space = FeatureSpace((LENGTH, TIER))
    assert space.dim == 5
    assert space.build({"length": 500.0}, {"tier": "premium"}) == [1.0, 0.5, 0.0, 1.0, 0.0]
    # missing numeric: 0; a value outside the declared ones, or none: "other", never an error
    assert space.build({}, {"tier": "gold"}) == [1.0, 0.0, 0.0, 0.0, 1.0]
    assert space.build({}, {}) == [1.0, 0.0, 0.0, 0.0, 1.0]


def test_undeclared_keys_are_reported_not_learned() -> None:
    space = FeatureSpace((LENGTH, TIER))
    context, attributes = {"length": 1.0, "noise": 3.0}, {"tier": "free", "colour": "red"}
    assert space.build(context, attributes) == [1.0, 0.001, 1.0, 0.0, 0.0]
    assert space.undeclared(context, attributes) == ["context[noise]", "attributes[colour]"]


def test_required_features_name_the_missing_field() -> None:
    space = FeatureSpace((ContextFeature("length", required=True), TIER))
    with pytest.raises(InvalidArgument) as raised:
        space.build({}, {})
    assert raised.value.field == "context[length]"
    space = FeatureSpace((ContextFeature("tier", values=("a",), required=True),))
    with pytest.raises(InvalidArgument) as raised:
        space.build({}, {"other": "a"})
    assert raised.value.field == "attributes[tier]"


def test_a_value_whose_scaled_form_leaves_the_policies_range_is_refused() -> None:
    space = FeatureSpace((ContextFeature("x", scale=1e-10),))
    with pytest.raises(InvalidArgument) as raised:
        space.build({"x": 1e95}, {})
    assert raised.value.field == "context[x]"
    assert space.build({"x": FEATURE_MAGNITUDE_LIMIT * 1e-10}, {})[1] <= FEATURE_MAGNITUDE_LIMIT


def test_attribute_limits() -> None:
    check_attributes({"tier": "x" * 64})
    for attributes, field in [
        ({"tier": "x" * 65}, "attributes[tier]"),
        ({"": "a"}, "attributes"),
        ({f"k{i}": "v" for i in range(MAX_ATTRIBUTES + 1)}, "attributes"),
    ]:
        with pytest.raises(InvalidArgument) as raised:
            check_attributes(attributes)
        assert raised.value.field == field


# -- the signed decision id ------------------------------------------------------------------


@pytest.mark.parametrize(
    "x", [[1.0, 0.0, 1.0], [1.0, -0.1, 1e-300, 123456.789, 5e-324, -1e100], [1.0] * MAX_FEATURES]
)
def test_features_travel_exactly_in_the_signed_id(x: list[float]) -> None:
    encoded = encode_features("abc123", -0.7251, x)
    assert decode_features(encoded) == ("abc123", -0.7251, x)
    signer = DecisionSigner(b"0123456789abcdef")
    decision = Decision("e", "inc", "a", 0.25, 1, 2, 3, True, "n" * 24, encoded)
    token = signer.issue(decision)
    assert signer.verify(token) == decision == parse_unverified(token)
    tampered = token.replace("abc123/", "abc124/")
    with pytest.raises(InvalidArgument):
        signer.verify(tampered)


def test_encoded_numbers_are_shortest_reprs_without_whole_number_tails() -> None:
    """What Lua reads back exactly, one character per one-hot column: 1 and 0, not 1.0."""
    encoded = encode_features("s.0:1", 2.0, [1.0, 0.0, -0.0, 100.0, 0.5, 1e16, 1e-05, 10.25])
    assert encoded == "s.0:1/2/1:0:-0:100:0.5:1e+16:1e-05:10.25"


def test_plain_ids_are_unchanged() -> None:
    signer = DecisionSigner(b"0123456789abcdef")
    token = signer.issue(Decision("e", "inc", "a", 0.25, 1, 2, 3, True, "n" * 24))
    assert token.startswith("2~") and token.count("~") == 10
    assert signer.verify(token).features == ""


# -- the replica's prepared state ------------------------------------------------------------


def test_cached_state_reads_the_hash_and_keeps_laws_per_vector() -> None:
    """The cache's contextual state is the policy prepared on (n, A, b) read from the hash
    layout the Lua scripts write (A as its upper triangle), and its per-vector laws are the
    policy's exact ones, kept per state."""
    experiment = contextual().validated().with_changes(incarnation="i")
    x = [1.0, 0.5, 0.0, 1.0, 0.0]
    y = [1.0, 0.0, 1.0, 0.0, 0.0]
    increment = np.outer(x, x)
    raw = {"_inc": "i", "_space": experiment.feature_space, "a:n": "2", "b:n": "1"}
    for i in range(5):
        raw[f"a:b:{i}"] = repr(2 * x[i])
        raw[f"b:b:{i}"] = repr(-y[i])
        for j in range(i, 5):
            raw[f"a:A:{i}:{j}"] = repr(float(2 * increment[i, j]))
            if y[i] * y[j]:
                raw[f"b:A:{i}:{j}"] = repr(y[i] * y[j])
    state = ContextualState.build(ExperimentState(experiment, raw))
    expected = ContextualStats(
        np.array([2.0, 1.0]),
        np.array([2 * increment, np.outer(y, y)]),
        np.array([2 * np.array(x), -np.array(y)]),
    )
    assert np.array_equal(state.stats.gram, expected.gram)
    assert np.array_equal(state.stats.b, expected.b)
    live = state.live(x, (0, 1))
    model = state.policy.prepare(expected)
    assert (live.law, live.means) == state.policy.law_one(model, x, (0, 1))
    assert state.live(list(x), (0, 1)) is live  # kept for this state
    assert state.live(x, (1,)).law == (0.0, 1.0)
