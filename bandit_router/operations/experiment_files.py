"""Experiments declared in a YAML or TOML file, as operators write them by hand.

Durations read as seconds or with a unit (``90s``, ``10m``, ``1h``, ``7d``); arms as names or
mappings. Errors name the file, the experiment and the field, since this is read at start
and a typo should not cost anyone a debugging session.
"""

from __future__ import annotations

import dataclasses
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
    Stopping,
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
    "stopping",
    # What `get` writes of the live state (read-only): accepted so that `get -o yaml` output
    # applies as it is, and never read.
    "status",
}
_FEATURE_KEYS = {"name", "scale", "values", "required"}
_ARM_KEYS = {"name", "state", "prior_n", "prior_sum", "prior_sum_sq"}
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
    optional: dict[str, Any] = {}
    if data.get("stopping") is not None:
        optional["stopping"] = _stopping(_section(data, "stopping", where), f"{where}.stopping")
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
        extra = {
            key: value
            for key, value in (
                ("prior_n", arm.prior_n),
                ("prior_sum", arm.prior_sum),
                ("prior_sum_sq", arm.prior_sum_sq),
            )
            if value
        }
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
    return data
