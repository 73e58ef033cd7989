"""Study files (YAML or TOML): read, validate, and turn into environments and policies.

Every mistake is reported as a ``StudyError`` naming the field by its path
(``policies[1].params.epsilon``) and, for YAML, the line, because a researcher editing a
study file needs to know where to look, not that a KeyError happened somewhere.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from policies.base import REWARD_MAGNITUDE_LIMIT, Policy, PolicyConfigError
from policies.contextual import ContextualPolicy
from simulations.contextual_environments import ContextualEnvironment
from simulations.environments import (
    Bernoulli,
    DelayModel,
    Drifting,
    Environment,
    Feedback,
    FixedDelay,
    Gaussian,
    GeometricDelay,
    MeanProcess,
    NoDelay,
    PiecewiseStationary,
    RewardModel,
    Stationary,
    UniformDelay,
    default_arm_names,
)
from simulations.slo import SloSetup, objective_schedule, parse_setup


class StudyError(ValueError):
    """A study file is invalid; ``field`` is the dotted path, ``line`` is 1-based or None."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        line: int | None = None,
        source: str | None = None,
    ) -> None:
        self.message = message
        self.field = field
        self.line = line
        self.source = source
        super().__init__(self.describe())

    def describe(self) -> str:
        where = self.source or "study"
        if self.line is not None:
            where += f":{self.line}"
        what = f"{self.field}: " if self.field else ""
        return f"{where}: {what}{self.message}"


@dataclass(frozen=True)
class PolicySpec:
    name: str
    params: dict[str, float]
    label: str


@dataclass(frozen=True)
class Study:
    name: str
    environment: Environment | ContextualEnvironment
    horizon: int
    runs: int
    seed: int
    policies: tuple[PolicySpec, ...]
    checkpoints: int = 200
    description: str = ""
    source: str | None = None
    env_summary: dict[str, Any] = field(default_factory=dict)
    #: ``type: slo`` studies: multi-metric arms, objective and guardrails (simulations.slo);
    #: ``environment`` then describes the objective's means (what regret is measured on).
    slo: SloSetup | None = None

    def build_policies(self) -> list[Policy | ContextualPolicy]:
        """Fresh policy objects from the serving registry, one per spec (contextual ones
        only in a contextual study)."""
        contextual = isinstance(self.environment, ContextualEnvironment)
        return [make_any_policy(s.name, s.params, contextual) for s in self.policies]


def make_policy(name: str, params: Mapping[str, float]) -> Policy:
    """The serving code's own policy; imported late so the registry is the single source."""
    from policies import create_policy

    return create_policy(name, params)


def make_any_policy(
    name: str, params: Mapping[str, float], contextual: bool
) -> Policy | ContextualPolicy:
    """A plain policy, or with ``contextual`` (a contextual study) a policy of either kind:
    the context-free baseline runs next to the contextual ones."""
    from policies import create_policy
    from policies.registry import is_contextual

    if contextual and is_contextual(name):
        return create_policy(name, params, contextual=True)
    return create_policy(name, params)


# -- reading ---------------------------------------------------------------------------------

LineMap = dict[str, int]


def load_study(path: str | Path) -> Study:
    """Read and validate a study file; the format follows the extension (.yaml/.yml/.toml)."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StudyError(f"cannot read study file: {exc.strerror}", source=source) from None
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        data, lines = _parse_yaml(text, source)
    elif suffix == ".toml":
        data, lines = _parse_toml(text, source)
    else:
        raise StudyError("unknown study format; use .yaml, .yml or .toml", source=source)
    return parse_study(data, source=source, lines=lines)


def _parse_yaml(text: str, source: str) -> tuple[Any, LineMap]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = None if mark is None else int(mark.line) + 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise StudyError(f"invalid YAML: {problem}", line=line, source=source) from None
    lines: LineMap = {}
    if node is not None:
        _index_yaml(node, "", lines)
    return data, lines


def _index_yaml(node: yaml.Node, path: str, lines: LineMap) -> None:
    lines[path] = int(node.start_mark.line) + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = str(key.value)
            child = f"{path}.{name}" if path else name
            lines[child] = int(key.start_mark.line) + 1
            _index_yaml(value, child, lines)
            lines[child] = int(key.start_mark.line) + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_yaml(item, f"{path}[{i}]", lines)


def _parse_toml(text: str, source: str) -> tuple[Any, LineMap]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"line (\d+)", str(exc))
        line = int(found.group(1)) if found else None
        raise StudyError(f"invalid TOML: {exc}", line=line, source=source) from None
    return data, {}


# -- validation ------------------------------------------------------------------------------


class _Fields:
    """Typed access to a parsed document that turns every problem into a StudyError."""

    def __init__(self, source: str | None, lines: LineMap) -> None:
        self.source = source
        self.lines = lines

    def error(self, path: str, message: str) -> StudyError:
        probe = path
        while probe and probe not in self.lines:
            parent = re.sub(r"(\.?[^.\[\]]+|\[\d+\])$", "", probe)
            if parent == probe:
                break
            probe = parent
        return StudyError(
            message, field=path or None, line=self.lines.get(probe), source=self.source
        )

    def mapping(self, value: Any, path: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(path, "expected a mapping of keys to values")
        return value

    def only(self, value: Mapping[str, Any], path: str, allowed: Sequence[str]) -> None:
        for key in value:
            if key not in allowed:
                child = f"{path}.{key}" if path else str(key)
                raise self.error(child, f"unknown field; allowed: {', '.join(allowed)}")

    def required(self, value: Mapping[str, Any], key: str, path: str) -> Any:
        if key not in value or value[key] is None:
            raise self.error(f"{path}.{key}" if path else key, "missing required field")
        return value[key]

    def number(
        self, value: Any, path: str, *, low: float = -math.inf, high: float = math.inf
    ) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self.error(path, f"expected a number, got {value!r}")
        if not low <= value <= high:
            raise self.error(path, f"{value!r} is outside [{low:g}, {high:g}]")
        return float(value)

    def integer(self, value: Any, path: str, *, low: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(path, f"expected an integer, got {value!r}")
        if value < low:
            raise self.error(path, f"must be >= {low}")
        return int(value)

    def text(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.error(path, f"expected a non-empty string, got {value!r}")
        return value

    def numbers(self, value: Any, path: str, **bounds: float) -> list[float]:
        if not isinstance(value, list) or not value:
            raise self.error(path, "expected a non-empty list of numbers")
        return [self.number(x, f"{path}[{i}]", **bounds) for i, x in enumerate(value)]

    def per_arm(self, value: Any, path: str, k: int, **bounds: float) -> np.ndarray[Any, Any]:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return np.full(k, self.number(value, path, **bounds))
        values = self.numbers(value, path, **bounds)
        if len(values) != k:
            raise self.error(path, f"expected one value per arm ({k}), got {len(values)}")
        return np.asarray(values)


TOP_FIELDS = (
    "name",
    "description",
    "environment",
    "horizon",
    "runs",
    "seed",
    "checkpoints",
    "policies",
    "objective",
    "guardrails",
    "fallback_arm",
)
ENV_FIELDS = (
    "type", "means", "sigma", "arms", "changes", "drift", "delay", "refresh_every",
    "drop_rate", "default_reward", "default_delay", "cost", "latency",
)  # fmt: skip


def parse_study(data: Any, *, source: str | None = None, lines: LineMap | None = None) -> Study:
    """Validate an already parsed study document (a mapping) and build the study."""
    f = _Fields(source, lines or {})
    top = f.mapping(data, "")
    f.only(top, "", TOP_FIELDS)
    env_data = f.mapping(f.required(top, "environment", ""), "environment")
    slo: SloSetup | None = None
    if env_data.get("type") == "slo":
        slo, summary = parse_setup(f, env_data, top)
        first, changes = objective_schedule(slo)
        process = PiecewiseStationary(first, changes) if changes else Stationary(first)
        environment: Environment | ContextualEnvironment = Environment(
            slo.arm_names, process, Gaussian(np.ones(1))
        )
    else:
        for key in ("objective", "guardrails", "fallback_arm"):
            if key in top:
                raise f.error(key, "only studies with environment type slo take this field")
        environment, summary = _environment(f, env_data)
    horizon = f.integer(f.required(top, "horizon", ""), "horizon", low=1)
    runs = f.integer(top.get("runs", 100), "runs", low=1)
    seed = f.integer(top.get("seed", 0), "seed", low=0)
    checkpoints = f.integer(top.get("checkpoints", 200), "checkpoints", low=2)
    raw_policies = f.required(top, "policies", "")
    if not isinstance(raw_policies, list) or not raw_policies:
        raise f.error("policies", "expected a non-empty list of policies")
    specs = tuple(
        _policy(f, item, f"policies[{i}]", environment) for i, item in enumerate(raw_policies)
    )
    labels = [spec.label for spec in specs]
    for i, label in enumerate(labels):
        if labels.index(label) != i:
            raise f.error(f"policies[{i}].label", f"duplicate label {label!r}; give each a label")
    name = f.text(top.get("name", Path(source).stem if source else "study"), "name")
    description = str(top.get("description", ""))
    return Study(
        name,
        environment,
        horizon,
        runs,
        seed,
        specs,
        checkpoints,
        description,
        source,
        summary,
        slo,
    )


def _environment(
    f: _Fields, env: Mapping[str, Any]
) -> tuple[Environment | ContextualEnvironment, dict[str, Any]]:
    kind = f.text(env.get("type", "bernoulli"), "environment.type")
    from simulations.contextual_study import FIELDS, contextual_environment

    if kind in FIELDS:
        return contextual_environment(f, env, kind)
    f.only(env, "environment", ENV_FIELDS)
    bounded = kind == "bernoulli"
    bounds = {"low": 0.0, "high": 1.0} if bounded else {}
    means = np.asarray(
        f.numbers(f.required(env, "means", "environment"), "environment.means", **bounds)
    )
    k = means.size
    if k < 2:
        raise f.error("environment.means", "need at least two arms")
    rewards: RewardModel
    if kind == "bernoulli":
        if "sigma" in env:
            raise f.error("environment.sigma", "only Gaussian environments have a noise level")
        rewards = Bernoulli()
    elif kind == "gaussian":
        sigma = f.per_arm(env.get("sigma", 1.0), "environment.sigma", k, low=1e-12)
        rewards = Gaussian(sigma)
    else:
        allowed = ", ".join(("bernoulli", "gaussian", *FIELDS))
        raise f.error("environment.type", f"unknown type {kind!r}; allowed: {allowed}")

    arms = env.get("arms")
    if arms is None:
        names = default_arm_names(k)
    else:
        if not isinstance(arms, list) or len(arms) != k:
            raise f.error("environment.arms", f"expected a list of {k} arm names")
        names = tuple(f.text(a, f"environment.arms[{i}]") for i, a in enumerate(arms))
        if len(set(names)) != k:
            raise f.error("environment.arms", "arm names must be unique")

    process = _mean_process(f, env, means, bounds)
    delay = _delay(f, env.get("delay"))
    feedback = _feedback(f, env)
    cost = None if env.get("cost") is None else f.per_arm(env["cost"], "environment.cost", k)
    latency = (
        None
        if env.get("latency") is None
        else f.per_arm(env["latency"], "environment.latency", k, low=0.0)
    )
    try:
        environment = Environment(names, process, rewards, delay, feedback, cost, latency)
    except ValueError as exc:
        field_name, _, message = str(exc).partition(": ")
        raise f.error(f"environment.{field_name}", message or str(exc)) from None
    summary = {
        "type": kind,
        "arms": list(names),
        "means": means.tolist(),
        "process": type(process).__name__,
        "delay": type(delay).__name__,
        "mean_delay": delay.mean,
        "refresh_every": feedback.refresh_every,
        "drop_rate": feedback.drop_rate,
        "default_reward": feedback.default_reward,
    }
    return environment, summary


def _mean_process(
    f: _Fields, env: Mapping[str, Any], means: np.ndarray[Any, Any], bounds: Mapping[str, float]
) -> MeanProcess:
    changes, drift = env.get("changes"), env.get("drift")
    if changes is not None and drift is not None:
        raise f.error("environment.drift", "choose either changes or drift, not both")
    if changes is not None:
        if not isinstance(changes, list) or not changes:
            raise f.error("environment.changes", "expected a list of {at, means}")
        segments: list[tuple[int, np.ndarray[Any, Any]]] = []
        last = 0
        for i, item in enumerate(changes):
            path = f"environment.changes[{i}]"
            change = f.mapping(item, path)
            f.only(change, path, ("at", "means"))
            at = f.integer(f.required(change, "at", path), f"{path}.at", low=1)
            if at <= last:
                raise f.error(f"{path}.at", "change steps must be increasing")
            last = at
            new = np.asarray(
                f.numbers(f.required(change, "means", path), f"{path}.means", **bounds)
            )
            if new.size != means.size:
                raise f.error(f"{path}.means", f"expected {means.size} means, got {new.size}")
            segments.append((at, new))
        return PiecewiseStationary(means, tuple(segments))
    if drift is not None:
        spec = f.mapping(drift, "environment.drift")
        f.only(spec, "environment.drift", ("sigma", "low", "high"))
        sigma = f.number(
            f.required(spec, "sigma", "environment.drift"), "environment.drift.sigma", low=1e-12
        )
        low = f.number(spec.get("low", bounds.get("low", -1e9)), "environment.drift.low", **bounds)
        high = f.number(
            spec.get("high", bounds.get("high", 1e9)), "environment.drift.high", **bounds
        )
        try:
            return Drifting(means, sigma, low, high)
        except ValueError as exc:
            field_name, _, message = str(exc).partition(": ")
            raise f.error(f"environment.drift.{field_name}", message) from None
    return Stationary(means)


def _delay(f: _Fields, raw: Any) -> DelayModel:
    if raw is None:
        return NoDelay()
    path = "environment.delay"
    if isinstance(raw, int) and not isinstance(raw, bool):
        return FixedDelay(f.integer(raw, path))
    spec = f.mapping(raw, path)
    kind = f.text(spec.get("type", "fixed"), f"{path}.type")
    builders: dict[str, tuple[tuple[str, ...], Callable[[], DelayModel]]] = {
        "fixed": (
            ("type", "steps"),
            lambda: FixedDelay(f.integer(f.required(spec, "steps", path), f"{path}.steps")),
        ),
        "geometric": (
            ("type", "mean", "max"),
            lambda: GeometricDelay(
                f.number(f.required(spec, "mean", path), f"{path}.mean", low=1e-9),
                None if spec.get("max") is None else f.integer(spec["max"], f"{path}.max", low=1),
            ),
        ),
        "uniform": (
            ("type", "low", "high"),
            lambda: UniformDelay(
                f.integer(f.required(spec, "low", path), f"{path}.low"),
                f.integer(f.required(spec, "high", path), f"{path}.high"),
            ),
        ),
    }
    if kind not in builders:
        raise f.error(
            f"{path}.type", f"unknown delay type {kind!r}; allowed: {', '.join(builders)}"
        )
    allowed, build = builders[kind]
    f.only(spec, path, allowed)
    try:
        return build()
    except ValueError as exc:
        if isinstance(exc, StudyError):
            raise
        field_name, _, message = str(exc).partition(": ")
        raise f.error(f"{path}.{field_name}", message) from None


def _feedback(f: _Fields, env: Mapping[str, Any]) -> Feedback:
    default = env.get("default_reward")
    return Feedback(
        refresh_every=f.integer(env.get("refresh_every", 1), "environment.refresh_every", low=1),
        drop_rate=f.number(
            env.get("drop_rate", 0.0), "environment.drop_rate", low=0.0, high=0.999999
        ),
        default_reward=None if default is None else f.number(default, "environment.default_reward"),
        default_delay=f.integer(env.get("default_delay", 0), "environment.default_delay"),
    )


def _policy(
    f: _Fields, raw: Any, path: str, environment: Environment | ContextualEnvironment
) -> PolicySpec:
    if isinstance(raw, str):
        raw = {"name": raw}
    spec = f.mapping(raw, path)
    f.only(spec, path, ("name", "label", "params"))
    name = f.text(f.required(spec, "name", path), f"{path}.name")
    params_raw = f.mapping(spec.get("params") or {}, f"{path}.params")
    params = {str(k): f.number(v, f"{path}.params.{k}") for k, v in params_raw.items()}
    try:
        policy = make_any_policy(name, params, isinstance(environment, ContextualEnvironment))
    except PolicyConfigError as exc:
        where = (
            f"{path}.name" if exc.field in ("name", "policy.name") else f"{path}.params.{exc.field}"
        )
        raise f.error(where, exc.message) from None
    low, high = policy.reward_bounds
    env_low, env_high = environment.reward_bounds
    # A Gaussian environment is unbounded in theory; the magnitude limit every policy has
    # (1e100) is never reached by its draws, so only a narrower model range is a mismatch.
    if (env_low < low and low > -REWARD_MAGNITUDE_LIMIT) or (
        env_high > high and high < REWARD_MAGNITUDE_LIMIT
    ):
        raise f.error(
            f"{path}.name",
            f"{name} models rewards in [{low:g}, {high:g}] but this environment produces "
            f"rewards in [{env_low:g}, {env_high:g}]",
        )
    label_default = (
        name
        if not params
        else f"{name}(" + ", ".join(f"{k}={v:g}" for k, v in params.items()) + ")"
    )
    label = f.text(spec.get("label", label_default), f"{path}.label")
    return PolicySpec(name, params, label)
