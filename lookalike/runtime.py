"""Process-level settings that must exist before the interpreter starts."""

from __future__ import annotations

import contextlib
import os
import sys

# Torch's batched tensors exceed glibc's mmap threshold, so every forward pass maps and unmaps
# them; on these VMs the page faults cost half the CPU time. Keeping them on the heap makes
# batched inference 2-4x faster (measured in benchmarks/). glibc reads this only at start-up.
FAST_MALLOC_TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"


def reexec_with_fast_malloc() -> None:
    """Restart this command once with the malloc tunables set, unless the user set their own.

    Call it first thing in a `__main__` block only: it replaces the current process.
    """
    if not sys.platform.startswith("linux") or "GLIBC_TUNABLES" in os.environ:
        return
    os.environ["GLIBC_TUNABLES"] = FAST_MALLOC_TUNABLES
    # If the restart fails, carry on without the tunables rather than fail.
    with contextlib.suppress(OSError):
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
