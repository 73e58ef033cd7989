"""Work on a whole batch in fixed chunks that threads may run side by side.

Chunks of a batch (``chunk_rows``; ``chunk_bounds`` for a flat array of variates) each get a
generator of their own (``chunk_generator``) and run as tasks (``run_chunks``) on the
caller's thread and a small pool. numpy releases the GIL inside its array loops (each
generator has its own lock), so the chunks run in parallel. Reproducibility does not depend
on the thread count: the chunk boundaries and each chunk's generator follow from the batch
shape and the caller's generator alone; threads only decide which chunk is run where. Work
of at most one chunk (a live state, or the service's pre-drawn block of 1,024 decisions)
uses the caller's generator directly and never touches a thread.

``standard_gamma_into`` chunks gamma variates alone; ``ThompsonSampling.select`` chunks its
whole step by rows (see there). Per-thread ``scratch`` buffers keep batch-sized temporaries
from being allocated afresh each step.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from collections.abc import Callable
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
#: Distinct (tag, shape) scratch sets one thread keeps (a study's step uses two or three).
SCRATCH_SHAPES = 8
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


def scratch(shape: tuple[int, ...], count: int, tag: str = "") -> tuple[FloatArray, ...]:
    """``count`` float64 arrays of ``shape``, owned by the calling thread and reused.

    A fresh batch-sized temporary per step is not free: freed large blocks go back to the
    kernel and the next step pays a page fault per 4 KiB (~0.1 µs per run and step here).
    The buffers are per thread, so concurrent callers never share them; a caller must not
    return them or keep them past its own call. Callers that may hold buffers at the same
    time (a function and one it calls) pass different ``tag``s.
    """
    if count * math.prod(shape) * 8 > SCRATCH_MAX_BYTES:
        return tuple(np.empty(shape, dtype=np.float64) for _ in range(count))
    cache: dict[tuple[str, tuple[int, ...], int], tuple[FloatArray, ...]] | None = getattr(
        _scratch, "buffers", None
    )
    if cache is None:
        cache = {}
        _scratch.buffers = cache
    key = (tag, shape, count)
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


def chunk_rows(rows: int, variates_per_row: int, chunk_variates: int = CHUNK_VARIATES) -> list[int]:
    """Row boundaries of the chunks of a batch: a function of the batch shape alone.

    ``rows`` batch elements of ``variates_per_row`` variates each split into the fewest even
    chunks of whole rows with at most about ``chunk_variates`` variates (at most ``rows``
    chunks; one row may exceed it). Neither the thread count nor the data enter: the chunk
    boundaries, and so each chunk's generator, are the same on every machine.
    """
    chunks = max(1, min(rows, -(-(rows * variates_per_row) // chunk_variates)))
    return [rows * i // chunks for i in range(chunks + 1)]


def chunk_bounds(size: int) -> list[int]:
    """Boundaries of the chunks of ``size`` variates: a function of ``size`` alone."""
    return chunk_rows(size, 1)


def chunk_key(rng: np.random.Generator) -> int:
    """One 64-bit word of ``rng``: the seed of all chunk generators of one chunked draw."""
    return int(rng.bit_generator.random_raw())


def chunk_generator(rng: np.random.Generator, key: int, index: int) -> np.random.Generator:
    """Chunk ``index``'s generator: ``rng``'s bit-generator type on the SeedSequence child
    (spawn key ``(index,)``) of ``key``.

    Children of one SeedSequence are statistically independent streams (numpy's documented
    way to parallelise), and a child follows from ``key`` and ``index`` alone, so a chunk
    draws the same variates on whichever thread runs it. Built by the thread that runs the
    chunk: ~10 µs each, which would otherwise queue on the caller's thread.
    """
    kind = type(rng.bit_generator)
    return np.random.Generator(kind(np.random.SeedSequence(key, spawn_key=(index,))))


def run_chunks(count: int, task: Callable[[int], None], threads: int | None = None) -> None:
    """``task(i)`` for every chunk ``i`` in ``range(count)``, on up to ``threads`` threads
    (None: ``draw_threads()``), the caller's included; returns when all have finished.

    Threads take the next chunk as they become free rather than a fixed share: on a shared
    machine one core is often slower, and a chunk's result never depends on the thread that
    computes it (tasks must write only their own chunk's outputs, and use only per-thread
    scratch). One chunk, or one thread, runs on the caller's thread with no hand-off.
    """
    workers = min(draw_threads() if threads is None else threads, count)
    if workers <= 1:
        for i in range(count):
            task(i)
        return
    claim = itertools.count().__next__  # atomic under the GIL: each chunk runs once

    def work() -> None:
        while (i := claim()) < count:
            task(i)

    pool = _executor(workers - 1)
    futures: list[Future[None]] = [pool.submit(work) for _ in range(1, workers)]
    try:
        work()
    finally:  # never return while a worker still writes into the caller's arrays
        for future in futures:
            future.exception()
    for future in futures:
        future.result()


def standard_gamma_into(
    rng: np.random.Generator, shapes: FloatArray, out: FloatArray, threads: int | None = None
) -> None:
    """``out[i] ~ Gamma(shapes[i], 1)`` independently, both 1-D, C-contiguous and float64.

    Below two chunks the draw is ``rng.standard_gamma(shapes, out=out)``. Otherwise one
    64-bit word from ``rng`` (``chunk_key``) seeds a SeedSequence whose i-th child drives
    chunk i (``chunk_generator``), so the whole draw is a function of ``rng``'s state and
    the size, and the same seed gives the same variates whatever ``threads`` is (None:
    ``draw_threads()``).
    """
    if shapes.size <= CHUNK_VARIATES:
        rng.standard_gamma(shapes, out=out)
        return
    bounds = chunk_bounds(shapes.size)
    key = chunk_key(rng)

    def draw(i: int) -> None:
        start, stop = bounds[i], bounds[i + 1]
        chunk_generator(rng, key, i).standard_gamma(shapes[start:stop], out=out[start:stop])

    run_chunks(len(bounds) - 1, draw, threads)
