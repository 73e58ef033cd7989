"""What a cluster's or a Sentinel's errors become for a caller: UNAVAILABLE, never INTERNAL.

redis-py's cluster client raises ``RedisClusterException`` (not a ``RedisError``) when a
slot has no master yet, mid-failover; it and MOVED/ASK/CLUSTERDOWN/TRYAGAIN must map to a
retryable UNAVAILABLE that names the reply's code, like every other store error."""

from __future__ import annotations

import pytest
from redis.asyncio.sentinel import MasterNotFoundError
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    RedisClusterException,
    SlotNotCoveredError,
    TryAgainError,
)

from bandit_router.errors import Unavailable
from bandit_router.store.errors import error_code, is_store_error, unavailable


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (SlotNotCoveredError('Slot "9334" not covered by the cluster.'), "slot-not-covered"),
        (RedisClusterException("Redis Cluster cannot be connected."), "RedisClusterException"),
        (MovedError("9334 127.0.0.1:17002"), "MOVED"),
        (AskError("9334 127.0.0.1:17002"), "ASK"),
        (ClusterDownError("CLUSTERDOWN The cluster is down"), "CLUSTERDOWN"),
        (TryAgainError("TRYAGAIN Multiple keys request during rehashing of slot"), "TRYAGAIN"),
        (MasterNotFoundError("No master found for 'mymaster'"), "MasterNotFoundError"),
    ],
)
def test_cluster_and_sentinel_errors_are_retryable_unavailable(error: Exception, code: str) -> None:
    assert is_store_error(error)
    assert error_code(error) == code
    mapped = unavailable(error, "Reward")
    assert isinstance(mapped, Unavailable)
    assert code in str(mapped) and "safe to retry" in str(mapped)
    assert "127.0.0.1" not in str(mapped)  # the reply's code, not its text
