"""What the deployment tests share: the Dockerfile read the way Docker reads it, and a
server configuration built from environment variables the way ``bandit-router serve`` does.

The deploy files (Dockerfile, compose, Kubernetes) each restate some of the server's settings
(ports, drain times, file paths); reading them all back through one parser and the server's
own configuration code is what keeps them in agreement.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bandit_router.serving.config import ServerConfig, add_server_arguments, config_from_args

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
PREFIX = "/opt/bandit-router"  # the image's install prefix
UID = 10001  # the image's user


@dataclass
class Stage:
    """One FROM ... section: its instructions in order, as (keyword, argument text)."""

    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [text for kw, text in self.instructions if kw == keyword]

    def one(self, keyword: str) -> str:
        found = self.all(keyword)
        assert len(found) == 1, (keyword, found)
        return found[0]


def logical_lines(text: str) -> list[str]:
    """Instructions with their continuation lines joined; comments and blank lines dropped
    (Docker drops comment lines inside a continuation too)."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    assert not current, "the Dockerfile ends inside a continuation"
    return lines


def expand(text: str, variables: dict[str, str]) -> str:
    """Docker's ``$NAME`` / ``${NAME}`` substitution (no defaults or modifiers are used)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return variables.get(name, "")

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, text)


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """The global ARGs and the stages, FROM images expanded."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(text):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(expand(words[0], global_args), name))
        elif not stages:
            assert keyword == "ARG", f"only ARG may precede FROM, not {keyword}"
            key, _, default = rest.partition("=")
            global_args[key] = default
        else:
            stages[-1].instructions.append((keyword, rest))
    return global_args, stages


def env_pairs(text: str, variables: dict[str, str]) -> dict[str, str]:
    """``ENV a=1 b=$a`` as a mapping, each value expanded against what came before."""
    pairs: dict[str, str] = {}
    for word in shlex.split(text):
        key, sep, value = word.partition("=")
        assert sep, f"ENV in the key=value form only: {word!r}"
        pairs[key] = expand(value, {**variables, **pairs})
    return pairs


def exec_form(text: str) -> list[str]:
    """A JSON-array (exec form) CMD/ENTRYPOINT: no shell between Docker and the process, so
    SIGTERM reaches the server itself and drain works."""
    value = json.loads(text)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), text
    return [str(v) for v in value]


def dockerfile_stages() -> tuple[Stage, Stage]:
    _, found = parse_dockerfile(DOCKERFILE.read_text())
    assert len(found) == 2, "a build stage and a runtime stage"
    return found[0], found[1]


def image_env() -> dict[str, str]:
    """The final stage's ENV (``$PATH`` left unexpanded)."""
    _, runtime = dockerfile_stages()
    return env_pairs(runtime.one("ENV"), {"PATH": "$PATH"})


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


def server_config(
    env: Mapping[str, str], args: Sequence[str], monkeypatch: pytest.MonkeyPatch
) -> ServerConfig:
    """What ``bandit-router serve ARGS`` makes of exactly these ``BANDIT_ROUTER_*`` variables
    (the flags read their defaults from the environment when the parser is built)."""
    for key in os.environ:
        if key.startswith("BANDIT_ROUTER_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    parser = argparse.ArgumentParser()
    add_server_arguments(parser)
    return config_from_args(parser.parse_args(list(args)))
