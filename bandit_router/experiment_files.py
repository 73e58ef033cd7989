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

import yaml

from .errors import InvalidArgument
from .experiments import Arm, ArmState, Experiment, LateRewardRule, PolicySpec

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


def experiment_from_mapping(data: Mapping[str, Any], where: str) -> Experiment:
    if not isinstance(data, Mapping):
        raise InvalidArgument("each experiment must be a mapping", where)
    unknown = sorted(set(data) - _KNOWN)
    if unknown:
        raise InvalidArgument(
            f"unknown key {unknown[0]!r}; known: {', '.join(sorted(_KNOWN))}", where
        )
    arms = []
    for index, raw in enumerate(data.get("arms") or []):
        if isinstance(raw, str):
            arms.append(Arm(raw))
        elif isinstance(raw, Mapping):
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
        params = policy_raw.get("params") or {}
        policy = PolicySpec(
            str(policy_raw.get("name", "thompson")),
            {str(k): _number(v, f"{where}.policy.params.{k}") for k, v in params.items()},
        )
    else:
        raise InvalidArgument("a policy is a name or {name, params}", f"{where}.policy")
    late = str(data.get("late_rewards", "ignore")).lower()
    if late not in ("ignore", "apply"):
        raise InvalidArgument(f"must be ignore or apply, got {late!r}", f"{where}.late_rewards")
    exploration = data.get("exploration") or {}
    holdout = data.get("holdout") or {}
    sticky = data.get("sticky") or {}
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
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as error:
        raise InvalidArgument(
            f"not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: {error}", str(path)
        ) from error
    if not isinstance(data, Mapping) or not isinstance(data.get("experiments"), list):
        raise InvalidArgument("expected a top-level 'experiments' list", str(path))
    return [
        experiment_from_mapping(item, f"{path}: experiments[{index}]")
        for index, item in enumerate(data["experiments"])
    ]
