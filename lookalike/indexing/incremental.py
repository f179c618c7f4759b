"""Reuse a previous build's rows for images that did not change, so a rebuild embeds only new ones."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lookalike.catalog import CatalogItem
from lookalike.images import ImageSource
from lookalike.index.store import METADATA_FILE, EmbeddingIndex, IndexMetadata, IndexMismatchError, load_index
from lookalike.indexing.pipeline import ordered_map

logger = logging.getLogger(__name__)

HASH_COLUMN = "content_hash"

Key = tuple[str, str | None]  # (id, content hash): what identifies an image across builds


@dataclass
class PreviousBuild:
    """The build already at the output, and which of its rows each reusable (id, content hash) is."""

    index: EmbeddingIndex
    row_of_key: dict[Key, int]


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


def reusable_rows(previous: Path, metadata: IndexMetadata, wanted: set[Key]) -> PreviousBuild | None:
    """The build at `previous` and its rows whose (id, content hash) is wanted, if it was embedded
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
    # Only the two short columns are read; thumbnails and vectors stay on disk until a row is copied.
    keys = zip(table.column("id").to_pylist(), table.column(HASH_COLUMN).to_pylist(), strict=True)
    row_of_key: dict[Key, int] = {}
    for row, key in enumerate(keys):
        if key in wanted:
            row_of_key.setdefault(key, row)  # an id listed twice with the same bytes: keep the first row
    return PreviousBuild(index, row_of_key)
