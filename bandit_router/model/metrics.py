"""Named metrics a reward carries, and the objective that turns them into the learning reward.

An experiment declares its metrics (``quality``, ``cost_usd``, ...) with a kind (binary: 0 or
1; continuous: any finite number within optional bounds) and a direction (for people and
reports: which way is better). An objective is a linear scalarisation, reward = sum of
weight x metric, so the policy learns one number while the store keeps each metric's own
sufficient statistics (count, sum, sum of squares) per arm. The objective's range follows from
the metrics' bounds; a policy whose model cannot hold that range is refused at create, naming
one that can.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bandit_router.errors import InvalidArgument

#: Metrics one experiment may declare: each adds three fields per arm to its statistics hash
#: and a few bytes per reward to the script's argument.
MAX_METRICS = 16


class MetricKind(StrEnum):
    BINARY = "binary"
    CONTINUOUS = "continuous"


class Direction(StrEnum):
    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"


@dataclass(frozen=True)
class MetricSpec:
    """One declared metric (proto ``MetricSpec``)."""

    name: str
    kind: MetricKind = MetricKind.CONTINUOUS
    min: float | None = None
    max: float | None = None
    direction: Direction = Direction.MAXIMIZE

    @property
    def bounds(self) -> tuple[float, float]:
        """Inclusive range of an observation: [0, 1] for binary, else the declared bounds
        (infinite where undeclared)."""
        if self.kind is MetricKind.BINARY:
            return 0.0, 1.0
        low = -math.inf if self.min is None else self.min
        high = math.inf if self.max is None else self.max
        return low, high

    def check(self, value: float, where: str) -> None:
        """InvalidArgument naming ``where`` for NaN, infinite, out-of-range or non-binary."""
        if not math.isfinite(value):
            raise InvalidArgument(f"must be a finite number, got {value!r}", where)
        if self.kind is MetricKind.BINARY:
            if value not in (0.0, 1.0):
                raise InvalidArgument(f"binary metric: 0 or 1, got {value!r}", where)
            return
        low, high = self.bounds
        if not low <= value <= high:
            raise InvalidArgument(f"{value!r} is outside [{low:g}, {high:g}]", where)

    def to_json_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "kind": self.kind.value}
        if self.min is not None:
            data["min"] = self.min
        if self.max is not None:
            data["max"] = self.max
        data["direction"] = self.direction.value
        return data

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> MetricSpec:
        return cls(
            str(data["name"]),
            MetricKind(data.get("kind", "continuous")),
            None if data.get("min") is None else float(data["min"]),
            None if data.get("max") is None else float(data["max"]),
            Direction(data.get("direction", "maximize")),
        )


@dataclass(frozen=True)
class Objective:
    """reward = sum of weight x metric over ``weights`` (proto ``Objective``)."""

    weights: Mapping[str, float] = field(default_factory=dict)

    def range(self, metrics: Mapping[str, MetricSpec]) -> tuple[float, float]:
        """Smallest and largest reward the weights can give (infinite if a weighted metric
        is unbounded on the side that matters)."""
        low = high = 0.0
        for name, weight in self.weights.items():
            m_low, m_high = metrics[name].bounds
            ends = (weight * m_low, weight * m_high) if weight else (0.0, 0.0)
            low += min(ends)
            high += max(ends)
        return low, high

    def value(self, observed: Mapping[str, float]) -> float:
        """The scalarised reward; every weighted metric must be in ``observed``."""
        return math.fsum(weight * observed[name] for name, weight in self.weights.items())

    def to_json_dict(self) -> dict[str, Any]:
        return {"weights": dict(self.weights)}

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> Objective:
        return cls({str(k): float(v) for k, v in (data.get("weights") or {}).items()})


def check_reward_metrics(declared: Mapping[str, MetricSpec], observed: Mapping[str, float]) -> None:
    """Every observed metric is declared and valid; InvalidArgument naming ``metrics[name]``."""
    for name, value in observed.items():
        spec = declared.get(name)
        where = f"metrics[{name}]"
        if spec is None:
            known = ", ".join(sorted(declared)) or "none"
            raise InvalidArgument(f"undeclared metric (declared: {known})", where)
        spec.check(value, where)


def encode_metrics(observed: Mapping[str, float]) -> str:
    """The form the reward scripts read: ``name=value,...`` (names are [A-Za-z0-9_.-])."""
    return ",".join(f"{name}={float(value)!r}" for name, value in observed.items())


def decode_metrics(encoded: str) -> dict[str, float]:
    """The inverse of ``encode_metrics`` (the decision log's ``metrics`` field); a part that
    is not ``name=number`` is skipped: the log is read back, never trusted to be well formed."""
    observed: dict[str, float] = {}
    for part in encoded.split(","):
        name, sep, value = part.partition("=")
        if not (sep and name):
            continue
        try:
            observed[name] = float(value)
        except ValueError:
            continue
    return observed
