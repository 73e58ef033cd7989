"""Operator files (experiments, tokens) read strictly: duplicate keys refused, errors quoted
by position only.

PyYAML keeps the last of two equal keys without a word, so a second ``tokens:`` appended to a
tokens file silently replaced the first list and locked its operators out. And a PyYAML error
prints the offending line, which in a tokens file may be a credential: errors here name the
file, line and column and the problem, never the text.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from yaml.constructor import ConstructorError

from bandit_router.errors import InvalidArgument
from bandit_router.telemetry.logs import clip

_MERGE_TAG = "tag:yaml.org,2002:merge"


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping with the same key twice."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:  # ``<<: *defaults`` may be overridden by design
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader reports it below
                continue
            if first is not None:
                raise ConstructorError(
                    None,
                    None,
                    f"duplicate key {clip(repr(key), 64)} (first on line {first + 1}); "
                    "the loader would keep only the last",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def describe_yaml_error(error: yaml.YAMLError) -> str:
    """Where and what, without quoting the file (which may hold a secret)."""
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        return f"{where}{error.problem or error.context or 'malformed'}"
    return type(error).__name__


def load_yaml(text: str, source: str) -> Any:
    """The YAML document of ``text``; InvalidArgument naming ``source`` if malformed or if a
    mapping repeats a key."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # a SafeLoader subclass: safe
    except yaml.YAMLError as error:
        raise InvalidArgument(f"not valid YAML: {describe_yaml_error(error)}", source) from None


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {clip(repr(key), 64)}")
        result[key] = value
    return result


def load_json(text: str, source: str) -> Any:
    """The JSON document of ``text``; InvalidArgument naming ``source`` on a malformed
    document or a repeated key (positions only, never the text)."""
    try:
        return json.loads(text, object_pairs_hook=_refuse_duplicates)
    except json.JSONDecodeError as error:
        raise InvalidArgument(
            f"not valid JSON: line {error.lineno}, column {error.colno}: {error.msg}", source
        ) from None
    except ValueError as error:
        raise InvalidArgument(f"not valid JSON: {error}", source) from None
