"""The ``environment`` section of a contextual study file (types linear, logistic, segments,
model_routing): validated field by field, every mistake a ``StudyError`` naming its path.

The feature vector each type produces, and the ``context_features`` an experiment would
declare to get the same vector from the service, are in ``docs/simulations.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from simulations.contextual_environments import (
    ContextualEnvironment,
    one_hot_vectors,
    unit_rows,
)

if TYPE_CHECKING:
    from simulations.study import _Fields

#: The largest feature dimension a study may ask for: a step factorises runs x arms d x d
#: matrices, so d = 64 is already seconds per thousand steps.
MAX_STUDY_FEATURES = 64

FIELDS: Mapping[str, tuple[str, ...]] = {
    "linear": ("type", "arms", "features", "sigma", "coefficients", "coefficient_seed"),
    "logistic": ("type", "arms", "features", "scale", "coefficients", "coefficient_seed"),
    "segments": ("type", "arms", "segments"),
    "model_routing": ("type", "arms", "prompt_types", "cost", "cost_weight", "latency"),
}


def _arm_names(f: _Fields, raw: Any, path: str) -> tuple[str, ...]:
    if isinstance(raw, int) and not isinstance(raw, bool):
        count = f.integer(raw, path, low=2)
        return tuple(f"arm{i}" for i in range(count))
    if not isinstance(raw, list) or len(raw) < 2:
        raise f.error(path, "expected a list of at least two arm names (or a count)")
    names = tuple(f.text(a, f"{path}[{i}]") for i, a in enumerate(raw))
    if len(set(names)) != len(names):
        raise f.error(path, "arm names must be unique")
    return names


def _coefficients(
    f: _Fields, env: Mapping[str, Any], k: int, d: int, path: str
) -> np.ndarray[Any, Any]:
    raw = env.get("coefficients")
    if raw is None:
        seed = f.integer(env.get("coefficient_seed", 0), f"{path}.coefficient_seed")
        return unit_rows(np.random.default_rng(seed), k, d)
    if not isinstance(raw, list) or len(raw) != k:
        raise f.error(f"{path}.coefficients", f"expected {k} rows, one per arm")
    rows = []
    for i, row in enumerate(raw):
        values = f.numbers(row, f"{path}.coefficients[{i}]")
        if len(values) != d:
            raise f.error(f"{path}.coefficients[{i}]", f"expected {d} values, got {len(values)}")
        rows.append(values)
    return np.asarray(rows, dtype=np.float64)


def _groups(
    f: _Fields, raw: Any, path: str, values_key: str, k: int
) -> tuple[tuple[str, ...], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """(names, normalised weights, table (S, K)) of segments or prompt types."""
    if not isinstance(raw, list) or len(raw) < 2:
        raise f.error(path, "expected a list of at least two entries")
    names, weights, rows = [], [], []
    for i, item in enumerate(raw):
        where = f"{path}[{i}]"
        entry = f.mapping(item, where)
        f.only(entry, where, ("name", "weight", values_key))
        names.append(f.text(f.required(entry, "name", where), f"{where}.name"))
        weights.append(f.number(entry.get("weight", 1.0), f"{where}.weight", low=1e-12))
        values = f.numbers(
            f.required(entry, values_key, where), f"{where}.{values_key}", low=0.0, high=1.0
        )
        if len(values) != k:
            raise f.error(f"{where}.{values_key}", f"expected one value per arm ({k})")
        rows.append(values)
    if len(set(names)) != len(names):
        raise f.error(path, "names must be unique")
    w = np.asarray(weights)
    return tuple(names), w / w.sum(), np.asarray(rows, dtype=np.float64)


def contextual_environment(
    f: _Fields, env: Mapping[str, Any], kind: str
) -> tuple[ContextualEnvironment, dict[str, Any]]:
    """The environment and its JSON summary (type, arms, feature columns)."""
    path = "environment"
    f.only(env, path, FIELDS[kind])
    arms = _arm_names(f, f.required(env, "arms", path), f"{path}.arms")
    k = len(arms)
    environment: ContextualEnvironment
    if kind in ("linear", "logistic"):
        d = f.integer(f.required(env, "features", path), f"{path}.features", low=1)
        if d > MAX_STUDY_FEATURES:
            raise f.error(f"{path}.features", f"at most {MAX_STUDY_FEATURES}")
        if kind == "linear":
            columns = tuple(f"x{i}" for i in range(d))
            sigma = f.number(env.get("sigma", 0.5), f"{path}.sigma", low=1e-12)
            environment = ContextualEnvironment(
                kind, arms, columns, "linear", False, sigma=sigma,
                coefficients=_coefficients(f, env, k, d, path),
            )  # fmt: skip
        else:
            columns = ("intercept", *(f"x{i}" for i in range(d)))
            scale = f.number(env.get("scale", 3.0), f"{path}.scale", low=1e-12)
            environment = ContextualEnvironment(
                kind, arms, columns, "logistic", True, scale=scale,
                coefficients=_coefficients(f, env, k, d + 1, path),
            )  # fmt: skip
    else:
        key, values_key = (
            ("segments", "means") if kind == "segments" else ("prompt_types", "quality")
        )
        names, weights, table = _groups(
            f, f.required(env, key, path), f"{path}.{key}", values_key, k
        )
        columns = ("intercept", *names, "other")
        cost = latency = penalty = None
        if kind == "model_routing":
            cost = f.per_arm(f.required(env, "cost", path), f"{path}.cost", k, low=0.0)
            weight = f.number(env.get("cost_weight", 0.0), f"{path}.cost_weight", low=0.0)
            penalty = weight * cost if weight > 0 else None
            if env.get("latency") is not None:
                latency = f.per_arm(env["latency"], f"{path}.latency", k, low=0.0)
        environment = ContextualEnvironment(
            kind, arms, columns, "table", True,
            segment_weights=weights, segment_vectors=one_hot_vectors(len(names)), table=table,
            penalty=penalty, cost=cost, latency=latency,
        )  # fmt: skip
    summary = {"type": kind, "arms": list(arms), "features": list(environment.columns)}
    return environment, summary
