"""GetReport's contextual section: each arm's coefficients with intervals, and for a requested
context the score and P(best) of every arm (the maths is ``policies.contextual_report``).

The requested context is read exactly as a Route's (``route.features.FeatureSpace``), but
stricter: a key the experiment does not declare is INVALID_ARGUMENT naming it, since a report
for a vector other than the one asked for would mislead (a Route only logs such keys).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from bandit_router.errors import InvalidArgument
from bandit_router.model.experiments import Experiment
from bandit_router.route.cache import contextual_stats
from bandit_router.route.features import FeatureSpace, check_attributes
from bandit_router.store.redis_store import ExperimentState
from bandit_router.v1 import admin_pb2
from policies.contextual_report import coefficients, context_scores


def feature_columns(space: FeatureSpace) -> list[str]:
    """Column names in vector order: intercept, numeric names, "name=value", "name=other"."""
    columns = ["intercept"]
    for feature in space.features:
        if feature.values:
            columns += [f"{feature.name}={value}" for value in feature.values]
            columns.append(f"{feature.name}=other")
        else:
            columns.append(feature.name)
    return columns


def requested_vector(
    experiment: Experiment,
    space: FeatureSpace,
    context: Mapping[str, float],
    attributes: Mapping[str, str],
) -> list[float]:
    """The feature vector of the report's context; InvalidArgument naming the bad field."""
    if not experiment.policy.contextual:
        field = "context" if context else "attributes"
        raise InvalidArgument(
            f"policy {experiment.policy.name!r} is not contextual: it has no per-request "
            "model to report on",
            field,
        )
    for key, value in context.items():
        if not math.isfinite(value):
            raise InvalidArgument(f"{value!r} is not a finite number", f"context[{key}]")
    check_attributes(attributes)
    undeclared = space.undeclared(context, attributes)
    if undeclared:
        raise InvalidArgument("is not one of the experiment's context_features", undeclared[0])
    return space.build(context, attributes)


def contextual_section(
    state: ExperimentState, context: Mapping[str, float], attributes: Mapping[str, str]
) -> admin_pb2.ContextualModelReport | None:
    """The section for a contextual experiment (None for a plain one without a context)."""
    experiment = state.experiment
    space = FeatureSpace(experiment.context_features)
    asked = bool(context or attributes)
    x = requested_vector(experiment, space, context, attributes) if asked else None
    if not experiment.policy.contextual:
        return None
    policy = experiment.policy.build_contextual()
    stats = contextual_stats(state, space.dim)
    columns = feature_columns(space)
    model = coefficients(policy, stats)
    section = admin_pb2.ContextualModelReport(columns=columns)
    for k, arm in enumerate(experiment.arm_names):
        section.arms.add(
            arm=arm,
            coefficients=[
                admin_pb2.CoefficientEstimate(
                    column=column,
                    estimate=float(model.estimate[k, j]),
                    ci_low=float(model.estimate[k, j] - model.half_width[k, j]),
                    ci_high=float(model.estimate[k, j] + model.half_width[k, j]),
                )
                for j, column in enumerate(columns)
            ],
        )
    if x is not None:
        eligible = np.array([arm.active for arm in experiment.arms])
        scores = context_scores(policy, stats, np.asarray(x), eligible)
        section.features.extend(x)
        for k, arm in enumerate(experiment.arm_names):
            mean, half = float(scores.mean[k]), float(scores.half_width[k])
            section.scores.add(
                arm=arm,
                mean=mean,
                ci_low=mean - half,
                ci_high=mean + half,
                prob_best=float(scores.prob_best[k]),
            )
    return section
