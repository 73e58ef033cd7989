"""``replay --target FILE``: a target read from YAML (or JSON), contextual or not.

The file is either an experiments file (``experiments: [...]``, the format ``create -f``
reads; the entry named by ``--experiment``, or the only one) or a bare policy spec
``{name, params, context_features}``. Only the policy and its ``context_features`` matter
here: replay prices how the target chooses arms, not the rest of a configuration (floors,
holdouts and the like are ``promote``'s business, which evaluates whole configurations).

A contextual policy needs statistics to decide from; replay fits them on the log's first
part (``replay.fitted_target``), so a file yields a ``ContextualSpec`` that the caller turns
into a target once the log is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from policies.base import PolicyConfigError
from policies.contextual import ContextualPolicy
from policies.registry import is_contextual
from simulations.contextual_ope import FeatureSpec, policy_from_spec
from simulations.logs import LogError
from simulations.replay import Target
from simulations.study import make_policy

#: File name endings read as a target file rather than a policy name.
SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class ContextualSpec:
    """A contextual target before its statistics are fitted on the log."""

    policy: ContextualPolicy
    features: tuple[FeatureSpec, ...]
    label: str


def is_target_file(spec: str) -> bool:
    return spec.lower().endswith(SUFFIXES)


def load_target(path: str, experiment: str | None = None) -> Target | ContextualSpec:
    """The target in ``path``; LogError naming ``--target`` and what is wrong."""
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise LogError(f"cannot read: {error.strerror}", source=path, field="--target") from None
    except yaml.YAMLError as error:
        raise LogError(f"invalid YAML: {error}", source=path, field="--target") from None
    try:
        return _target(document, path, experiment)
    except ValueError as error:
        raise LogError(str(error), source=path, field="--target") from None


def _target(document: Any, path: str, experiment: str | None) -> Target | ContextualSpec:
    if not isinstance(document, Mapping):
        raise ValueError("expected an experiments file or a policy spec (a mapping)")
    where = "policy"
    if "experiments" in document:
        entries = document["experiments"]
        if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
            raise ValueError("experiments: expected a list of mappings")
        chosen = [e for e in entries if experiment is None or e.get("name") == experiment]
        if len(chosen) != 1:
            names = ", ".join(repr(e.get("name")) for e in entries) or "none"
            raise ValueError(
                f"expected one experiment{f' named {experiment!r}' if experiment else ''} "
                f"(use --experiment to choose); found {names}"
            )
        entry = chosen[0]
        policy = entry.get("policy", {"name": "thompson"})
        if isinstance(policy, str):
            policy = {"name": policy}
        if not isinstance(policy, Mapping):
            raise ValueError("policy: expected a mapping")
        features = entry.get("context_features") or []
        where = f"experiments[{entry.get('name')}].policy"
    else:
        policy = {k: v for k, v in document.items() if k != "context_features"}
        features = document.get("context_features") or []
    if not isinstance(features, list):
        raise ValueError("context_features: expected a list")
    specs = tuple(
        FeatureSpec.from_mapping(f, f"context_features[{i}]") for i, f in enumerate(features)
    )
    name = policy.get("name")
    if isinstance(name, str) and is_contextual(name):
        if not specs:
            raise ValueError(f"{where}.name: {name!r} is contextual but no context_features")
        model, label = policy_from_spec(policy, where)
        return ContextualSpec(model, specs, f"{Path(path).name} ({label})")
    params = policy.get("params", {}) or {}
    if not isinstance(name, str) or not isinstance(params, Mapping):
        raise ValueError(f"{where}: expected {{name, params}}")
    try:
        plain = make_policy(name, {str(k): float(v) for k, v in params.items()})
    except (PolicyConfigError, TypeError, ValueError) as error:
        raise ValueError(f"{where}: {error}") from None
    return Target.serving(plain, label=f"{Path(path).name} ({name})")
