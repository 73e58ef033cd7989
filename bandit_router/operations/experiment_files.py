"""Experiments declared in a YAML or TOML file, as operators write them by hand.

Durations read as seconds or with a unit (``90s``, ``10m``, ``1h``, ``7d``); arms as names or
mappings. Errors name the file, the experiment and the field, since this is read at start
and a typo should not cost anyone a debugging session.

The sections of issue 15 (``metrics``, ``objective``, ``guardrails``, ``fallback_arm`` and
each arm's ``guardrail_override``) are read here into the domain objects of
``model.metrics`` and ``model.guardrails``, which validate them; an arm's ``quarantined``
state is the service's (``convert.keep_guardrail_state``), written by ``get`` and accepted
back so that its output applies as it is.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from bandit_router.errors import InvalidArgument
from bandit_router.model.experiments import (
    Arm,
    ArmState,
    ContextFeature,
    Experiment,
    LateRewardRule,
    PolicySpec,
    Stopping,
)
from bandit_router.model.guardrails import (
    DEFAULT_CONFIDENCE,
    DEFAULT_MIN_SAMPLES,
    DEFAULT_PROBE_SHARE,
    DEFAULT_WINDOW,
    Constraint,
    GuardrailRule,
    Override,
    Statistic,
)
from bandit_router.model.metrics import Direction, MetricKind, MetricSpec, Objective
from bandit_router.operations.yaml_files import load_yaml

_E = TypeVar("_E", bound=StrEnum)
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_KNOWN = {
    "name",
    "description",
    "arms",
    "policy",
    "reward_window",
    "default_reward",
    "late_rewards",
    "late_reward_grace",
    "reward_min",
    "reward_max",
    "exploration",
    "holdout",
    "sticky",
    "drift_discount",
    "context_features",
    "stopping",
    "metrics",
    "objective",
    "guardrails",
    "fallback_arm",
    # What `get` writes of the live state (read-only): accepted so that `get -o yaml` output
    # applies as it is, and never read.
    "status",
}
_FEATURE_KEYS = {"name", "scale", "values", "required"}
_ARM_KEYS = {"name", "state", "prior_n", "prior_sum", "prior_sum_sq", "guardrail_override"}
_METRIC_KEYS = {"name", "kind", "min", "max", "direction"}
_OBJECTIVE_KEYS = {"weights", "constraints"}
_CONSTRAINT_KEYS = {"metric", "max_mean", "min_mean", "confidence"}
_GUARDRAIL_KEYS = {
    "metric",
    "statistic",
    "quantile",
    "max",
    "min",
    "window",
    "min_samples",
    "confidence",
    "probe_share",
}
_POLICY_KEYS = {"name", "params"}
_SECTION_KEYS = {
    "exploration": {"floor", "burn_in", "max_share"},
    "holdout": {"share", "control_arm"},
    "sticky": {"enabled", "ttl"},
    "stopping": {"delta", "epsilon", "min_samples", "commit"},
}


def parse_duration(value: Any, field: str) -> float:
    if isinstance(value, bool):
        raise InvalidArgument(f"expected a duration, got {value!r}", field)
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise InvalidArgument(f"expected a duration like 30s, 10m, 1h or 7d, got {value!r}", field)
    return float(match.group(1)) * _UNITS[match.group(2)]


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgument(f"expected a number, got {value!r}", field)
    return float(value)


def refuse_unknown_keys(data: Mapping[str, Any], known: set[str], prefix: str) -> None:
    """A key the loader does not read is a typo or a misplaced setting: silently dropping
    it (``exploration: {max_share: 0.1}``) would run the experiment without it."""
    unknown = sorted(str(key) for key in set(data) - known)
    if unknown:
        raise InvalidArgument(
            f"unknown key; known: {', '.join(sorted(known))}", f"{prefix}{unknown[0]}"
        )


def _section(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if key == "sticky" and isinstance(value, bool):
        return {"enabled": value}
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"expected a mapping, got {value!r}", f"{where}.{key}")
    refuse_unknown_keys(value, _SECTION_KEYS[key], f"{where}.{key}.")
    return value


def _stopping(section: Mapping[str, Any], where: str) -> Stopping:
    default = Stopping()
    min_samples = section.get("min_samples", default.min_samples)
    if isinstance(min_samples, bool) or not isinstance(min_samples, int):
        raise InvalidArgument(
            f"expected a whole number, got {min_samples!r}", f"{where}.min_samples"
        )
    commit = section.get("commit", default.commit)
    if not isinstance(commit, bool):
        raise InvalidArgument(f"expected true or false, got {commit!r}", f"{where}.commit")
    return Stopping(
        delta=_number(section.get("delta", default.delta), f"{where}.delta"),
        epsilon=_number(section.get("epsilon", default.epsilon), f"{where}.epsilon"),
        min_samples=min_samples,
        commit=commit,
    )


def _max_share(section: Mapping[str, Any], where: str) -> dict[str, float]:
    """``exploration.max_share``: a mapping of arm name -> share (checked by validation)."""
    raw = section.get("max_share") or {}
    if not isinstance(raw, Mapping):
        raise InvalidArgument(f"expected a mapping of arm -> share, got {raw!r}", where)
    return {str(arm): _number(share, f"{where}[{arm}]") for arm, share in raw.items()}


def _context_features(data: Mapping[str, Any], where: str) -> tuple[ContextFeature, ...]:
    """``context_features:`` entries: a name (numeric), or {name, scale | values, required}."""
    raw = data.get("context_features") or []
    if not isinstance(raw, list):
        raise InvalidArgument("expected a list of features", f"{where}.context_features")
    features = []
    for index, item in enumerate(raw):
        at = f"{where}.context_features[{index}]"
        if isinstance(item, str):
            features.append(ContextFeature(item))
            continue
        if not isinstance(item, Mapping):
            raise InvalidArgument("a feature is a name or a mapping", at)
        refuse_unknown_keys(item, _FEATURE_KEYS, f"{at}.")
        values = item.get("values") or []
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise InvalidArgument("expected a list of strings", f"{at}.values")
        required = item.get("required", False)
        if not isinstance(required, bool):
            raise InvalidArgument(f"expected true or false, got {required!r}", f"{at}.required")
        features.append(
            ContextFeature(
                str(item.get("name", "")),
                _number(item.get("scale", 1.0), f"{at}.scale"),
                tuple(values),
                required,
            )
        )
    return tuple(features)


def _whole(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"expected a whole number, got {value!r}", field)
    return int(value)  # an int already; int() makes that visible to every mypy version


def _optional_number(data: Mapping[str, Any], key: str, at: str) -> float | None:
    value = data.get(key)
    return None if value is None else _number(value, f"{at}.{key}")


def _choice(value: Any, kind: type[_E], field: str) -> _E:
    """A member of ``kind`` by its file spelling (``rate``, ``hold_active``), any case."""
    if isinstance(value, str):
        for member in kind:
            if member.value == value.lower():
                return member
    choices = " | ".join(member.value for member in kind)
    raise InvalidArgument(f"expected {choices}, got {value!r}", field)


def _entries(
    data: Mapping[str, Any], key: str, known: set[str], where: str
) -> list[tuple[str, Mapping[str, Any]]]:
    """The mappings of the list ``data[key]``, each with the path that names it in errors
    (``...guardrails[1]``); a missing or null list is empty."""
    raw = data.get(key)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidArgument(f"expected a list, got {raw!r}", f"{where}.{key}")
    entries = []
    for index, item in enumerate(raw):
        at = f"{where}.{key}[{index}]"
        if not isinstance(item, Mapping):
            raise InvalidArgument(f"expected a mapping, got {item!r}", at)
        refuse_unknown_keys(item, known, f"{at}.")
        entries.append((at, item))
    return entries


def _metrics(data: Mapping[str, Any], where: str) -> tuple[MetricSpec, ...]:
    """``metrics:`` entries: {name, kind: binary | continuous, min, max, direction}."""
    return tuple(
        MetricSpec(
            str(item.get("name", "")),
            _choice(item.get("kind", "continuous"), MetricKind, f"{at}.kind"),
            _optional_number(item, "min", at),
            _optional_number(item, "max", at),
            _choice(item.get("direction", "maximize"), Direction, f"{at}.direction"),
        )
        for at, item in _entries(data, "metrics", _METRIC_KEYS, where)
    )


def _objective(
    data: Mapping[str, Any], where: str
) -> tuple[Objective | None, tuple[Constraint, ...]]:
    """``objective: {weights: {metric: weight}, constraints: [...]}``. Constraints without
    weights are allowed (the learning reward is then ``value``), as in the proto."""
    raw = data.get("objective")
    if raw is None:
        return None, ()
    at = f"{where}.objective"
    if not isinstance(raw, Mapping):
        raise InvalidArgument(f"expected a mapping {{weights, constraints}}, got {raw!r}", at)
    refuse_unknown_keys(raw, _OBJECTIVE_KEYS, f"{at}.")
    objective = None
    if "weights" in raw:
        weights = raw["weights"] or {}
        if not isinstance(weights, Mapping):
            raise InvalidArgument(
                f"expected a mapping of metric -> weight, got {weights!r}", f"{at}.weights"
            )
        objective = Objective(
            {str(k): _number(v, f"{at}.weights[{k}]") for k, v in weights.items()}
        )
    constraints = tuple(
        Constraint(
            str(item.get("metric", "")),
            _optional_number(item, "max_mean", entry),
            _optional_number(item, "min_mean", entry),
            _number(item.get("confidence", DEFAULT_CONFIDENCE), f"{entry}.confidence"),
        )
        for entry, item in _entries(raw, "constraints", _CONSTRAINT_KEYS, at)
    )
    return objective, constraints


def _guardrails(data: Mapping[str, Any], where: str) -> tuple[GuardrailRule, ...]:
    """``guardrails:`` entries; a window is a duration like the file's others (``10m``)."""
    return tuple(
        GuardrailRule(
            metric=str(item.get("metric", "")),
            statistic=_choice(item.get("statistic", "mean"), Statistic, f"{at}.statistic"),
            quantile=_number(item.get("quantile", 0.0), f"{at}.quantile"),
            max=_optional_number(item, "max", at),
            min=_optional_number(item, "min", at),
            window=parse_duration(item.get("window", DEFAULT_WINDOW), f"{at}.window"),
            min_samples=_whole(item.get("min_samples", DEFAULT_MIN_SAMPLES), f"{at}.min_samples"),
            confidence=_number(item.get("confidence", DEFAULT_CONFIDENCE), f"{at}.confidence"),
            probe_share=_number(item.get("probe_share", DEFAULT_PROBE_SHARE), f"{at}.probe_share"),
        )
        for at, item in _entries(data, "guardrails", _GUARDRAIL_KEYS, where)
    )


def _arm(raw: Any, at: str) -> Arm:
    """An arm: a name, or {name, state, prior_n, prior_sum, prior_sum_sq, guardrail_override}.
    ``state: quarantined`` is what ``get`` writes; the service keeps its own guardrail state
    whatever a file says (``convert.keep_guardrail_state``)."""
    if isinstance(raw, str):
        return Arm(raw)
    if not isinstance(raw, Mapping):
        raise InvalidArgument("an arm is a name or a mapping", at)
    refuse_unknown_keys(raw, _ARM_KEYS, f"{at}.")
    return Arm(
        str(raw.get("name", "")),
        _choice(raw.get("state", "active"), ArmState, f"{at}.state"),
        _number(raw.get("prior_n", 0.0), f"{at}.prior_n"),
        _number(raw.get("prior_sum", 0.0), f"{at}.prior_sum"),
        _number(raw.get("prior_sum_sq", 0.0), f"{at}.prior_sum_sq"),
        override=_choice(
            raw.get("guardrail_override", "none"), Override, f"{at}.guardrail_override"
        ),
    )


def experiment_from_mapping(data: Mapping[str, Any], where: str) -> Experiment:
    if not isinstance(data, Mapping):
        raise InvalidArgument("each experiment must be a mapping", where)
    refuse_unknown_keys(data, _KNOWN, f"{where}.")
    raw_arms = data.get("arms") or []
    if not isinstance(raw_arms, list):
        raise InvalidArgument("expected a list of arms", f"{where}.arms")
    arms = [_arm(raw, f"{where}.arms[{index}]") for index, raw in enumerate(raw_arms)]
    policy_raw = data.get("policy", "thompson")
    if isinstance(policy_raw, str):
        policy = PolicySpec(policy_raw, {})
    elif isinstance(policy_raw, Mapping):
        refuse_unknown_keys(policy_raw, _POLICY_KEYS, f"{where}.policy.")
        params = policy_raw.get("params") or {}
        if not isinstance(params, Mapping):
            raise InvalidArgument("expected a mapping of numbers", f"{where}.policy.params")
        policy = PolicySpec(
            str(policy_raw.get("name", "thompson")),
            {str(k): _number(v, f"{where}.policy.params.{k}") for k, v in params.items()},
        )
    else:
        raise InvalidArgument("a policy is a name or {name, params}", f"{where}.policy")
    late = str(data.get("late_rewards", "ignore")).lower()
    if late not in ("ignore", "apply"):
        raise InvalidArgument(f"must be ignore or apply, got {late!r}", f"{where}.late_rewards")
    exploration = _section(data, "exploration", where)
    holdout = _section(data, "holdout", where)
    sticky = _section(data, "sticky", where)
    optional: dict[str, Any] = {}
    if data.get("stopping") is not None:
        optional["stopping"] = _stopping(_section(data, "stopping", where), f"{where}.stopping")
    objective, constraints = _objective(data, where)
    optional |= {
        key: _number(data[key], f"{where}.{key}")
        for key in ("default_reward", "reward_min", "reward_max", "drift_discount")
        if data.get(key) is not None
    }
    experiment = Experiment(
        name=str(data.get("name", "")),
        arms=tuple(arms),
        policy=policy,
        reward_window=parse_duration(data.get("reward_window", 3600), f"{where}.reward_window"),
        late_rewards=LateRewardRule(late),
        late_reward_grace=parse_duration(
            data.get("late_reward_grace", 86400), f"{where}.late_reward_grace"
        ),
        description=str(data.get("description", "")),
        exploration_floor=float(exploration.get("floor", 0.0)),
        burn_in=int(exploration.get("burn_in", 0)),
        max_share=_max_share(exploration, f"{where}.exploration.max_share"),
        holdout_share=float(holdout.get("share", 0.0)),
        holdout_control_arm=str(holdout.get("control_arm", "")),
        sticky=bool(sticky.get("enabled", bool(sticky))),
        sticky_ttl=parse_duration(sticky.get("ttl", 0), f"{where}.sticky.ttl"),
        context_features=_context_features(data, where),
        metrics=_metrics(data, where),
        objective=objective,
        constraints=constraints,
        guardrails=_guardrails(data, where),
        fallback_arm=str(data.get("fallback_arm", "")),
        **optional,
    )
    try:
        return experiment.validated()
    except InvalidArgument as error:
        field = error.field.replace("experiment.", f"{where}.", 1)
        raise error.at(field) from error


def load_experiments(path: str | Path) -> list[Experiment]:
    """Every experiment of ``{experiments: [...]}``; InvalidArgument naming file and field."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise InvalidArgument(f"cannot read: {error.strerror}", str(path)) from error
    return experiments_from_text(text, str(path), toml=path.suffix == ".toml")


def experiments_from_text(text: str, source: str, *, toml: bool = False) -> list[Experiment]:
    """The experiments of a document already read (a file, or standard input for ``-f -``);
    ``source`` names it in errors. YAML unless ``toml`` (JSON is YAML)."""
    if toml:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise InvalidArgument(f"not valid TOML: {error}", source) from None
    else:
        data = load_yaml(text, source)
    if not isinstance(data, Mapping) or not isinstance(data.get("experiments"), list):
        raise InvalidArgument("expected a top-level 'experiments' list", source)
    refuse_unknown_keys(data, {"experiments"}, f"{source}: ")
    return [
        experiment_from_mapping(item, f"{source}: experiments[{index}]")
        for index, item in enumerate(data["experiments"])
    ]


def format_duration(seconds: float) -> str | float:
    """``seconds`` as a file writes it: the largest unit that divides it exactly (``10m``,
    ``36h``, ``250ms``), else plain seconds; ``parse_duration`` reads it back unchanged."""
    for unit in ("d", "h", "m", "s"):
        count = seconds / _UNITS[unit]
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    milliseconds = seconds * 1000
    if seconds > 0 and milliseconds == int(milliseconds):
        return f"{int(milliseconds)}ms"
    return seconds


def experiment_to_mapping(experiment: Experiment) -> dict[str, Any]:
    """The experiment as a file declares it: the inverse of ``experiment_from_mapping``, so
    ``get ... -o yaml | apply -f -`` changes nothing. Defaults are left out; operator state
    (pin, pause, version) is not configuration and is not written here."""
    arms: list[Any] = []
    for arm in experiment.arms:
        extra: dict[str, Any] = {
            key: value
            for key, value in (
                ("prior_n", arm.prior_n),
                ("prior_sum", arm.prior_sum),
                ("prior_sum_sq", arm.prior_sum_sq),
            )
            if value
        }
        if arm.override is not Override.NONE:
            extra["guardrail_override"] = arm.override.value
        if arm.state is ArmState.ACTIVE and not extra:
            arms.append(arm.name)
        else:
            arms.append({"name": arm.name, "state": arm.state.value, **extra})
    data: dict[str, Any] = {"name": experiment.name}
    if experiment.description:
        data["description"] = experiment.description
    data["arms"] = arms
    policy = experiment.policy
    data["policy"] = (
        {"name": policy.name, "params": dict(policy.params)} if policy.params else policy.name
    )
    data["reward_window"] = format_duration(experiment.reward_window)
    for key in ("default_reward", "reward_min", "reward_max", "drift_discount"):
        if getattr(experiment, key) is not None:
            data[key] = getattr(experiment, key)
    if experiment.late_rewards is not LateRewardRule.IGNORE:
        data["late_rewards"] = experiment.late_rewards.value
    if experiment.late_reward_grace != 86400:
        data["late_reward_grace"] = format_duration(experiment.late_reward_grace)
    exploration: dict[str, Any] = {
        key: value
        for key, value in (
            ("floor", experiment.exploration_floor),
            ("burn_in", experiment.burn_in),
        )
        if value
    }
    if experiment.max_share:
        exploration["max_share"] = dict(experiment.max_share)
    if exploration:
        data["exploration"] = exploration
    if experiment.holdout_share or experiment.holdout_control_arm:
        data["holdout"] = {
            "share": experiment.holdout_share,
            "control_arm": experiment.holdout_control_arm,
        }
    if experiment.sticky or experiment.sticky_ttl:
        data["sticky"] = {"enabled": experiment.sticky}
        if experiment.sticky_ttl:
            data["sticky"]["ttl"] = format_duration(experiment.sticky_ttl)
    if experiment.stopping is not None:
        data["stopping"] = dataclasses.asdict(experiment.stopping)
    return data | _guardrail_sections(experiment)


def _guardrail_sections(experiment: Experiment) -> dict[str, Any]:
    """``metrics``, ``objective``, ``guardrails`` and ``fallback_arm`` as a file writes them
    (defaults left out, windows as durations)."""
    data: dict[str, Any] = {}
    if experiment.metrics:
        data["metrics"] = [
            {
                "name": metric.name,
                "kind": metric.kind.value,
                **{k: v for k, v in (("min", metric.min), ("max", metric.max)) if v is not None},
                "direction": metric.direction.value,
            }
            for metric in experiment.metrics
        ]
    objective: dict[str, Any] = {}
    if experiment.objective is not None:
        objective["weights"] = dict(experiment.objective.weights)
    if experiment.constraints:
        objective["constraints"] = [
            {
                "metric": constraint.metric,
                **_set(("max_mean", constraint.max_mean), ("min_mean", constraint.min_mean)),
                **_changed(("confidence", constraint.confidence, DEFAULT_CONFIDENCE)),
            }
            for constraint in experiment.constraints
        ]
    if objective:
        data["objective"] = objective
    if experiment.guardrails:
        data["guardrails"] = [_rule_mapping(rule) for rule in experiment.guardrails]
    if experiment.fallback_arm:
        data["fallback_arm"] = experiment.fallback_arm
    return data


def _set(*pairs: tuple[str, float | None]) -> dict[str, float]:
    return {key: value for key, value in pairs if value is not None}


def _changed(*triples: tuple[str, Any, Any]) -> dict[str, Any]:
    return {key: value for key, value, default in triples if value != default}


def _rule_mapping(rule: GuardrailRule) -> dict[str, Any]:
    data: dict[str, Any] = {"metric": rule.metric, "statistic": rule.statistic.value}
    if rule.statistic is Statistic.QUANTILE:
        data["quantile"] = rule.quantile
    data |= _set(("max", rule.max), ("min", rule.min))
    if rule.window != DEFAULT_WINDOW:
        data["window"] = format_duration(rule.window)
    return data | _changed(
        ("min_samples", rule.min_samples, DEFAULT_MIN_SAMPLES),
        ("confidence", rule.confidence, DEFAULT_CONFIDENCE),
        ("probe_share", rule.probe_share, DEFAULT_PROBE_SHARE),
    )
