"""The serving cache of a build folder: its parquet rows as a memory-mappable matrix and Arrow file.

The parquet shards under `data/` are what a build publishes; a server cannot memory-map parquet,
so the first load derives, beside them, the float32 matrix (`embeddings.npy`) and the other
columns as an uncompressed Arrow stream (`rows.arrow`, what `datasets` memory-maps). Both sit in
`.cache/huggingface/`, which `HfApi.upload_folder` and `hf upload` never upload, and are rebuilt
whenever the shards change (compared by name, size and modification time).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DATA_DIR = "data"
EMBEDDING_COLUMN = "embedding"
# Inside the folder huggingface_hub leaves out of every upload (its DEFAULT_IGNORE_PATTERNS).
CACHE_DIR = Path(".cache") / "huggingface" / "lookalike-serving"
EMBEDDINGS_FILE = "embeddings.npy"
ROWS_FILE = "rows.arrow"
STAMP_FILE = "source.json"
# Rows converted at a time when the cache is derived: memory stays flat whatever the catalog size.
BATCH_ROWS = 4096
# Up to this, a server keeps the matrix in memory rather than reading an answer's rows from its file
# (MatrixFile): each of those reads is a system call that lets go of the GIL, and under concurrent
# requests a worker thread then waits for the event loop to hand it back, once per run of rows an
# answer reads (a few dozen candidates). 64 MB is 13,000 products at 1280 dimensions.
RESIDENT_MATRIX_BYTES = 64 * 1024**2


@dataclass(frozen=True)
class ServingCache:
    """Where a build's memory-mappable copies are; `embeddings` is (n, dim) float32."""

    folder: Path

    @property
    def embeddings(self) -> Path:
        return self.folder / EMBEDDINGS_FILE

    @property
    def rows(self) -> Path:
        return self.folder / ROWS_FILE


def shard_files(build: Path) -> list[Path]:
    """The parquet data files of a build folder, in row order."""
    return sorted((Path(build) / DATA_DIR).glob("*.parquet"))


def shards_stamp(build: Path, shards: Sequence[Path]) -> dict:
    """What the cache was derived from; a different stamp means the cache is stale."""
    files = []
    for shard in shards:
        stat = shard.stat()  # follows the symlinks of a Hub snapshot to their blobs
        files.append([shard.relative_to(build).as_posix(), stat.st_size, stat.st_mtime_ns])
    return {"format": 1, "shards": files}


def rows_schema(shard_schema: pa.Schema) -> pa.Schema:
    """The shards' schema without the embedding column, keeping the `datasets` features metadata."""
    schema = shard_schema.remove(shard_schema.get_field_index(EMBEDDING_COLUMN))
    metadata = dict(shard_schema.metadata or {})
    if b"huggingface" in metadata:
        info = json.loads(metadata[b"huggingface"])
        info.get("info", {}).get("features", {}).pop(EMBEDDING_COLUMN, None)
        metadata[b"huggingface"] = json.dumps(info).encode()
    return schema.with_metadata(metadata)


def embedding_matrix(column: pa.ChunkedArray | pa.Array, dim: int) -> np.ndarray:
    """A fixed-size-list float32 column as an (n, dim) array, without a Python object per value."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    parts = [np.asarray(chunk.flatten(), dtype=np.float32).reshape(-1, dim) for chunk in chunks]
    return np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float32)


class CacheWriter:
    """Writes a cache row block by row block: a build calls it as it goes, a load when deriving."""

    def __init__(self, folder: Path, n_rows: int, dim: int, schema: pa.Schema) -> None:
        self.folder, self.n_rows, self.dim, self.written = Path(folder), n_rows, dim, 0
        self.folder.mkdir(parents=True, exist_ok=True)
        # Written row block by row block through a plain file, not a memory map: the pages of a map
        # written in full would stay in this process's resident set until it closes.
        self.matrix = open(self.folder / EMBEDDINGS_FILE, "wb")  # noqa: SIM115 (closed in close())
        descr = np.lib.format.dtype_to_descr(np.dtype("<f4"))
        np.lib.format.write_array_header_1_0(
            self.matrix, {"descr": descr, "fortran_order": False, "shape": (n_rows, dim)}
        )
        self.rows_schema = rows_schema(schema)
        self.rows_writer = pa.ipc.new_stream(str(self.folder / ROWS_FILE), self.rows_schema)

    def write(self, block: pa.Table) -> np.ndarray:
        """Append a block's rows; returns its vectors as written."""
        end = self.written + block.num_rows
        if end > self.n_rows:
            raise ValueError(f"{end} rows written into a cache sized for {self.n_rows}")
        vectors = embedding_matrix(block.column(EMBEDDING_COLUMN), self.dim)
        self.matrix.write(np.ascontiguousarray(vectors, dtype="<f4").tobytes())
        self.rows_writer.write_table(block.drop_columns([EMBEDDING_COLUMN]).cast(self.rows_schema))
        self.written = end
        return vectors

    def close(self, stamp: dict) -> ServingCache:
        if self.written != self.n_rows:
            raise ValueError(f"the cache expected {self.n_rows} rows, got {self.written}")
        self.rows_writer.close()
        self.matrix.close()
        (self.folder / STAMP_FILE).write_text(json.dumps(stamp), encoding="utf-8")
        return ServingCache(self.folder)


class MatrixFile:
    """The rows of an `.npy` matrix read by plain file reads. Pages read through a memory map stay in
    the reader's resident set, whole page-cache folios of them (up to 2 MB for one 5 kB row): the
    build's pass over every row (5 GB at 1M products) and a server's scattered candidate rows (which
    mapped most of the matrix within a hundred searches) read from the file instead, so only the
    page cache holds them, shared and given back under pressure."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 (closed with the object)
        version = np.lib.format.read_magic(self._file)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        self.shape, _, self.dtype = read_header(self._file)
        self._offset, self._row_bytes = self._file.tell(), self.dtype.itemsize * int(np.prod(self.shape[1:]))

    def __len__(self) -> int:
        return self.shape[0]

    def _rows(self, start: int, stop: int) -> np.ndarray:
        rows = np.empty((stop - start, *self.shape[1:]), dtype=self.dtype)
        self._read_into(rows, start)
        return rows

    def _read_into(self, rows: np.ndarray, start: int) -> None:
        """Fill the contiguous `rows` from row `start` on, straight into their memory: no bytes object per run
        of rows first. (A category's 9,000 scattered rows read as that many small buffers, in each server
        thread's malloc arena, left ~250 MB of freed arena memory resident at a million products.)"""
        view, offset = memoryview(rows).cast("B"), self._offset + start * self._row_bytes
        done = 0
        while done < len(view):
            read = os.preadv(self._file.fileno(), [view[done:]], offset + done)
            if read == 0:
                raise EOFError(f"{self._file.name} ends before row {start + len(rows)}: rebuild its serving cache")
            done += read

    def __getitem__(self, key) -> np.ndarray:
        """Rows by slice (contiguous, one read) or by an array of row numbers; one row by its number."""
        if isinstance(key, int | np.integer):
            return self._rows(int(key), int(key) + 1)[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                raise ValueError("MatrixFile reads contiguous slices only")
            return self._rows(start, max(start, stop))
        rows = np.asarray(key, dtype=np.int64).reshape(-1)
        if len(rows) == 0:
            return np.zeros((0, *self.shape[1:]), dtype=self.dtype)
        # One read per run of consecutive rows (a category's rows often are), in the order asked for, each
        # into its place in the answer.
        found = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        starts = np.flatnonzero(np.diff(rows, prepend=rows[0] - 2) != 1)
        for begin, end in zip(starts, [*starts[1:], len(rows)], strict=True):
            self._read_into(found[begin:end], int(rows[begin]))
        return found

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return np.asarray(self[:], dtype=dtype)


MADV_DONTNEED = 4  # Linux's <sys/mman.h>


def release_mapped_pages(path: Path) -> int:
    """Take this process's resident pages of every read-only memory map of `path` out of its resident set,
    and return the mapped bytes released. The page cache keeps them (shared, and given back to the system
    under pressure), so the next read maps them again without the disk. For the rows' Arrow file, whose
    pages each answer touches a few of (fault-around maps 64 kB around each): resident, they had added up
    to 470 MB at a million products. Linux only; elsewhere nothing is done."""
    maps = Path("/proc/self/maps")
    if sys.platform != "linux" or not maps.is_file():
        return 0
    target, released = str(Path(path).resolve()), 0
    for line in maps.read_text(encoding="utf-8").splitlines():
        fields = line.split(maxsplit=5)
        # Only maps of that file that nobody can write through: dropping their pages loses nothing.
        if len(fields) == 6 and fields[5] == target and fields[1][:2] == "r-":
            start, end = (int(bound, 16) for bound in fields[0].split("-"))
            if _libc().madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), MADV_DONTNEED) == 0:
                released += end - start
    return released


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc


def served_matrix(path: Path, resident_up_to: int = RESIDENT_MATRIX_BYTES) -> np.ndarray:
    """A serving cache's matrix, read-only: a copy in memory when it is at most `resident_up_to` bytes,
    else memory-mapped (its scattered rows then read through `row_reader`)."""
    mapped = np.load(path, mmap_mode="r")
    if mapped.nbytes > resident_up_to:
        return mapped
    resident = np.array(mapped)
    resident.flags.writeable = False
    return resident


def row_reader(matrix: np.ndarray) -> np.ndarray | MatrixFile:
    """What scattered rows of `matrix` are read through: its file when it is memory-mapped from one."""
    filename = getattr(matrix, "filename", None)
    return MatrixFile(Path(filename)) if isinstance(matrix, np.memmap) and filename else matrix


def open_cache(build: Path, dim: int) -> ServingCache:
    """The build's serving cache, derived from its shards first if missing or stale."""
    build = Path(build)
    shards = shard_files(build)
    cache = ServingCache(build / CACHE_DIR)
    stamp = shards_stamp(build, shards)
    stamp_file = cache.folder / STAMP_FILE
    if stamp_file.is_file() and json.loads(stamp_file.read_text(encoding="utf-8")) == stamp:
        return cache
    # Derived in a private folder, then renamed: two servers starting at once never see half a cache.
    staging = cache.folder.with_name(f"{cache.folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    n_rows = sum(pq.ParquetFile(shard).metadata.num_rows for shard in shards)
    writer = CacheWriter(staging, n_rows, dim, pq.read_schema(shards[0]))
    for shard in shards:
        for batch in pq.ParquetFile(shard).iter_batches(batch_size=BATCH_ROWS):
            writer.write(pa.Table.from_batches([batch]))
    writer.close(stamp)
    retired = cache.folder.with_name(f"{cache.folder.name}.{os.getpid()}.old")
    with contextlib.suppress(FileNotFoundError):  # another server starting at once retired it first
        os.rename(cache.folder, retired)
    try:
        os.rename(staging, cache.folder)
    except OSError:  # another process put the same cache in place first
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(retired, ignore_errors=True)
    return cache
