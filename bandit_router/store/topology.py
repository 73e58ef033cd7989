"""Where the store lives: one Redis, a Redis Cluster, or a primary behind Sentinel.

The ``--redis-url`` scheme picks the client, so the rest of the store runs unchanged on each:

- ``redis://``, ``rediss://``, ``unix://``: one Redis (redis-py's own URL parsing);
- ``redis+cluster://[user:password@]host:port[,host:port...]`` (``rediss+cluster://`` for
  TLS): redis-py's asyncio ``RedisCluster``, which follows MOVED/ASK and re-reads the slot
  map after a failover; the hosts are seeds, any reachable one is enough;
- ``redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]``: redis-py's
  asyncio ``Sentinel``; the client asks the Sentinels for the current primary of
  ``service`` on every new connection, so a failover is a reconnect. The credentials are
  the data nodes'; the Sentinels are reached without any.

What goes wrong with the address itself (a URL of the wrong form, a cluster URL at a plain
Redis or the reverse, no Sentinel answering, a service the Sentinels do not know) is
raised at start as ``StoreMisconfigured`` or ``ValueError`` naming the Redis URL, so the
server says it in one line instead of failing every call later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote

Mode = Literal["embedded", "single", "cluster", "sentinel"]

CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}
SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}
DEFAULT_PORTS = {"cluster": 6379, "sentinel": 26379}


@dataclass(frozen=True)
class StoreAddress:
    """A parsed ``--redis-url``: the mode, and what that mode's client needs."""

    mode: Mode
    url: str | None = None
    hosts: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl: bool = False

    def describe_hosts(self) -> str:
        return ",".join(f"{host}:{port}" for host, port in self.hosts)


def parse_store_url(url: str | None) -> StoreAddress:
    """The address of ``url``; ValueError (mentioning "Redis URL") when it is malformed."""
    if url is None:
        return StoreAddress("embedded")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or (scheme not in CLUSTER_SCHEMES and scheme not in SENTINEL_SCHEMES):
        return StoreAddress("single", url=url)
    mode: Mode = "cluster" if scheme in CLUSTER_SCHEMES else "sentinel"
    ssl = CLUSTER_SCHEMES.get(scheme, False) or SENTINEL_SCHEMES.get(scheme, False)
    username = password = None
    if "@" in rest:
        userinfo, rest = rest.rsplit("@", 1)
        user, has_password, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if has_password else None
    rest = rest.split("?", 1)[0]
    netloc, _, path = rest.partition("/")
    hosts = tuple(_host_port(part, DEFAULT_PORTS[mode]) for part in netloc.split(","))
    segments = [s for s in path.split("/") if s]
    service, db = "", 0
    if mode == "sentinel":
        if not segments:
            raise ValueError(
                "Redis URL redis+sentinel://host:port[,host:port...]/service_name needs the "
                "service name the Sentinels monitor"
            )
        service = unquote(segments[0])
        if len(segments) > 1:
            db = _number(segments[1], "database")
        if len(segments) > 2:
            raise ValueError("Redis URL redis+sentinel:// takes at most /service/db")
    elif segments:
        raise ValueError(
            "Redis URL redis+cluster:// takes no path: a Redis Cluster has one database"
        )
    return StoreAddress(mode, url, hosts, service, db, username, password, ssl)


def _host_port(text: str, default_port: int) -> tuple[str, int]:
    text = text.strip()
    if not text:
        raise ValueError("Redis URL lists an empty host (two commas, or none at all)")
    if text.startswith("["):  # [ipv6]:port
        host, _, port = text[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    return host, _number(port, "port") if port else default_port


def _number(text: str, what: str) -> int:
    if not text.isdigit():
        raise ValueError(f"Redis URL has a {what} that is not a number: {text!r}")
    return int(text)


def cluster_client(address: StoreAddress, options: dict[str, Any]) -> Any:
    """redis-py's asyncio ``RedisCluster`` on the seeds of ``address``.

    ``require_full_coverage`` is off: while a master fails over, the experiments of the
    other masters keep working (their calls never touch the missing slots).
    """
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in address.hosts],
        username=address.username,
        password=address.password,
        ssl=address.ssl,
        require_full_coverage=False,
        socket_timeout=options["socket_timeout"],
        socket_connect_timeout=options["socket_connect_timeout"],
        retry=options["retry"],
        health_check_interval=options["health_check_interval"],
        max_connections=options["max_connections"],
        decode_responses=True,
    )


def sentinel_client(address: StoreAddress, options: dict[str, Any]) -> Any:
    """A client of the current primary of ``address.service`` (redis-py's ``master_for``)."""
    import redis.asyncio as aioredis
    from redis.asyncio.sentinel import Sentinel

    sentinels = Sentinel(
        list(address.hosts),
        sentinel_kwargs={
            "socket_timeout": options["socket_timeout"],
            "socket_connect_timeout": options["socket_connect_timeout"],
        },
    )
    return sentinels.master_for(
        address.service,
        redis_class=aioredis.Redis,
        username=address.username,
        password=address.password,
        ssl=address.ssl,
        db=address.db,
        decode_responses=True,
        **options,
    )


async def explain_sentinel_failure(address: StoreAddress, timeout: float) -> tuple[bool, str]:
    """Why no primary of ``address.service`` could be reached, asked of each Sentinel:
    none answers, none knows the service, or they name a primary that does not answer.
    (True, why) when the service is unknown: a mistake that waiting cannot mend."""
    import redis.asyncio as aioredis

    answered: list[str] = []
    known: set[str] = set()
    for host, port in address.hosts:
        sentinel = aioredis.Redis(
            host=host,
            port=port,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=True,
        )
        try:
            masters = await sentinel.sentinel_masters()
        except Exception:  # this one is down or not a Sentinel: try the next
            continue
        finally:
            await sentinel.aclose()
        answered.append(f"{host}:{port}")
        known.update(str(name) for name in masters)
    if not answered:
        return False, (
            f"no Sentinel answers at {address.describe_hosts()} (nothing listens there, or "
            "it is not a Sentinel)"
        )
    if address.service not in known:
        names = ", ".join(sorted(known)) or "none"
        return True, (
            f"the Sentinels at {', '.join(answered)} monitor no service named "
            f"{address.service!r} (they monitor: {names})"
        )
    return False, (
        f"the Sentinels at {', '.join(answered)} know {address.service!r} but its primary "
        "does not answer (down, or a failover in progress)"
    )
