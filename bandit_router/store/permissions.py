"""The Redis commands bandit-router needs, and a start-up check that the store grants them.

Redis checks ACL permissions command by command, also inside a Lua script: a user without
HINCRBYFLOAT let ``apply_rewards`` write its dedupe marker and then fail, so the reward was
lost and its retry said DUPLICATE. A misconfigured store must be found at start instead.
The list is derived from the scripts (every ``redis.call('X'``) plus what the Python code
sends itself, so a command added to a script is checked (and documented) without anyone
remembering to; ``tests/test_store_acl.py`` runs the whole service under exactly this list.
"""

from __future__ import annotations

import contextlib
import re
from importlib import resources
from typing import Any

from redis.exceptions import NoPermissionError, ResponseError

from bandit_router.store.keys import CHANGES_CHANNEL, PREFIX

#: Sent by the Python code itself (store, cache, sticky look-ups, health, WAIT, a decision
#: writer's exit). redis-py also sends CLIENT SETINFO on connect and ignores a refusal
#: (Redis 7.0 does not know it; on 7.2 and later, README suggests granting it to keep the
#: ACL log quiet). CLUSTER INFO
#: is the start-up check that a redis:// URL is not a cluster node; ROLE counts replicas
#: for --wait-replicas. In a Redis Cluster the client discovers the slots (CLUSTER SLOTS,
#: COMMAND), follows an ASK redirect of a slot being migrated with ASKING, and the change
#: notices are sharded pub/sub (SPUBLISH, SSUBSCRIBE).
DIRECT_COMMANDS = frozenset(
    {
        "ASKING", "CLUSTER|INFO", "CLUSTER|SLOTS", "COMMAND", "DEL", "EVALSHA", "GET", "HDEL",
        "HGET", "HGETALL", "LRANGE", "PING", "PUBLISH", "ROLE", "SADD", "SCRIPT|LOAD", "SET",
        "SMEMBERS", "SPUBLISH", "SREM", "SSUBSCRIBE", "SUBSCRIBE", "WAIT", "XADD", "XRANGE",
        "XREVRANGE", "ZRANGEBYSCORE",
    }
)  # fmt: skip

_PROBE_KEY = f"{PREFIX}:{{permission-probe}}:k"

#: One harmless invocation of each command on the probe key (right arity; a WRONGTYPE or
#: syntax error is fine: Redis checks permissions first, and only NOPERM matters here).
#: CLUSTER SLOTS and COMMAND are not probed: the cluster client sends them before anything
#: else, so a refusal already stopped the start with the NOPERM reply.
_PROBES: dict[str, tuple[str, ...]] = {
    "CLUSTER|INFO": ("CLUSTER", "INFO"),
    "DEL": ("DEL", _PROBE_KEY),
    "EXISTS": ("EXISTS", _PROBE_KEY),
    "EXPIRE": ("EXPIRE", _PROBE_KEY, "10"),
    "GET": ("GET", _PROBE_KEY),
    "HDEL": ("HDEL", _PROBE_KEY, "f"),
    "HEXISTS": ("HEXISTS", _PROBE_KEY, "f"),
    "HGET": ("HGET", _PROBE_KEY, "f"),
    "HGETALL": ("HGETALL", _PROBE_KEY),
    "HINCRBY": ("HINCRBY", _PROBE_KEY, "f", "0"),
    "HINCRBYFLOAT": ("HINCRBYFLOAT", _PROBE_KEY, "f", "0"),
    "HMGET": ("HMGET", _PROBE_KEY, "f"),
    "HSET": ("HSET", _PROBE_KEY, "f", "0"),
    "HSETNX": ("HSETNX", _PROBE_KEY, "f", "0"),
    "LPUSH": ("LPUSH", _PROBE_KEY, "0"),
    "LRANGE": ("LRANGE", _PROBE_KEY, "0", "0"),
    "LTRIM": ("LTRIM", _PROBE_KEY, "0", "0"),
    "PING": ("PING",),
    "PUBLISH": ("PUBLISH", CHANGES_CHANNEL, ""),
    "ROLE": ("ROLE",),
    "SADD": ("SADD", _PROBE_KEY, "0"),
    "SET": ("SET", _PROBE_KEY, "0", "PX", "10000"),
    "SMEMBERS": ("SMEMBERS", _PROBE_KEY),
    "SPUBLISH": ("SPUBLISH", CHANGES_CHANNEL, ""),
    "SREM": ("SREM", _PROBE_KEY, "0"),
    "TIME": ("TIME",),
    "WAIT": ("WAIT", "0", "1"),
    "XADD": ("XADD", _PROBE_KEY, "MAXLEN", "1", "*", "f", "0"),
    "XRANGE": ("XRANGE", _PROBE_KEY, "-", "+", "COUNT", "1"),
    "XREVRANGE": ("XREVRANGE", _PROBE_KEY, "+", "-", "COUNT", "1"),
    "ZADD": ("ZADD", _PROBE_KEY, "0", "m"),
    "ZRANGEBYSCORE": ("ZRANGEBYSCORE", _PROBE_KEY, "0", "0"),
    "ZREM": ("ZREM", _PROBE_KEY, "m"),
    "ZSCORE": ("ZSCORE", _PROBE_KEY, "m"),
}


def script_commands() -> frozenset[str]:
    """Every command a Lua script of ours calls."""
    names: set[str] = set()
    for path in resources.files("bandit_router.store").joinpath("lua").iterdir():
        if path.name.endswith(".lua"):
            names.update(n.upper() for n in re.findall(r"redis\.call\('(\w+)'", path.read_text()))
    return frozenset(names)


def required_commands() -> list[str]:
    """Everything the service sends, sorted; the ACL rule in README grants exactly these."""
    return sorted(script_commands() | DIRECT_COMMANDS)


def acl_rule(user: str = "bandit-router", password: str = "<password>") -> str:
    """``ACL SETUSER`` arguments for a least-privilege user: our keys and channel only."""
    commands = " ".join("+" + name.lower() for name in required_commands())
    return f"{user} on >{password} resetkeys ~{PREFIX}:* resetchannels &{PREFIX}:* -@all {commands}"


async def missing_permissions(client: Any) -> list[str]:
    """The required commands this connection's user may not run (lowercase), probed once on
    a key of our own prefix; an empty list when everything is granted. In a cluster the
    keyless probes go wherever the client sends them: one node stands for all (an ACL is
    per node, and operators apply the same rule to each)."""
    missing: list[str] = []
    async with client.pipeline(transaction=False) as pipe:
        names = [n for n in required_commands() if n in _PROBES]
        # A cluster client refuses keyless commands without a target: every probe goes
        # to the master of the probe key (one node stands for all; see above).
        node = client.get_node_from_key(_PROBE_KEY) if hasattr(client, "nodes_manager") else None
        target: dict[str, Any] = {"target_nodes": node} if node is not None else {}
        for name in names:
            pipe.execute_command(*_PROBES[name], **target)
        replies = await pipe.execute(raise_on_error=False)
    missing += [n.lower() for n, r in zip(names, replies, strict=True) if _refused(r)]
    try:  # EVALSHA and SCRIPT LOAD, on a script that touches nothing
        sha = await client.script_load("return 1")
        await client.evalsha(sha, 0)
    except ResponseError as error:
        if not _refused(error):
            raise
        missing.append(_command_named(error) or "evalsha")
    for name in ("ssubscribe", "subscribe"):
        pubsub = client.pubsub()
        try:
            await getattr(pubsub, name)(CHANGES_CHANNEL)
            if name == "ssubscribe":
                await pubsub.get_sharded_message(timeout=1.0)
            else:
                await pubsub.get_message(timeout=1.0)
        except ResponseError as error:
            if not _refused(error):
                raise
            missing.append(name)
        finally:
            await pubsub.aclose()
    with contextlib.suppress(ResponseError):
        await client.delete(_PROBE_KEY)
    return sorted(set(missing))


class StoreMisconfigured(Exception):
    """The store will not let the service do its job: refuse to start, naming what is missing."""


async def check_permissions(client: Any) -> None:
    missing = await missing_permissions(client)
    if missing:
        raise StoreMisconfigured(
            f"the Redis user may not run: {', '.join(missing)}; grant every command of "
            "README's least-privilege ACL rule"
        )


def _refused(reply: object) -> bool:
    return isinstance(reply, NoPermissionError) or (
        isinstance(reply, ResponseError) and str(reply).startswith("NOPERM")
    )


def _command_named(error: BaseException) -> str | None:
    found = re.search(r"run the '([\w|]+)' command", str(error))
    return found.group(1) if found else None
