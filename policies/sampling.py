"""Gamma variates for a whole batch, in fixed chunks that threads may draw side by side.

Beta draws for Thompson sampling are two gamma draws each, and they are most of the cost of
a simulation step. numpy releases the GIL inside ``Generator.standard_gamma`` over an array
(each generator has its own lock), so chunks with generators of their own run in parallel.
Reproducibility does not depend on the thread count: the chunk boundaries and each chunk's
generator follow from the number of variates and the caller's generator alone; threads only
decide which chunk is drawn where. Draws of at most one chunk (a live state, or the
service's pre-drawn block of 1,024 decisions with up to 16 arms) use the caller's generator
directly and never touch a thread.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from policies.base import FloatArray

#: Variates per chunk (~0.6 ms of drawing). Handing chunks to a thread and back costs a
#: good part of a millisecond per draw on a 2-core VM: with 16,384 a simulation of 1,000
#: runs x 10 arms (20,000 variates a step) ran 15 % slower on two threads than on one; with
#: 32,768 it stays on one, and 10,000 runs x 5 arms (100,000) split into 4 even chunks.
CHUNK_VARIATES = 1 << 15
#: Most threads ever used: beyond a handful the chunks get too few to share out evenly.
MAX_THREADS = 8
THREADS_ENV = "POLICIES_DRAW_THREADS"

_lock = threading.Lock()
_threads: int | None = None
_pool: ThreadPoolExecutor | None = None
_pool_workers = 0
_scratch = threading.local()
#: Distinct array shapes whose scratch buffers one thread keeps (a study uses one or two).
SCRATCH_SHAPES = 4
#: Larger buffers are not kept: one huge call must not pin its memory for the process's life.
SCRATCH_MAX_BYTES = 64 << 20


def _default_threads() -> int:
    raw = os.environ.get(THREADS_ENV, "").strip()
    if raw:
        try:
            return max(1, min(MAX_THREADS, int(raw)))
        except ValueError:
            raise ValueError(f"{THREADS_ENV}: expected an integer, got {raw!r}") from None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_THREADS, cores))


def draw_threads() -> int:
    """Threads a large draw may use: ``set_draw_threads``, else $POLICIES_DRAW_THREADS, else
    the usable cores (at most MAX_THREADS)."""
    global _threads
    if _threads is None:
        _threads = _default_threads()
    return _threads


def set_draw_threads(threads: int | None) -> None:
    """Use ``threads`` threads for large draws (1: never; None: back to the default).

    Results are the same for every value; only the wall-clock time changes.
    """
    global _threads, _pool
    if threads is not None and threads < 1:
        raise ValueError("threads must be >= 1")
    with _lock:
        _threads = None if threads is None else min(MAX_THREADS, int(threads))
        if _pool is not None:
            _pool.shutdown(wait=False)
            _pool = None


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_workers
    with _lock:
        if _pool is None or _pool_workers != workers:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(workers, thread_name_prefix="policies-draw")
            _pool_workers = workers
        return _pool


def scratch(shape: tuple[int, ...], count: int) -> tuple[FloatArray, ...]:
    """``count`` float64 arrays of ``shape``, owned by the calling thread and reused.

    A fresh batch-sized temporary per step is not free: freed large blocks go back to the
    kernel and the next step pays a page fault per 4 KiB (~0.1 µs per run and step here).
    The buffers are per thread, so concurrent callers never share them; a caller must not
    return them or keep them past its own call.
    """
    if count * math.prod(shape) * 8 > SCRATCH_MAX_BYTES:
        return tuple(np.empty(shape, dtype=np.float64) for _ in range(count))
    cache: dict[tuple[tuple[int, ...], int], tuple[FloatArray, ...]] | None = getattr(
        _scratch, "buffers", None
    )
    if cache is None:
        cache = {}
        _scratch.buffers = cache
    key = (shape, count)
    buffers = cache.get(key)
    if buffers is None:
        if len(cache) >= SCRATCH_SHAPES:
            cache.clear()
        buffers = tuple(np.empty(shape, dtype=np.float64) for _ in range(count))
        cache[key] = buffers
    return buffers


def _forget_pool_after_fork() -> None:
    """A forked child has none of the parent's threads: a pool inherited from it would queue
    work that no thread ever runs. The child starts its own pool on first use."""
    global _pool, _pool_workers
    _pool, _pool_workers = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def chunk_bounds(size: int) -> list[int]:
    """Boundaries of the chunks of ``size`` variates: a function of ``size`` alone."""
    chunks = max(1, -(-size // CHUNK_VARIATES))
    return [size * i // chunks for i in range(chunks + 1)]


def standard_gamma_into(
    rng: np.random.Generator, shapes: FloatArray, out: FloatArray, threads: int | None = None
) -> None:
    """``out[i] ~ Gamma(shapes[i], 1)`` independently, both 1-D, C-contiguous and float64.

    Below two chunks the draw is ``rng.standard_gamma(shapes, out=out)``. Otherwise one
    64-bit word from ``rng`` seeds a SeedSequence whose i-th child (spawn key (i,)) drives
    chunk i with a generator of ``rng``'s bit-generator type: the children are statistically
    independent streams (numpy's documented way to parallelise), and the whole draw is a
    function of ``rng``'s state and the size, so the same seed gives the same variates
    whatever ``threads`` is (None: ``draw_threads()``).
    """
    if shapes.size <= CHUNK_VARIATES:
        rng.standard_gamma(shapes, out=out)
        return
    bounds = chunk_bounds(shapes.size)
    key = int(rng.bit_generator.random_raw())
    kind = type(rng.bit_generator)
    generators = [
        np.random.Generator(kind(np.random.SeedSequence(key, spawn_key=(i,))))
        for i in range(len(bounds) - 1)
    ]

    def draw(indices: Sequence[int]) -> None:
        for i in indices:
            start, stop = bounds[i], bounds[i + 1]
            generators[i].standard_gamma(shapes[start:stop], out=out[start:stop])

    workers = min(draw_threads() if threads is None else threads, len(generators))
    if workers <= 1:
        draw(range(len(generators)))
        return
    pool = _executor(workers - 1)
    futures: list[Future[None]] = [
        pool.submit(draw, range(w, len(generators), workers)) for w in range(1, workers)
    ]
    try:
        draw(range(0, len(generators), workers))
    finally:  # never return while a worker still writes into ``out``
        for future in futures:
            future.exception()
    for future in futures:
        future.result()
