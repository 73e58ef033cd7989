"""An operator action and its audit entry are one script call: never a change unaudited.

The entry used to be a second call after the change, so a store failure between the two (a
timeout, a failover, a replica that died there) left a pin, a quarantine or a deletion that
the audit log did not show. Here a real redis-server's MONITOR shows which commands each
script ran: the change's write and the audit stream's XADD belong to the same EVALSHA.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from bandit_router.client import BanditClient

from .servers import RedisServer, ServerThread

pytestmark = pytest.mark.integration

AUDIT = "br:{audited}:audit"
CONFIG = "br:{audited}:config"
END = "end-of-actions"


class Monitored:
    """A server on a Redis whose every command is being recorded (MONITOR)."""

    def __init__(self, server: ServerThread, port: int, thread: threading.Thread) -> None:
        self.server = server
        self.port = port
        self.thread = thread
        self.commands: list[dict[str, Any]] = []

    def commands_until_now(self) -> list[dict[str, Any]]:
        """Every command so far, once MONITOR has printed them all."""
        redis.Redis(port=self.port).echo(END)
        self.thread.join(10)
        assert not self.thread.is_alive()
        return self.commands


@pytest.fixture
def monitored(redis_server: RedisServer) -> Iterator[Monitored]:
    redis_server.flush()
    commands: list[dict[str, Any]] = []
    watcher = redis.Redis(port=redis_server.port)
    started = threading.Event()

    def watch() -> None:
        with watcher.monitor() as monitor:  # type: ignore[no-untyped-call]
            started.set()
            for command in monitor.listen():
                commands.append(command)
                if command["command"] == f"ECHO {END}":
                    return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    assert started.wait(5)
    server = ServerThread(redis_url=redis_server.url).start()
    recorded = Monitored(server, redis_server.port, thread)
    commands = recorded.commands
    try:
        yield recorded
    finally:
        server.stop()
        if thread.is_alive():
            redis.Redis(port=redis_server.port).echo(END)
            thread.join(10)
        watcher.close()


def script_runs(commands: list[dict[str, Any]]) -> list[list[str]]:
    """The commands each EVALSHA ran (MONITOR prints a script's own calls right after it, as
    sent by ``lua``; a script runs alone, so nothing else comes in between)."""
    runs: list[list[str]] = []
    inside = False
    for command in commands:
        if command["client_type"] == "lua":
            assert inside, f"a script's command outside a script run: {command}"
            runs[-1].append(command["command"])
        else:
            inside = command["command"].startswith("EVALSHA")
            if inside:
                runs.append([])
    return runs


def test_each_action_writes_its_change_and_its_entry_in_one_script(monitored: Monitored) -> None:
    with BanditClient(monitored.server.target, timeout=5) as client:
        client.create_experiment("audited", ["a", "b"], reason="open")
        client.pin_arm("audited", "a", reason="incident")
        client.add_arm("audited", "c", reason="new model")
        client.reset("audited", reason="fresh start")
        audit = [(entry.action, entry.reason) for entry in client.list_audit("audited")]
        client.delete_experiment("audited", reason="done")
    commands = monitored.commands_until_now()
    assert audit == [
        ("reset", "fresh start"),
        ("add_arm", "new model"),
        ("pin", "incident"),
        ("create", "open"),
    ]
    # Every audit entry was written by a script, never by a call of its own...
    direct = [c for c in commands if c["client_type"] != "lua" and AUDIT in c["command"]]
    assert not [c for c in direct if c["command"].startswith("XADD")], direct
    # ...and by the very script that made the change it records.
    audited = [run for run in script_runs(commands) if any(AUDIT in c for c in run)]
    changes = {
        "create": f"SET {CONFIG}",
        "pin": f"SET {CONFIG}",
        "add_arm": f"SET {CONFIG}",
        "reset": "LPUSH br:{audited}:snapshots",
        "delete": f"DEL {CONFIG}",
    }
    assert len(audited) == len(changes)
    for run, action in zip(audited, changes.values(), strict=True):
        entry = next(c for c in run if c.startswith(f"XADD {AUDIT}"))
        assert any(c.startswith(action) for c in run), (action, run)
        assert run.index(entry) == len(run) - 1  # written last: after every check passed
