"""The command line follows the conventions people know (clig.dev, kubectl).

``--version``; shell completion through argcomplete; a description and an example in every
``--help``, with no reStructuredText markup; ``... | head`` stops quietly; and
``get experiment X -o yaml | apply -f -`` round-trips through a real shell pipe against a real
server, changing nothing.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bandit_router import __version__
from bandit_router.cli import build_parser, main
from bandit_router.client import BanditClient

from .servers import ROOT, ServerThread

COMMAND = [sys.executable, "-m", "bandit_router"]


def parsers(
    parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield words, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, (*words, name))


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"bandit-router {__version__}\n"


def test_every_command_has_a_description_and_an_example_and_no_rst() -> None:
    found = list(parsers(build_parser()))
    assert len(found) > 20  # the walk reached the subcommands
    for words, parser in found:
        text = parser.format_help()
        name = " ".join(("bandit-router", *words))
        assert parser.description, f"{name} has no description"
        assert "examples:\n  bandit-router" in text, f"{name} --help shows no example"
        assert f"  {name}" in text.split("examples:")[1], f"{name}: its examples run others"
        for markup in ("``", ":class:", ":func:", ":meth:", ".. "):
            assert markup not in text, f"{name} --help has reStructuredText {markup!r}"


def test_completion_script_and_completions(tmp_path: Path) -> None:
    script = subprocess.run(
        [*COMMAND, "completion", "bash"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert script.returncode == 0, script.stderr
    assert "complete " in script.stdout and "bandit-router" in script.stdout
    # What the shell does on TAB: run the command with argcomplete's variables set.
    out = tmp_path / "completions"
    line = "bandit-router ap"
    completed = subprocess.run(
        COMMAND,
        env={
            **os.environ,
            "_ARGCOMPLETE": "1",
            "_ARGCOMPLETE_IFS": "\n",
            "COMP_LINE": line,
            "COMP_POINT": str(len(line)),
            "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
        },
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert completed.returncode == 0, completed.stderr
    assert out.read_text().split() == ["apply"]
    line = "bandit-router pin --t"
    completed = subprocess.run(
        COMMAND,
        env={
            **os.environ,
            "_ARGCOMPLETE": "1",
            "_ARGCOMPLETE_IFS": "\n",
            "COMP_LINE": line,
            "COMP_POINT": str(len(line)),
            "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
        },
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert sorted(out.read_text().split()) == [
        "--target",
        "--timeout",
        "--tls-ca",
        "--tls-cert",
        "--tls-key",
        "--token",
        "--ttl",
    ]


@pytest.mark.parametrize(
    ("argv", "status"),
    # argparse itself drops a help text it cannot write, and exits 0.
    [(["schema"], 141), (["--help"], 0), (["get", "--help"], 0)],
)
def test_a_closed_pipe_ends_the_command_quietly(argv: list[str], status: int) -> None:
    """``bandit-router schema | head -0``: the reader is gone before the first write."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will read: every write fails with EPIPE
    try:
        result = subprocess.run(
            [*COMMAND, *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
    finally:
        os.close(write_end)
    assert result.stderr == ""  # no traceback, no "Broken pipe", no "Exception ignored"
    assert result.returncode == status


def test_head_reads_the_start_and_the_command_stays_quiet() -> None:
    """A real ``| head -n 3``: head exits after three lines, the writer follows quietly."""
    writer = subprocess.Popen(
        [*COMMAND, "schema"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT
    )
    assert writer.stdout is not None and writer.stderr is not None
    head = subprocess.run(
        ["head", "-n", "3"], stdin=writer.stdout, capture_output=True, text=True, timeout=60
    )
    writer.stdout.close()
    assert writer.wait(60) in (0, 141)  # 0 when everything fitted in the pipe's buffer
    assert writer.stderr.read() == b""
    assert len(head.stdout.splitlines()) == 3


@pytest.mark.integration
def test_get_yaml_applies_back_unchanged(embedded_server: ServerThread) -> None:
    target = embedded_server.target
    with BanditClient(target, timeout=5) as client:
        client.create_experiment(
            "roundtrip",
            ["a", "b", "c"],
            policy="epsilon_greedy",
            params={"epsilon": 0.2},
            reward_window=600,
            description="checks get | apply",
        )
        client.set_arm_state("roundtrip", "c", "disabled")
        client.pin_arm("roundtrip", "b", ttl=3600, reason="pinned before the round trip")
        decision = client.route("roundtrip", "u1")
        client.reward(decision.decision_id, 1.0)
        before = client.get_experiment("roundtrip")

    env = {**os.environ, "BANDIT_ROUTER_TARGET": target}
    get = subprocess.Popen(
        [*COMMAND, "get", "experiment", "roundtrip", "-o", "yaml"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    assert get.stdout is not None and get.stderr is not None
    apply = subprocess.run(
        [*COMMAND, "apply", "-f", "-", "-o", "json"],
        stdin=get.stdout,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=ROOT,
    )
    get.stdout.close()
    assert get.wait(60) == 0, get.stderr.read()
    assert apply.returncode == 0, apply.stderr
    assert apply.stderr == "update roundtrip\n"

    shown = subprocess.run(
        [*COMMAND, "get", "experiment", "roundtrip", "-o", "yaml"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=ROOT,
    )
    document = yaml.safe_load(shown.stdout)
    (experiment,) = document["experiments"]
    status = experiment.pop("status")
    # The file's words, not the wire's: what an operator writes by hand.
    assert experiment == {
        "name": "roundtrip",
        "description": "checks get | apply",
        "arms": ["a", "b", {"name": "c", "state": "disabled"}],
        "policy": {"name": "epsilon_greedy", "params": {"epsilon": 0.2}},
        "reward_window": "10m",
    }
    assert "ARM_STATE_" not in shown.stdout and "600s" not in shown.stdout
    assert status["version"] == before.experiment.version + 1  # one update, nothing else
    assert status["pin"]["arm"] == "b"  # operator state survives apply
    with BanditClient(target, timeout=5) as client:
        after = client.get_experiment("roundtrip")

    # Statistics kept (decision counts are written behind the call, so only the sums).
    def sums(response: Any) -> list[tuple[str, float, float, float]]:
        return [(s.arm, s.n, s.sum, s.sum_sq) for s in response.statistics]

    assert sums(after) == sums(before) == [("a", 0, 0, 0), ("b", 1, 1, 1), ("c", 0, 0, 0)]
    after.experiment.ClearField("version")
    after.experiment.ClearField("updated_at")
    before.experiment.ClearField("version")
    before.experiment.ClearField("updated_at")
    assert after.experiment == before.experiment


def test_stdin_file_errors_name_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    document = "experiments:\n- name: x\n  arms: [a]\n  colour: red\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(document))
    assert main(["create", "-f", "-", "--dry-run"]) == 2
    assert capsys.readouterr().err.startswith(
        "error: <stdin>: experiments[0].colour: unknown key; known: "
    )
