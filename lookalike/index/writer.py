"""Write a build folder block by block: parquet shards, serving cache, card, metadata; then swap it in.

Memory holds one block of rows at a time, whatever the catalog size. The folder is the Hub
dataset repository as pushed: `README.md`, `data/train-*.parquet`, `lookalike.json`, `ann.faiss`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lookalike.catalog.product import PRODUCT_ID
from lookalike.index.card import CARD_FILE, dataset_card
from lookalike.index.durable import fsync_directory, fsync_tree
from lookalike.index.neighbours import compute_neighbours, write_neighbours
from lookalike.index.products import ProductTable
from lookalike.index.search import AnnReuse
from lookalike.index.serving_cache import (
    CACHE_DIR,
    DATA_DIR,
    CacheWriter,
    MatrixFile,
    shard_files,
    shards_stamp,
)

METADATA_FILE = "lookalike.json"
# ~13 kB per product (thumbnail + 1280 floats): ~130 MB shards, within the Hub's advice for parquet.
ROWS_PER_SHARD = 10_000


ROW_COLUMNS = ("id", "label", "split", "image", "embedding", "content_hash")


def build_features(embedding_dim: int, product_columns: Mapping[str, pa.DataType] | None = None):
    """The `datasets` features of a build's rows (the parquet schema carries them as metadata): the
    row's own columns, then its product's (`catalog.product`: title, price, link, ...) as the source has them."""
    import datasets

    products = {name: datasets.Value(str(data_type)) for name, data_type in (product_columns or {}).items()}
    return datasets.Features(
        {
            "id": datasets.Value("string"),
            "label": datasets.Value("string"),
            "split": datasets.Value("string"),
            "image": datasets.Image(),
            "embedding": datasets.List(datasets.Value("float32"), length=embedding_dim),
            # Digest of the source image's bytes: an incremental rebuild reuses the row while it matches.
            "content_hash": datasets.Value("string"),
            **products,
        }
    )


def table_product_columns(schema: pa.Schema) -> dict[str, pa.DataType]:
    """The product columns of rows already in a table (every column besides a row's own)."""
    return {name: schema.field(name).type for name in schema.names if name not in ROW_COLUMNS}


class IndexWriter:
    """Rows in, block by block, into a hidden staging sibling of `output`; `finish` swaps it into place.

    A reader (or a crash) only ever sees the old complete folder or the new complete one.
    """

    def __init__(
        self,
        output: Path,
        n_rows: int,
        embedding_dim: int,
        rows_per_shard: int = ROWS_PER_SHARD,
        product_columns: Mapping[str, pa.DataType] | None = None,
    ) -> None:
        if rows_per_shard < 1:
            raise ValueError(f"rows_per_shard must be >= 1, got {rows_per_shard}")
        self.output, self.n_rows, self.dim, self.rows_per_shard = Path(output), n_rows, embedding_dim, rows_per_shard
        self.product_columns = dict(product_columns or {PRODUCT_ID: pa.string()})
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self.staging = self.output.with_name(f".{self.output.name}.writing")
        shutil.rmtree(self.staging, ignore_errors=True)
        (self.staging / DATA_DIR).mkdir(parents=True)
        self.schema = build_features(embedding_dim, self.product_columns).arrow_schema
        self.cache = CacheWriter(self.staging / CACHE_DIR, n_rows, embedding_dim, self.schema)
        self.label_counts: Counter[str] = Counter()
        # Of everything written, column by column (so block sizes do not change it). It names the shards:
        # `datasets` caches a local folder's rows under its name and data-file pattern, so a rebuild with
        # the same pattern would have `load_dataset` return the previous build's rows from that cache.
        self.digests = {name: hashlib.blake2b(digest_size=16) for name in self.schema.names}
        self._shard: pq.ParquetWriter | None = None
        self._shard_rows = 0
        self._n_shards = 0

    def write(self, block: pa.Table) -> None:
        """Append rows (the `build_features` columns, in any order) after those already written.

        A product column the block lacks is unknown for its rows; without `product_id`, each row is its own product.
        """
        for name, data_type in self.product_columns.items():
            if name not in block.column_names:
                filler = block.column("id") if name == PRODUCT_ID else pa.nulls(block.num_rows, data_type)
                block = block.append_column(name, filler)
        block = block.select(self.schema.names).cast(self.schema)
        vectors = self.cache.write(block)
        self.label_counts.update(block.column("label").to_pylist())
        self._update_digests(block, vectors)
        start = 0
        while start < block.num_rows:
            if self._shard is None:
                path = self.staging / DATA_DIR / f"part-{self._n_shards:05d}.parquet"
                self._shard = pq.ParquetWriter(path, self.schema)
                self._shard_rows, self._n_shards = 0, self._n_shards + 1
            take = min(block.num_rows - start, self.rows_per_shard - self._shard_rows)
            # One row group per write: a reader (the Hub viewer, the cache) needs only a block in memory.
            self._shard.write_table(block.slice(start, take))
            self._shard_rows += take
            start += take
            if self._shard_rows == self.rows_per_shard:
                self._close_shard()

    def _update_digests(self, block: pa.Table, vectors: np.ndarray) -> None:
        self.digests["embedding"].update(np.ascontiguousarray(vectors).tobytes())
        for name in ("id", "label", "split", "content_hash", *self.product_columns):
            for value in block.column(name).to_pylist():
                self.digests[name].update(b"\xff" if value is None else str(value).encode() + b"\0")
        # The thumbnails' bytes straight from the Arrow buffers: no Python object per image.
        images = block.column("image").combine_chunks().field("bytes").cast(pa.large_binary())
        offsets = np.frombuffer(images.buffers()[1], dtype=np.int64)[images.offset : images.offset + len(images) + 1]
        self.digests["image"].update(np.diff(offsets).tobytes())
        if images.buffers()[2] is not None:  # None when every image of the block is empty
            self.digests["image"].update(memoryview(images.buffers()[2])[offsets[0] : offsets[-1]])

    def _close_shard(self) -> None:
        if self._shard is not None:
            self._shard.close()
            self._shard = None

    def finish(self, metadata, licence: str = "other", ann_reuse: AnnReuse | None = None, neighbours: int = 0) -> Path:
        """Name the shards, close the cache, build the ANN index if `metadata` asks, compute each row's
        `neighbours` nearest rows (0: none), write card and metadata, swap."""
        self._close_shard()
        if self._n_shards == 0:  # an empty catalog still gets a readable (empty) data file
            pq.write_table(self.schema.empty_table(), self.staging / DATA_DIR / "part-00000.parquet")
            self._n_shards = 1
        digest = hashlib.blake2b(b"".join(d.digest() for d in self.digests.values()), digest_size=6).hexdigest()
        for number in range(self._n_shards):
            part = self.staging / DATA_DIR / f"part-{number:05d}.parquet"
            part.rename(part.with_name(f"train-{digest}-{number:05d}-of-{self._n_shards:05d}.parquet"))
        cache = self.cache.close(shards_stamp(self.staging, shard_files(self.staging)))
        if metadata.search.ann is not None:
            metadata.search.write(MatrixFile(cache.embeddings), self.staging, ann_reuse)
        if neighbours and self.n_rows:
            search = metadata.search.open(self.staging, np.load(cache.embeddings, mmap_mode="r"))
            with pa.memory_map(str(cache.rows)) as source:  # the rows as Arrow, read in place
                products = ProductTable.of(pa.ipc.open_stream(source).read_all())
            write_neighbours(
                compute_neighbours(search, MatrixFile(cache.embeddings), products, neighbours), self.staging, digest
            )
        data_files = f"{DATA_DIR}/train-{digest}-*.parquet"
        (self.staging / CARD_FILE).write_text(
            dataset_card(metadata, self.label_counts, data_files, licence, self.product_columns), encoding="utf-8"
        )
        (self.staging / METADATA_FILE).write_text(metadata.to_json(), encoding="utf-8")
        fsync_tree(self.staging)  # the data on disk before the rename makes it visible
        swap_into_place(self.staging, self.output)
        fsync_directory(self.output.parent)  # and the rename itself
        return self.output


def swap_into_place(staging: Path, target: Path) -> None:
    """Put `staging` where `target` is, atomically where Linux can, never leaving `target` missing for long."""
    retired = target.with_name(f".{target.name}.old")
    if not target.exists():
        os.rename(staging, target)
        shutil.rmtree(retired, ignore_errors=True)  # the old copy of a swap that was interrupted halfway
        return
    if _exchange(staging, target):
        shutil.rmtree(staging)
        return
    shutil.rmtree(retired, ignore_errors=True)
    os.rename(target, retired)
    os.rename(staging, target)
    shutil.rmtree(retired)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux renameat2(RENAME_EXCHANGE); False where unsupported."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        rename_exchange, at_fdcwd = 2, -100
        return libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0
    except (OSError, AttributeError):
        return False
