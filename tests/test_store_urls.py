"""``--redis-url`` forms: what each parses to, and the malformed ones refused with a reason.

The servers behind them are tested in ``test_store_topologies.py``; this is the parsing."""

from __future__ import annotations

import pytest

from bandit_router.serving.config import ServerConfig
from bandit_router.store.topology import StoreAddress, parse_store_url


def test_plain_urls_and_none_keep_their_meaning() -> None:
    assert parse_store_url(None) == StoreAddress("embedded")
    for url in ("redis://h:1/0", "rediss://:pw@h:2/3", "unix:///tmp/redis.sock"):
        assert parse_store_url(url) == StoreAddress("single", url=url)


def test_cluster_urls() -> None:
    address = parse_store_url("redis+cluster://u:p%40ss@10.0.0.1:7000,10.0.0.2,[::1]:7002")
    assert address.mode == "cluster" and not address.ssl
    assert address.hosts == (("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002))
    assert (address.username, address.password) == ("u", "p@ss")
    assert parse_store_url("rediss+cluster://h:1").ssl
    assert parse_store_url("REDIS+CLUSTER://h:1/").hosts == (("h", 1),)


def test_sentinel_urls() -> None:
    address = parse_store_url("redis+sentinel://:pw@s1:26380,s2/mymaster/2")
    assert address.mode == "sentinel"
    assert address.hosts == (("s1", 26380), ("s2", 26379))
    assert (address.service, address.db, address.password) == ("mymaster", 2, "pw")
    assert parse_store_url("rediss+sentinel://s1/m").ssl


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis+sentinel://s1:26379", "needs the service name"),
        ("redis+sentinel://s1:26379/", "needs the service name"),
        ("redis+sentinel://s1/m/x", "database that is not a number"),
        ("redis+sentinel://s1/m/0/extra", "at most /service/db"),
        ("redis+cluster://h:1/0", "takes no path"),
        ("redis+cluster://h:port", "port that is not a number"),
        ("redis+cluster://h:1,,h:2", "empty host"),
    ],
)
def test_malformed_urls_say_what_is_wrong(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match="Redis URL") as raised:
        parse_store_url(url)
    assert reason in str(raised.value)


def test_the_logged_url_hides_the_password() -> None:
    config = ServerConfig(redis_url="redis+sentinel://:hunter2@s1,s2/mymaster")
    assert "hunter2" not in config.redacted_redis_url()
    assert config.redacted_redis_url() == "redis+sentinel://***@s1,s2/mymaster"
