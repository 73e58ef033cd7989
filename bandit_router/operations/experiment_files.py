"""Experiments declared in a YAML or TOML file, as operators write them by hand.

Durations read as seconds or with a unit (``90s``, ``10m``, ``1h``, ``7d``); arms as names or
mappings. Errors name the file, the experiment and the field, since this is read at start
and a typo should not cost anyone a debugging session.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bandit_router.errors import InvalidArgument
from bandit_router.model.experiments import (
    Arm,
    ArmState,
    ContextFeature,
    Experiment,
    LateRewardRule,
    PolicySpec,
)
from bandit_router.operations.yaml_files import load_yaml

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
}
_FEATURE_KEYS = {"name", "scale", "values", "required"}
_ARM_KEYS = {"name", "state", "prior_n", "prior_sum", "prior_sum_sq"}
_POLICY_KEYS = {"name", "params"}
_SECTION_KEYS = {
    "exploration": {"floor", "burn_in"},
    "holdout": {"share", "control_arm"},
    "sticky": {"enabled", "ttl"},
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


def experiment_from_mapping(data: Mapping[str, Any], where: str) -> Experiment:
    if not isinstance(data, Mapping):
        raise InvalidArgument("each experiment must be a mapping", where)
    refuse_unknown_keys(data, _KNOWN, f"{where}.")
    arms = []
    for index, raw in enumerate(data.get("arms") or []):
        if isinstance(raw, str):
            arms.append(Arm(raw))
        elif isinstance(raw, Mapping):
            refuse_unknown_keys(raw, _ARM_KEYS, f"{where}.arms[{index}].")
            state = str(raw.get("state", "active")).lower()
            if state not in ("active", "disabled"):
                raise InvalidArgument(
                    f"state must be active or disabled, got {state!r}",
                    f"{where}.arms[{index}].state",
                )
            arms.append(
                Arm(
                    str(raw.get("name", "")),
                    ArmState(state),
                    float(raw.get("prior_n", 0.0)),
                    float(raw.get("prior_sum", 0.0)),
                    float(raw.get("prior_sum_sq", 0.0)),
                )
            )
        else:
            raise InvalidArgument("an arm is a name or a mapping", f"{where}.arms[{index}]")
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
    optional: dict[str, Any] = {
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
        holdout_share=float(holdout.get("share", 0.0)),
        holdout_control_arm=str(holdout.get("control_arm", "")),
        sticky=bool(sticky.get("enabled", bool(sticky))),
        sticky_ttl=parse_duration(sticky.get("ttl", 0), f"{where}.sticky.ttl"),
        context_features=_context_features(data, where),
        **optional,
    )
    try:
        return experiment.validated()
    except InvalidArgument as error:
        field = error.field.replace("experiment.", f"{where}.", 1)
        raise InvalidArgument(error.message, field) from error


def load_experiments(path: str | Path) -> list[Experiment]:
    """Every experiment of ``{experiments: [...]}``; InvalidArgument naming file and field."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise InvalidArgument(f"cannot read: {error.strerror}", str(path)) from error
    if path.suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise InvalidArgument(f"not valid TOML: {error}", str(path)) from None
    else:
        data = load_yaml(text, str(path))
    if not isinstance(data, Mapping) or not isinstance(data.get("experiments"), list):
        raise InvalidArgument("expected a top-level 'experiments' list", str(path))
    refuse_unknown_keys(data, {"experiments"}, f"{path}: ")
    return [
        experiment_from_mapping(item, f"{path}: experiments[{index}]")
        for index, item in enumerate(data["experiments"])
    ]
