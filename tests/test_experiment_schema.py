"""The published JSON Schema of experiment files agrees with the loader and the documentation."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from bandit_router.errors import InvalidArgument
from bandit_router.operations.experiment_files import load_experiments
from policies import CONTEXTUAL_POLICY_NAMES, POLICY_NAMES

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "bandit_router" / "schema" / "experiments.schema.json"


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def readme_experiment_example(title: str = "Experiments", page: str = "concepts.md") -> str:
    """The YAML block of a section of a docs page: documentation must stay valid."""
    text = (ROOT / "docs" / page).read_text()
    section = text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert match, f"docs/{page} lost its example in {title!r}"
    return match.group(1)


def test_bundled_and_documented_files_are_valid(
    validator: Draft202012Validator, tmp_path: Path
) -> None:
    documented = tmp_path / "readme.yaml"
    documented.write_text(readme_experiment_example())
    contextual = tmp_path / "contextual.yaml"
    contextual.write_text(readme_experiment_example("Contextual experiments"))
    metrics = tmp_path / "metrics.yaml"
    metrics.write_text(readme_experiment_example("Metrics and an objective"))
    guardrails = tmp_path / "guardrails.yaml"
    guardrails.write_text(
        readme_experiment_example("Declaring guardrails in a file", "guardrails.md")
    )
    example = ROOT / "bandit_router" / "examples" / "experiments.yaml"
    for path in (example, documented, contextual, metrics, guardrails):
        data = yaml.safe_load(path.read_text())
        assert list(validator.iter_errors(data)) == [], path
        assert load_experiments(path)  # and the server accepts it


def test_policy_names_match_the_registry(validator: Draft202012Validator) -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    assert sorted(schema["$defs"]["policy_name"]["enum"]) == sorted(
        (*POLICY_NAMES, *CONTEXTUAL_POLICY_NAMES)
    )


#: Bad metrics, objectives and guardrails (issue 15): both the schema and the loader refuse.
_METRICS = [{"name": "error", "kind": "binary"}, {"name": "ms", "min": 0}]
_RULE = {"metric": "error", "statistic": "rate", "max": 0.05}
GUARDRAIL_FILES: list[dict[str, Any]] = [
    {"name": "x", "arms": ["a"], "metrics": [{"name": "q", "unit": "ms"}]},
    {"name": "x", "arms": ["a"], "metrics": [{"name": "q", "kind": "ternary"}]},
    {"name": "x", "arms": ["a"], "metrics": [{"name": "q", "direction": "up"}]},
    {"name": "x", "arms": ["a"], "metrics": [{"name": "e", "kind": "binary", "max": 1}]},
    {"name": "x", "arms": ["a"], "metrics": _METRICS, "objective": {"weight": {"ms": 1}}},
    {"name": "x", "arms": ["a"], "metrics": _METRICS, "objective": {"weights": {}}},
    {"name": "x", "arms": ["a"], "metrics": _METRICS, "objective": {"weights": {"ms": "x"}}},
    {
        "name": "x",
        "arms": ["a"],
        "metrics": _METRICS,
        "objective": {"constraints": [{"metric": "error", "max_mean": 0.1, "min_mean": 0.01}]},
    },
    {
        "name": "x",
        "arms": ["a"],
        "metrics": _METRICS,
        "objective": {"constraints": [{"metric": "error", "max_mean": 0.1, "confidence": 1}]},
    },
    {"name": "x", "arms": ["a"], "metrics": _METRICS, "guardrails": [{"metric": "error"}]},
    {
        "name": "x",
        "arms": ["a"],
        "metrics": _METRICS,
        "guardrails": [{**_RULE, "statistic": "median"}],
    },
    {"name": "x", "arms": ["a"], "metrics": _METRICS, "guardrails": [{**_RULE, "min": 0.01}]},
    {"name": "x", "arms": ["a"], "metrics": _METRICS, "guardrails": [{**_RULE, "window": "soon"}]},
    {"name": "x", "arms": ["a"], "metrics": _METRICS, "guardrails": [{**_RULE, "min_samples": 0}]},
    {
        "name": "x",
        "arms": ["a"],
        "metrics": _METRICS,
        "guardrails": [{**_RULE, "probe_share": 0.6}],
    },
    {"name": "x", "arms": ["a"], "metrics": _METRICS, "guardrails": [{**_RULE, "quantile": 0.9}]},
    {
        "name": "x",
        "arms": ["a"],
        "metrics": _METRICS,
        "guardrails": [{"metric": "ms", "statistic": "quantile", "max": 500}],
    },
    {"name": "x", "arms": ["a"], "metrics": _METRICS, "guardrails": [{**_RULE, "colour": "red"}]},
    {"name": "x", "arms": ["a"], "fallback_arm": "bad name"},
    {
        "name": "x",
        "arms": [{"name": "a", "guardrail_override": "sometimes"}],
        "metrics": _METRICS,
        "guardrails": [_RULE],
    },
]


@pytest.mark.parametrize(
    "experiment",
    [
        {"name": "x", "arms": []},
        {"name": "bad name", "arms": ["a"]},
        {"name": "x", "arms": ["a"], "policy": "softmax"},
        {"name": "x", "arms": ["a"], "colour": "red"},
        {"name": "x", "arms": ["a"], "reward_window": "soon"},
        {"name": "x", "arms": ["a"], "late_rewards": "maybe"},
        {"name": "x", "arms": [{"name": "a", "state": "sleeping"}]},
        {"name": "x", "arms": ["a"], "context_features": [{"name": "t", "colour": "red"}]},
        {"name": "x", "arms": ["a"], "context_features": [{"name": "t", "scale": 0}]},
        {"name": "x", "arms": ["a"], "context_features": [{"name": "t", "values": ["a", "a"]}]},
        {"name": "x", "arms": ["a"], "context_features": ["bad name"]},
        {"name": "x", "arms": ["a"], "policy": "lin_ts"},
        {"name": "x", "arms": ["a"], "policy": {"name": "logistic_ts"}, "context_features": []},
        *GUARDRAIL_FILES,
    ],
)
def test_schema_and_loader_refuse_the_same_files(
    validator: Draft202012Validator, tmp_path: Path, experiment: dict[str, Any]
) -> None:
    data = {"experiments": [experiment]}
    assert list(validator.iter_errors(data)), experiment
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InvalidArgument):
        load_experiments(path)


def test_cli_prints_the_schema() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bandit_router", "schema"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert json.loads(result.stdout)["title"] == "bandit-router experiments file"
