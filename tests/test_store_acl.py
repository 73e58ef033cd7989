"""The service under a least-privilege Redis user: exactly the documented ACL rule
(docs/operating.md) is enough for everything it does, and a user missing one command is
refused at start, never found by losing a reward. A real redis-server with real ACL users."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from bandit_router.client import BanditClient
from bandit_router.store.permissions import acl_rule, required_commands, script_commands
from bandit_router.v1 import admin_pb2

from .servers import ROOT, RedisServer, ServerThread, free_port

pytestmark = pytest.mark.integration


def create_user(store: RedisServer, rule: str) -> str:
    """Create the ACL user of ``rule`` (password "pw"); its redis:// URL."""
    admin = redis.Redis(port=store.port)
    admin.execute_command("ACL", "SETUSER", *rule.split())  # type: ignore[no-untyped-call]
    admin.acl_log_reset()
    admin.close()
    return f"redis://{rule.split()[0]}:pw@127.0.0.1:{store.port}/0"


def test_every_command_of_the_scripts_is_required_and_probed() -> None:
    assert script_commands() <= set(required_commands())
    assert {"HINCRBYFLOAT", "SET", "XADD", "EVALSHA", "SUBSCRIBE"} <= set(required_commands())


def test_the_docs_state_the_exact_rule() -> None:
    page = (ROOT / "docs" / "operating.md").read_text()
    assert f"ACL SETUSER {acl_rule()}" in page


def test_the_whole_service_runs_under_exactly_the_documented_user() -> None:
    store = RedisServer().start()
    url = create_user(store, acl_rule("bandit", "pw"))
    server = ServerThread(redis_url=url, refresh_interval=0.05, sweep_interval=0.1).start()
    try:
        with BanditClient(server.target, timeout=5, max_attempts=1) as client:
            client.create_experiment("acl", ["a", "b"], reward_window=1, default_reward=0.0)
            decisions = [client.route("acl") for _ in range(20)]
            for decision in decisions[:10]:
                assert client.reward(decision.decision_id, 1.0) == "APPLIED"
            client.call_admin("PinArm", admin_pb2.PinArmRequest(experiment="acl", arm="a"))
            client.call_admin("Unpin", admin_pb2.UnpinRequest(experiment="acl"))
            client.call_admin("GetReport", admin_pb2.GetReportRequest(experiment="acl"))
            client.call_admin("ListAudit", admin_pb2.ListAuditRequest(experiment="acl"))
            deadline = time.monotonic() + 10  # the sweeper credits the other 10 their default
            while sum(s.n for s in client.get_experiment("acl").statistics) < 20:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            exported = list(client.export_decisions("acl"))
            assert len(exported) >= 20
            client.call_admin("Reset", admin_pb2.ResetRequest(experiment="acl", reason="t"))
            client.delete_experiment("acl")
    finally:
        server.stop()
    admin = redis.Redis(port=store.port, decode_responses=True)
    refusals = admin.acl_log()
    admin.close()
    store.stop()
    assert refusals == [], refusals  # Redis recorded no refused command, key or channel


def test_a_user_missing_one_command_is_refused_at_start() -> None:
    store = RedisServer().start()
    url = create_user(store, acl_rule("partial", "pw") + " -hincrbyfloat")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "bandit_router", "serve", "--redis-url", url,
             "--listen", f"127.0.0.1:{free_port()}"],
            capture_output=True, text=True, timeout=60, cwd=Path(ROOT),
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
        assert "hincrbyfloat" in lines[0] and "Traceback" not in result.stderr
    finally:
        store.stop()
