"""Command packing for redis-py's asyncio connections done by hiredis, as the sync ones do.

redis-py's synchronous connections pack commands with ``hiredis.pack_command`` when hiredis
is installed, but its asyncio connections always use the pure-Python packer (redis/redis-py
issue #4176, open as of redis 8.1). That packer encodes every argument in Python, and a
decision flush has one argument per pending decision: with it a flush of 32 cost ~320 µs of
the server's CPU, with hiredis ~250 (measured in-process). This swaps in redis-py's own
``HiredisRespSerializer`` for the connection classes of one client, and leaves the client
alone when hiredis is missing or the client encodes text other than strict UTF-8 (the only
encoding hiredis packs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.connection import HiredisRespSerializer
from redis.utils import HIREDIS_AVAILABLE

# redis-py annotates HiredisRespSerializer's __init__ in some releases and not in others; calling
# it through a typed alias keeps mypy --strict quiet on both.
_new_serializer: Callable[[], Any] = HiredisRespSerializer
_PACKER = _new_serializer()
_CLASSES: dict[type[Any], type[Any]] = {}


class _HiredisPacking:
    """Mixin: ``pack_command`` by hiredis (``pack_commands`` calls it for pipelines).

    The serializer turns memoryviews into bytes and reports what hiredis cannot pack (a bool,
    None) as redis-py's ``DataError``, like the pure-Python packer.
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        packed: list[bytes] = _PACKER.pack(*args)
        return packed


def _packing_class(base: type[Any]) -> type[Any]:
    cls = _CLASSES.get(base)
    if cls is None:
        cls = _CLASSES[base] = type(f"HiredisPacking{base.__name__}", (_HiredisPacking, base), {})
    return cls


def use_hiredis_packing(client: aioredis.Redis) -> bool:
    """Make ``client``'s new connections pack with hiredis; True if it now does.

    Call before the client's first command: connections already made keep their class.
    """
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    if not HIREDIS_AVAILABLE or kwargs.get("encoding", "utf-8").lower().replace("_", "-") != (
        "utf-8"
    ):
        return False
    if kwargs.get("encoding_errors", "strict") != "strict":
        return False
    pool.connection_class = _packing_class(pool.connection_class)
    return True
