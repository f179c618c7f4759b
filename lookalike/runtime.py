"""Process resources: malloc tunables set before the interpreter starts, handing freed pages back, and the
cores a server's concurrent searches share."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import sys

from threadpoolctl import threadpool_limits

# Torch's batched tensors exceed glibc's mmap threshold, so every forward pass maps and unmaps
# them; on these VMs the page faults cost half the CPU time. Keeping them on the heap makes
# batched inference 2-4x faster (measured in benchmarks/). glibc reads this only at start-up.
FAST_MALLOC_TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"


def reexec_with_fast_malloc() -> None:
    """Restart this command once with the malloc tunables set, unless the user set their own.

    Call it first thing in a `__main__` block only: it replaces the current process. For batch
    jobs (builds, fine-tuning, benchmarks), not servers: with it, freed memory is never returned.
    """
    if not sys.platform.startswith("linux") or "GLIBC_TUNABLES" in os.environ:
        return
    os.environ["GLIBC_TUNABLES"] = FAST_MALLOC_TUNABLES
    # If the restart fails, carry on without the tunables rather than fail.
    with contextlib.suppress(OSError):
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def release_freed_memory() -> bool:
    """Give the pages malloc holds but no object uses back to the system (glibc `malloc_trim`).

    After a big picture is freed, glibc keeps its pages for reuse; in a long-running server
    that looks like a leak. Costs a few milliseconds; returns whether anything could be done.
    """
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        return False
    libc.malloc_trim(0)
    return True


def share_blas_threads(searches_at_once: int) -> int:
    """Give each of `searches_at_once` concurrent searches its share of the cores in BLAS (numpy's matrix
    products, for every library loaded so far), and return that share.

    OpenBLAS otherwise runs each small product on every core and its threads spin after it: with two
    searches at once on two cores, a by-id answer (a few dozen candidates compared pairwise) cost the
    server twice the CPU (12-14 against 6-7 ms of the server's CPU time per answer through HTTP, measured
    when this was added; benchmarks/json_api.py prints the figure now).
    """
    threads = max(1, (os.cpu_count() or 1) // max(1, searches_at_once))
    threadpool_limits(threads, user_api="blas")
    return threads
