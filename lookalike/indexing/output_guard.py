"""One build per output folder at a time (an exclusive lock), and catalogs with unique product ids only."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path


class OutputLockedError(RuntimeError):
    """Another process is building into the same output folder."""


class DuplicateIdsError(ValueError):
    """A catalog names two products with one id."""


def lock_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(f".{output.name}.lock")


@contextlib.contextmanager
def output_lock(output: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on `output` (flock on a hidden sibling file) or say who holds it.

    Two builds into one output would empty each other's staging and checkpoint folders. The
    kernel drops the lock when its process ends, however it ends, so a killed build never leaves
    a stale lock behind; a finished build removes the lock file while it still holds the lock.
    """
    path = lock_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _locked_file(path, output)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)  # releases the lock


def _locked_file(path: Path, output: str | Path) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise OutputLockedError(
                f"Another build (process {holder}) is writing {output}. Wait for it to finish, or stop it "
                f"(kill {holder}) and run this build again: it resumes from its checkpoints."
            ) from None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # locked a file the previous holder removed meanwhile: lock the current one


def holding_output_lock(build):
    """Run `build(config, ...)` holding the lock on `config.output`."""

    @functools.wraps(build)
    def locked(config, *args, **kwargs):
        with output_lock(config.output):
            return build(config, *args, **kwargs)

    return locked


def refuse_duplicate_ids(ids: Sequence[str]) -> None:
    """Raise DuplicateIdsError listing every id that names more than one product.

    >>> refuse_duplicate_ids(["a", "b"])
    >>> refuse_duplicate_ids(["a", "b", "a", "c", "c"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lookalike.indexing.output_guard.DuplicateIdsError: 2 product ids name several products: 'a' (2x), 'c' (2x). Give ...
    """
    repeated = [(item_id, count) for item_id, count in Counter(ids).items() if count > 1]
    if repeated:
        listed = ", ".join(f"{item_id!r} ({count}x)" for item_id, count in repeated[:20])
        more = f" and {len(repeated) - 20} more" if len(repeated) > 20 else ""
        raise DuplicateIdsError(
            f"{len(repeated)} product id{'s name' if len(repeated) > 1 else ' names'} several products: "
            f"{listed}{more}. Give each product its own id (an id column, or distinct file names), then build again."
        )
