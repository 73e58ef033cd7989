"""The operator CLI end to end, and the audit log it leaves behind.

Every operator verb is run against a real server with auth on (an operator token); the audit
log, read back with ``bandit-router audit EXPERIMENT -o json`` in a separate process, must name
each action with its principal, arguments and reason. Destructive verbs refuse to act without
``--yes`` when no terminal can confirm, and ``--dry-run`` changes nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bandit_router.cli import main as cli_main
from bandit_router.client import BanditClient
from bandit_router.operations.auth import hash_token, new_token
from bandit_router.v1 import admin_pb2

from .servers import ROOT, ServerThread
from .test_controls_helpers import create, statistics, stop_thread

pytestmark = pytest.mark.integration

PRINCIPAL = "ops-carol"


class Cli:
    """Runs ``bandit-router`` verbs against one server with the operator token."""

    def __init__(self, target: str, token: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.target = target
        self.token = token
        self.capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        """In process (fast): exit status, stdout, stderr."""
        self.capsys.readouterr()
        code = cli_main([*argv, "--target", self.target, "--token", self.token])
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    def subprocess(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """As an operator runs it: its own process, stdin not a terminal."""
        return subprocess.run(
            [sys.executable, "-m", "bandit_router", *argv, "--target", self.target],
            env={"BANDIT_ROUTER_TOKEN": self.token, "PATH": "/usr/bin:/bin"},
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture
def cli(
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Cli]:
    monkeypatch.delenv("BANDIT_ROUTER_TOKENS", raising=False)
    token = new_token()
    path = tmp_path / "tokens.yaml"
    entry = {"principal": PRINCIPAL, "role": "operator", "sha256": hash_token(token)}
    path.write_text(yaml.safe_dump({"tokens": [entry]}))
    server = ServerThread(redis_url=redis_url, refresh_interval=0.05, tokens_file=str(path))
    server.start()
    try:
        with BanditClient(server.target, token=token, timeout=5) as client:
            create(client, "checkout", ["a", "b", "c"])
        yield Cli(server.target, token, capsys)
    finally:
        stop_thread(server)


def state(cli: Cli) -> Any:
    """Everything a verb could change: config version, arms, pin, pause, stats, audit size."""
    with BanditClient(cli.target, token=cli.token, timeout=5) as client:
        response = client.get_experiment("checkout")
        audit = client.call_admin("ListAudit", admin_pb2.ListAuditRequest(experiment="checkout"))
        return (
            response.experiment.version,
            [(a.name, a.state) for a in response.experiment.arms],
            response.experiment.pin.arm,
            response.experiment.paused,
            statistics(client, "checkout"),
            len(audit.entries),
        )


# (argv, action in the audit log, arguments expected in its JSON, reason)
SCRIPT: list[tuple[list[str], str, dict[str, Any], str]] = [
    (["pin", "checkout", "b", "--ttl", "30m"], "pin", {"arm": "b", "ttl": 1800.0}, "incident 7"),
    (["unpin", "checkout"], "unpin", {"unit_id": ""}, "resolved"),
    (["pin", "checkout", "c", "--unit", "qa-1"], "pin", {"arm": "c", "unit_id": "qa-1"}, "QA 12"),
    (["unpin", "checkout", "--unit", "qa-1"], "unpin", {"unit_id": "qa-1"}, "QA done"),
    (["disable", "checkout", "a"], "disable_arm", {"arm": "a"}, "5xx from a"),
    (["enable", "checkout", "a"], "enable_arm", {"arm": "a"}, "a fixed"),
    (
        ["add-arm", "checkout", "d", "--prior-n", "10", "--prior-sum", "7"],
        "add_arm",
        {"arm": "d", "prior_n": 10.0, "prior_sum": 7.0},
        "new model",
    ),
    (["remove-arm", "checkout", "d", "--yes"], "remove_arm", {"arm": "d"}, "withdrawn"),
    (["pause", "checkout", "--arm", "b"], "pause", {"arm": "b"}, "data outage"),
    (["resume", "checkout"], "resume", {}, "data back"),
    (["reset", "checkout", "--yes"], "reset", {}, "new season"),
]


def test_every_verb_is_audited_with_principal_arguments_and_reason(cli: Cli) -> None:
    for argv, _, _, reason in SCRIPT:
        code, out, err = cli(*argv, "--reason", reason, "-o", "json")
        assert code == 0, (argv, err)
        assert json.loads(out), argv  # the changed experiment (or the snapshot) as JSON

    code, out, _ = cli("snapshots", "checkout", "-o", "json")
    snapshots = json.loads(out)["snapshots"]
    assert [s["reason"] for s in snapshots] == ["new season"]
    assert snapshots[0]["principal"] == PRINCIPAL

    result = cli.subprocess("audit", "checkout", "-o", "json")
    assert result.returncode == 0, result.stderr
    entries = list(reversed(json.loads(result.stdout)["entries"]))  # oldest first
    assert [e["action"] for e in entries] == ["create"] + [action for _, action, _, _ in SCRIPT]
    assert {e["principal"] for e in entries} == {PRINCIPAL}
    versions = []
    for entry, (argv, action, expected, reason) in zip(entries[1:], SCRIPT, strict=True):
        arguments = json.loads(entry["arguments"])
        assert entry["reason"] == reason, action
        assert expected.items() <= arguments.items(), (argv, arguments)
        assert entry["time"].endswith("Z")
        versions.append(arguments.get("version"))
    assert json.loads(entries[-1]["arguments"])["snapshot"] == snapshots[0]["id"]
    config_versions = [v for v in versions if v is not None]
    assert config_versions == sorted(config_versions)  # each change bumped the version

    # The table form is what an operator reads at a terminal.
    code, out, _ = cli("audit", "checkout")
    assert code == 0
    assert out.splitlines()[0].split() == ["TIME", "PRINCIPAL", "ACTION", "ARGUMENTS", "REASON"]
    assert "disable_arm" in out and "5xx from a" in out
    # The create entry's arguments (the whole experiment) are cut, not the table's width.
    assert "create" in out
    assert max(len(line) for line in out.splitlines()) < 160, out
    assert all(", ...}" in line for line in out.splitlines() if " create " in line)


def test_delete_is_audited_and_the_log_outlives_the_experiment(cli: Cli) -> None:
    code, _, err = cli("delete", "experiment", "checkout", "--yes", "--reason", "cleanup")
    assert code == 0, err
    code, out, _ = cli("audit", "checkout", "-o", "json")
    newest = json.loads(out)["entries"][0]
    assert (newest["action"], newest["principal"], newest["reason"]) == (
        "delete",
        PRINCIPAL,
        "cleanup",
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["remove-arm", "checkout", "a"],
        ["reset", "checkout"],
        ["delete", "experiment", "checkout"],
    ],
)
def test_destructive_verbs_refuse_without_yes_and_dry_run_changes_nothing(
    cli: Cli, argv: list[str]
) -> None:
    before = state(cli)
    refused = cli.subprocess(*argv)
    assert refused.returncode == 2, refused
    assert "refusing" in refused.stderr and "--yes" in refused.stderr
    assert refused.stdout == ""
    code, _, err = cli(*argv, "--dry-run")
    assert code == 0
    assert "dry run" in err
    assert state(cli) == before


def test_dry_run_of_the_other_verbs_changes_nothing(cli: Cli) -> None:
    before = state(cli)
    for argv, _, _, _ in SCRIPT:
        if "--yes" in argv:
            argv = [arg for arg in argv if arg != "--yes"]
        code, _, err = cli(*argv, "--dry-run")
        assert code == 0, (argv, err)
        assert "dry run" in err, argv
    assert state(cli) == before


def test_bad_operator_input_exits_non_zero_with_a_message(cli: Cli) -> None:
    code, out, err = cli("pin", "checkout", "nope")
    assert code == 1 and out == ""
    assert "NOT_FOUND" in err and "nope" in err
    code, _, err = cli("disable", "checkout", "a")
    assert code == 0
    code, _, err = cli("pin", "checkout", "a")
    assert code == 1 and "disabled" in err
    code, _, err = cli("disable", "checkout", "b")
    assert code == 0
    code, _, err = cli("disable", "checkout", "c")
    assert code == 1 and "last active arm" in err
