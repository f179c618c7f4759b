"""Reuse a previous build's rows for images that did not change, so a rebuild embeds only new ones."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from lookalike.build.pipeline import ordered_map
from lookalike.catalog import CatalogItem
from lookalike.images import ImageSource
from lookalike.index.store import METADATA_FILE, IndexMetadata, IndexMismatchError, load_index

logger = logging.getLogger(__name__)

HASH_COLUMN = "content_hash"
# The columns a reused row carries over; label and split are recomputed from the current catalog.
REUSED_COLUMNS = ("id", HASH_COLUMN, "image", "embedding")


def content_hash(source: ImageSource) -> str | None:
    """A digest of the image file's bytes; None when there are no bytes to hash (never reused)."""
    if isinstance(source, (str, Path)):
        try:
            data = Path(source).read_bytes()
        except OSError:
            return None
    elif isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        return None
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def content_hashes(items: Sequence[CatalogItem], workers: int) -> list[str | None]:
    """Every item's `content_hash`, read on `workers` threads (hashlib releases the GIL)."""
    return list(ordered_map(lambda item: content_hash(item.image), items, workers=workers, ahead=4 * workers))


def reusable_rows(
    previous: Path, metadata: IndexMetadata, wanted: set[tuple[str, str]], embedding_type: pa.DataType
) -> pa.Table | None:
    """The rows of the index at `previous` whose (id, content hash) is wanted, if it was embedded
    exactly as `metadata` says (same model, weights, preprocessing and runtime); else None."""
    if not (Path(previous) / METADATA_FILE).is_file():
        return None
    try:
        index = load_index(previous)
        index.metadata.check_matches(
            metadata.model_id, metadata.embedding_dim, metadata.preprocessing, metadata.weights_fingerprint
        )
    except (IndexMismatchError, OSError, ValueError) as error:
        logger.info("Not reusing %s: %s", previous, error)
        return None
    table = index.dataset.data.table
    if index.metadata.inference != metadata.inference or HASH_COLUMN not in table.column_names:
        logger.info("Not reusing %s: built by another runtime, or before content hashes were stored", previous)
        return None
    keys = pc.binary_join_element_wise(table.column("id"), table.column(HASH_COLUMN), "\0")
    keep = pc.is_in(keys, value_set=pa.array([f"{item_id}\0{digest}" for item_id, digest in wanted]))
    rows = table.filter(pc.fill_null(keep, False)).select(list(REUSED_COLUMNS))
    position = rows.column_names.index("embedding")
    return rows.set_column(position, "embedding", rows.column("embedding").cast(embedding_type))
