"""Stream a build's rows in catalog order, a block at a time, from the previous build and the checkpoints."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lookalike.catalog.product import CatalogItem, product_arrays
from lookalike.indexing.incremental import HASH_COLUMN, Key, PreviousBuild

# Rows gathered per block: with 8 kB thumbnails and 1280 floats, ~13 MB in memory at a time.
BLOCK_ROWS = 1024
ROW_COLUMNS = ("id", "image", "embedding", HASH_COLUMN)


@dataclass(frozen=True)
class RowSource:
    """Where one freshly embedded row is: row `row` of checkpoint `chunk`."""

    chunk: int
    row: int


@dataclass(frozen=True)
class ChunkOutcome:
    """What the checkpoints hold, read from their `id` and `error` columns only."""

    sources: dict[Key, RowSource]  # readable rows by (id, content hash)
    skipped: list[tuple[str, str]]  # (id, reason) of unreadable images


def chunk_outcomes(chunk_files: Sequence[Path], todo_keys: Sequence[Key], chunk_size: int) -> ChunkOutcome:
    sources: dict[Key, RowSource] = {}
    skipped = []
    for number, path in enumerate(chunk_files):
        columns = pq.read_table(path, columns=["id", "error"])
        ids, errors = columns["id"].to_pylist(), columns["error"].to_pylist()
        for row, (item_id, error) in enumerate(zip(ids, errors, strict=True)):
            if error:
                skipped.append((item_id, error))
            else:
                sources[todo_keys[number * chunk_size + row]] = RowSource(number, row)
    return ChunkOutcome(sources, skipped)


@dataclass(frozen=True)
class RowPlan:
    """Which catalog positions get a row, and where each row comes from (arrays: 24 bytes a row)."""

    positions: np.ndarray  # catalog position of each output row
    chunks: np.ndarray  # its checkpoint number, or PREVIOUS for a row of the previous build
    rows: np.ndarray  # its row in that checkpoint or build

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def n_reused(self) -> int:
        return int(np.count_nonzero(self.chunks == PREVIOUS))


PREVIOUS = -1


def plan_rows(keys: Sequence[Key], previous: PreviousBuild | None, outcome: ChunkOutcome) -> RowPlan:
    """Catalog positions that get a row, and each one's source; freshly embedded rows win over reused."""
    reused = previous.row_of_key if previous else {}
    planned = []
    for position, key in enumerate(keys):
        source = outcome.sources.get(key)
        if source is not None:
            planned.append((position, source.chunk, source.row))
        elif key in reused:
            planned.append((position, PREVIOUS, reused[key]))
    columns = np.asarray(planned, dtype=np.int64).reshape(-1, 3)
    return RowPlan(positions=columns[:, 0], chunks=columns[:, 1], rows=columns[:, 2])


def row_blocks(
    plan: RowPlan,
    items: Sequence[CatalogItem],
    splits: Sequence[str],
    product_columns: Mapping[str, pa.DataType],
    previous: PreviousBuild | None,
    chunk_files: Sequence[Path],
    block_rows: int = BLOCK_ROWS,
) -> Iterator[pa.Table]:
    """Tables of `block_rows` rows (id, image, embedding, content_hash, label, split, then the product
    columns) in plan order.

    `items` and `splits` are the current catalog's, by catalog position: a reused row takes its
    vector from the previous build and its label and product fields (a new price) from the catalog.
    """
    chunks = _ChunkReader(chunk_files)
    for start in range(0, len(plan), block_rows):
        end = start + block_rows
        parts, order = [], []
        for chunk in np.unique(plan.chunks[start:end]):
            members = np.flatnonzero(plan.chunks[start:end] == chunk)
            wanted = plan.rows[start:end][members].tolist()
            parts.append(_previous_rows(previous, wanted) if chunk == PREVIOUS else chunks.rows(int(chunk), wanted))
            order.append(members)
        table = pa.concat_tables(parts).take(np.argsort(np.concatenate(order), kind="stable"))
        positions = plan.positions[start:end].tolist()
        block_items = [items[p] for p in positions]
        table = table.append_column("label", pa.array([item.label for item in block_items], type=pa.string()))
        table = table.append_column("split", pa.array([splits[p] for p in positions], type=pa.string()))
        for name, array in product_arrays(block_items, product_columns).items():
            table = table.append_column(name, array)
        yield table


def _previous_rows(previous: PreviousBuild, rows: list[int]) -> pa.Table:
    index = previous.index
    table = index.dataset.data.table.take(rows).select(["id", "image", HASH_COLUMN])
    vectors = np.ascontiguousarray(index.embeddings[rows], dtype=np.float32)
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1])
    return _unify(table.append_column("embedding", embedding).select(list(ROW_COLUMNS)))


def _unify(table: pa.Table) -> pa.Table:
    """One schema for rows of either source: variable-length float lists, plain image structs."""
    embedding = pc.cast(table.column("embedding"), pa.list_(pa.float32()))
    image = table.column("image").cast(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    return (
        table.set_column(0, "id", table.column("id").cast(pa.string()))
        .set_column(1, "image", image)
        .set_column(2, "embedding", embedding)
    )


class _ChunkReader:
    """Checkpoint files read whole (a chunk is small), the last few kept: blocks visit chunks in order."""

    def __init__(self, files: Sequence[Path], keep: int = 2) -> None:
        self.files, self.keep, self.loaded = files, keep, OrderedDict()

    def rows(self, chunk: int, rows: list[int]) -> pa.Table:
        if chunk not in self.loaded:
            self.loaded[chunk] = pq.read_table(self.files[chunk], columns=list(ROW_COLUMNS))
            while len(self.loaded) > self.keep:
                self.loaded.popitem(last=False)
        return _unify(self.loaded[chunk].take(rows).select(list(ROW_COLUMNS)))
