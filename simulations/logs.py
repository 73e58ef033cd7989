"""Decision logs: the service's JSON-lines export (read and written here, canonically), plain
CSV logs, and Vowpal Wabbit's DSJSON for tools that speak it.

Readers validate every record and raise ``LogError`` naming the line and field, because a log
with one bad propensity silently poisons every importance-weighted estimate.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from policies.base import BoolArray
from simulations.environments import FloatArray, IntArray

REQUIRED_JSON_FIELDS = ("decision_id", "arm", "propensity")
#: How far a complete law may stray from summing to 1 (floats rounded by JSON and by mixing).
LAW_TOLERANCE = 1e-6
REQUIRED_CSV_COLUMNS = ("action", "reward", "propensity")
#: CSV columns with a meaning of their own; every other column is a context feature.
CSV_KNOWN_COLUMNS = (
    "action",
    "reward",
    "propensity",
    "decision_id",
    "experiment",
    "time",
    "unit_id",
)


class LogError(ValueError):
    """A decision log is invalid; ``line`` is 1-based (CSV header = line 1), ``field`` the key."""

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        field: str | None = None,
        source: str | None = None,
    ) -> None:
        self.message = message
        self.line = line
        self.field = field
        self.source = source
        super().__init__(self.describe())

    def describe(self) -> str:
        where = self.source or "log"
        if self.line is not None:
            where += f":{self.line}"
        what = f"{self.field}: " if self.field else ""
        return f"{where}: {what}{self.message}"


@dataclass(frozen=True)
class DecisionRecord:
    """One decision as the service exports it (``reward`` None: never observed)."""

    decision_id: str
    experiment: str
    arm: str
    propensity: float
    reason: str = "EXPLOIT"
    time: str = ""
    unit_id: str = ""
    context: dict[str, float] = field(default_factory=dict)
    state_version: int = 0
    reward: float | None = None
    default_reward_applied: bool = False
    probabilities: dict[str, float] = field(default_factory=dict)
    #: ``probabilities`` is the law of the whole decision procedure (an arm not listed had
    #: probability 0), so replay can check a target's support; False for older logs.
    probabilities_complete: bool = False
    #: Experiments with context_features: the feature vector the decision used (intercept
    #: first) and the request's categorical attributes; empty otherwise.
    features: list[float] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)
    #: The reward's named metrics (experiments that declare metrics); empty otherwise.
    metrics: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.features:
            extra["features"] = list(self.features)
        if self.attributes:
            extra["attributes"] = dict(self.attributes)
        if self.metrics:
            extra["metrics"] = dict(self.metrics)
        return {
            "decision_id": self.decision_id,
            "experiment": self.experiment,
            "arm": self.arm,
            "propensity": self.propensity,
            "reason": self.reason,
            "time": self.time,
            "unit_id": self.unit_id,
            "context": dict(self.context),
            "state_version": self.state_version,
            "reward": self.reward,
            "default_reward_applied": self.default_reward_applied,
            "probabilities": dict(self.probabilities),
            "probabilities_complete": self.probabilities_complete,
            **extra,
        }


# -- field checks ----------------------------------------------------------------------------


def _propensity(value: Any, line: int, source: str, name: str = "propensity") -> float:
    number = _float(value, line, source, name)
    if not 0.0 < number <= 1.0:
        raise LogError(f"{number!r} is outside (0, 1]", line=line, field=name, source=source)
    return number


def _float(value: Any, line: int, source: str, name: str) -> float:
    if isinstance(value, bool):
        raise LogError(f"expected a number, got {value!r}", line=line, field=name, source=source)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise LogError(
            f"expected a number, got {value!r}", line=line, field=name, source=source
        ) from None
    if not math.isfinite(number):
        raise LogError(
            f"expected a finite number, got {value!r}", line=line, field=name, source=source
        )
    return number


def _str(value: Any, line: int, source: str, name: str) -> str:
    if not isinstance(value, str):
        raise LogError(f"expected a string, got {value!r}", line=line, field=name, source=source)
    return value


def _float_map(value: Any, line: int, source: str, name: str) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise LogError("expected an object of numbers", line=line, field=name, source=source)
    return {str(k): _float(v, line, source, f"{name}.{k}") for k, v in value.items()}


# -- JSON lines ------------------------------------------------------------------------------


def parse_decision(obj: Any, line: int = 1, source: str = "log") -> DecisionRecord:
    """One exported decision object, validated."""
    if not isinstance(obj, Mapping):
        raise LogError("expected a JSON object", line=line, source=source)
    for key in REQUIRED_JSON_FIELDS:
        if key not in obj or obj[key] is None:
            raise LogError("missing required field", line=line, field=key, source=source)
    reward = obj.get("reward")
    probabilities = _float_map(obj.get("probabilities"), line, source, "probabilities")
    for arm, p in probabilities.items():
        if not 0.0 <= p <= 1.0:
            raise LogError(
                f"{p!r} is outside [0, 1]", line=line, field=f"probabilities.{arm}", source=source
            )
    state_version = obj.get("state_version", 0)
    if isinstance(state_version, bool) or not isinstance(state_version, int):
        raise LogError(
            f"expected an integer, got {state_version!r}",
            line=line,
            field="state_version",
            source=source,
        )
    applied = _bool(
        obj.get("default_reward_applied", False), line, source, "default_reward_applied"
    )
    complete = _bool(
        obj.get("probabilities_complete", False), line, source, "probabilities_complete"
    )
    propensity = _propensity(obj["propensity"], line, source)
    if complete:
        _check_law(probabilities, _str(obj["arm"], line, source, "arm"), propensity, line, source)
    return DecisionRecord(
        decision_id=_str(obj["decision_id"], line, source, "decision_id"),
        experiment=_str(obj.get("experiment", ""), line, source, "experiment"),
        arm=_str(obj["arm"], line, source, "arm"),
        propensity=propensity,
        reason=_str(obj.get("reason", "EXPLOIT"), line, source, "reason"),
        time=_str(obj.get("time", ""), line, source, "time"),
        unit_id=_str(obj.get("unit_id", ""), line, source, "unit_id"),
        context=_float_map(obj.get("context"), line, source, "context"),
        state_version=state_version,
        reward=None if reward is None else _float(reward, line, source, "reward"),
        default_reward_applied=applied,
        probabilities=probabilities,
        probabilities_complete=complete,
        features=_float_list(obj.get("features"), line, source, "features"),
        attributes=_str_map(obj.get("attributes"), line, source, "attributes"),
        metrics=_float_map(obj.get("metrics"), line, source, "metrics"),
    )


def _float_list(value: Any, line: int, source: str, name: str) -> list[float]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise LogError(
            f"expected a list of numbers, got {value!r}", line=line, field=name, source=source
        )
    return [_float(v, line, source, f"{name}[{i}]") for i, v in enumerate(value)]


def _str_map(value: Any, line: int, source: str, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise LogError(f"expected a mapping, got {value!r}", line=line, field=name, source=source)
    return {str(k): _str(v, line, source, f"{name}.{k}") for k, v in value.items()}


def _bool(value: Any, line: int, source: str, name: str) -> bool:
    if not isinstance(value, bool):
        raise LogError(
            f"expected true or false, got {value!r}", line=line, field=name, source=source
        )
    return value


def _check_law(
    probabilities: Mapping[str, float], arm: str, propensity: float, line: int, source: str
) -> None:
    """A complete law sums to 1 and gives the logged arm its logged propensity: a log that
    contradicts itself would make every support check and weight wrong."""
    total = sum(probabilities.values())
    if abs(total - 1.0) > LAW_TOLERANCE:
        raise LogError(
            f"sum to {total!r}, not 1, although probabilities_complete is true",
            line=line,
            field="probabilities",
            source=source,
        )
    logged = probabilities.get(arm, 0.0)
    if abs(logged - propensity) > LAW_TOLERANCE:
        raise LogError(
            f"{propensity!r} differs from probabilities.{arm} = {logged!r}",
            line=line,
            field="propensity",
            source=source,
        )


def read_decision_log(path: str | Path) -> list[DecisionRecord]:
    """Read the service's JSON-lines export; blank lines are skipped."""
    source = str(path)
    with _open(path) as handle:
        return list(_iter_jsonl(handle, source))


def _iter_jsonl(handle: TextIO, source: str) -> Iterator[DecisionRecord]:
    for number, text in enumerate(handle, start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LogError(f"invalid JSON: {exc.msg}", line=number, source=source) from None
        yield parse_decision(obj, number, source)


def write_decision_log(records: Iterable[DecisionRecord], path: str | Path) -> None:
    with Path(path).open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record.to_json(), separators=(",", ":")) + "\n")


# -- CSV -------------------------------------------------------------------------------------


def read_csv_log(path: str | Path) -> list[DecisionRecord]:
    """A plain CSV with ``action``, ``reward``, ``propensity``; other unknown columns are context.

    An empty reward cell means the reward was never observed.
    """
    source = str(path)
    with _open(path) as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        for column in REQUIRED_CSV_COLUMNS:
            if column not in header:
                raise LogError("missing required column", line=1, field=column, source=source)
        context_columns = [c for c in header if c not in CSV_KNOWN_COLUMNS]
        records = []
        for row in reader:
            line = reader.line_num
            action = row["action"]
            if action is None or action == "":
                raise LogError("missing value", line=line, field="action", source=source)
            reward_text = row["reward"]
            records.append(
                DecisionRecord(
                    decision_id=row.get("decision_id") or str(line - 1),
                    experiment=row.get("experiment") or "",
                    arm=action,
                    propensity=_propensity(row["propensity"], line, source),
                    time=row.get("time") or "",
                    unit_id=row.get("unit_id") or "",
                    context={c: _float(row[c], line, source, c) for c in context_columns},
                    reward=None
                    if reward_text in (None, "")
                    else _float(reward_text, line, source, "reward"),
                )
            )
    return records


def read_log(path: str | Path) -> list[DecisionRecord]:
    """Either format, by extension: ``.csv`` is CSV, anything else JSON lines."""
    if Path(path).suffix.lower() == ".csv":
        return read_csv_log(path)
    return read_decision_log(path)


def _open(path: str | Path) -> TextIO:
    try:
        return Path(path).open(encoding="utf-8", newline="")
    except OSError as exc:
        raise LogError(f"cannot read log: {exc.strerror}", source=str(path)) from None


# -- arrays for the estimators ---------------------------------------------------------------


@dataclass(frozen=True)
class LoggedData:
    """A log as arrays: what the estimators need and nothing else.

    ``skipped`` counts decisions left out because their reward was never observed; they
    cannot be scored, and leaving them out assumes rewards go missing independently of arm
    and outcome (state it next to any estimate).

    ``laws`` holds, per decision, the logger's probability of every arm under the whole
    decision procedure, where the log has it (``complete``); rows without it are NaN, and
    their support cannot be checked. ``reasons`` says which rule decided each decision.
    """

    arm_names: tuple[str, ...]
    arms: IntArray
    rewards: FloatArray
    propensities: FloatArray
    contexts: FloatArray  # (n, features); zero columns when the log has no context
    context_names: tuple[str, ...]
    skipped: int
    laws: FloatArray | None = None  # (n, arms); None: no decision has a complete law
    reasons: tuple[str, ...] = ()
    #: Per decision, the request's whole ``context`` and ``attributes`` as logged (declared
    #: or not): a contextual target rebuilds its own feature vector from them. Empty
    #: tuples when the data did not come from records.
    context_maps: tuple[Mapping[str, float], ...] = ()
    attribute_maps: tuple[Mapping[str, str], ...] = ()

    @property
    def complete(self) -> BoolArray:
        """Per decision: is its whole-procedure law known?"""
        if self.laws is None:
            return np.zeros(self.size, dtype=bool)
        return np.asarray(~np.isnan(self.laws[:, 0]), dtype=bool)

    def subset(self, rows: BoolArray) -> LoggedData:
        """The decisions where ``rows`` is true (in order); ``skipped`` is kept."""
        return LoggedData(
            arm_names=self.arm_names,
            arms=self.arms[rows],
            rewards=self.rewards[rows],
            propensities=self.propensities[rows],
            contexts=self.contexts[rows],
            context_names=self.context_names,
            skipped=self.skipped,
            laws=None if self.laws is None else self.laws[rows],
            reasons=tuple(r for r, keep in zip(self.reasons, rows, strict=True) if keep),
            context_maps=_kept(self.context_maps, rows),
            attribute_maps=_kept(self.attribute_maps, rows),
        )

    @property
    def size(self) -> int:
        return int(self.arms.shape[0])

    @property
    def n_arms(self) -> int:
        return len(self.arm_names)

    @classmethod
    def from_records(
        cls, records: Sequence[DecisionRecord], arm_names: Sequence[str] | None = None
    ) -> LoggedData:
        """Arrays of the scored decisions; arms are ordered as given, else as first seen in
        the logged probabilities, else sorted by name."""
        names = list(arm_names) if arm_names is not None else _arm_order(records)
        index = {name: i for i, name in enumerate(names)}
        for number, record in enumerate(records, start=1):
            if record.arm not in index:
                raise LogError(
                    f"decision {number} ({record.decision_id}): "
                    f"arm {record.arm!r} is not one of {names}",
                    field="arm",
                )
        scored = [r for r in records if r.reward is not None]
        context_names = sorted({key for r in scored for key in r.context})
        laws = None
        if any(r.probabilities_complete for r in scored):
            laws = np.full((len(scored), len(names)), np.nan)
            for row, record in enumerate(scored):
                if record.probabilities_complete:
                    laws[row] = [record.probabilities.get(name, 0.0) for name in names]
        return cls(
            arm_names=tuple(names),
            arms=np.asarray([index[r.arm] for r in scored], dtype=np.int64),
            rewards=np.asarray([r.reward for r in scored], dtype=np.float64),
            propensities=np.asarray([r.propensity for r in scored], dtype=np.float64),
            contexts=np.asarray(
                [[r.context.get(c, 0.0) for c in context_names] for r in scored], dtype=np.float64
            ).reshape(len(scored), len(context_names)),
            context_names=tuple(context_names),
            skipped=len(records) - len(scored),
            laws=laws,
            reasons=tuple(r.reason for r in scored),
            context_maps=tuple(r.context for r in scored),
            attribute_maps=tuple(r.attributes for r in scored),
        )


def _kept(values: tuple[Any, ...], rows: BoolArray) -> tuple[Any, ...]:
    if not values:
        return values
    return tuple(v for v, keep in zip(values, rows, strict=True) if keep)


def _arm_order(records: Sequence[DecisionRecord]) -> list[str]:
    seen: dict[str, None] = {}
    for record in records:
        for arm in record.probabilities:
            seen.setdefault(arm, None)
    for arm in sorted({r.arm for r in records}):
        seen.setdefault(arm, None)
    return list(seen)


# -- DSJSON ----------------------------------------------------------------------------------


def dsjson_event(record: DecisionRecord, arm_names: Sequence[str]) -> dict[str, Any]:
    """One decision in VW's DSJSON cb format.

    ``p`` is the law of the whole decision procedure when the record has it (arms it does
    not list get 0). In older records, probabilities missing from the record are filled by
    sharing the rest of the mass evenly over the other arms, so ``p`` still sums to 1 as VW
    expects.
    """
    chosen = arm_names.index(record.arm)
    absent = 0.0 if record.probabilities_complete else None
    probabilities = [record.probabilities.get(name, absent) for name in arm_names]
    probabilities[chosen] = record.propensity
    missing = [i for i, p in enumerate(probabilities) if p is None]
    if missing:
        known = sum(p for p in probabilities if p is not None)
        share = max(0.0, 1.0 - known) / len(missing)
        for i in missing:
            probabilities[i] = share
    order = [chosen] + [i for i in range(len(arm_names)) if i != chosen]
    event: dict[str, Any] = {}
    if record.reward is not None:
        event["_label_cost"] = -record.reward
        event["_label_probability"] = record.propensity
        event["_label_Action"] = chosen + 1
        event["_labelIndex"] = chosen
        event["o"] = [{"v": record.reward, "EventId": record.decision_id, "ActionTaken": False}]
    else:
        event["o"] = []
    event.update(
        {
            "Timestamp": record.time,
            "Version": "1",
            "EventId": record.decision_id,
            "a": [i + 1 for i in order],
            "c": {
                **record.context,
                **({"_features": list(record.features)} if record.features else {}),
                **record.attributes,
                "_multi": [{"arm": name} for name in arm_names],
            },
            "p": [probabilities[i] for i in order],
        }
    )
    return event


def write_dsjson(
    records: Iterable[DecisionRecord], path: str | Path, arm_names: Sequence[str] | None = None
) -> None:
    """Export for ``vw --cb_adf --dsjson``; arm order as in ``LoggedData.from_records``."""
    records = list(records)
    names = list(arm_names) if arm_names is not None else _arm_order(records)
    with Path(path).open("w", encoding="utf-8") as handle:
        for record in records:
            if record.arm not in names:
                raise LogError(f"arm {record.arm!r} is not one of {names}", field="arm")
            handle.write(json.dumps(dsjson_event(record, names), separators=(",", ":")) + "\n")
