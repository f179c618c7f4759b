"""One chunk of catalog items in, their thumbnails and unit embeddings out: what every build engine runs."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from lookalike.backbones.embedding import l2_normalize
from lookalike.backbones.inference import Inference, accepts_uint8
from lookalike.backbones.preprocessing import Preprocessing
from lookalike.catalog import CatalogItem
from lookalike.indexing.pipeline import PipelineConfig, embed_batches, ordered_map, prepare

# A checkpointed chunk. `embedding` and `image` are null, and `error` says why, for unreadable images.
CHUNK_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        ("embedding", pa.list_(pa.float32())),
        ("error", pa.string()),
    ]
)


def embed_chunk(
    inference: Inference, preprocessing: Preprocessing, items: Sequence[CatalogItem], pipeline: PipelineConfig
) -> pa.Table:
    """Decode on `pipeline.decode_workers` threads while the model runs; rows in the order of `items`."""
    prepared = ordered_map(
        lambda item: prepare(item.image, preprocessing, with_thumbnail=True, uint8=accepts_uint8(inference)),
        items,
        workers=pipeline.decode_workers,
        ahead=2 * pipeline.batch_size,
    )
    embeddings, thumbnails, errors = [], [], []
    for batch, features in embed_batches(inference, prepared, pipeline.batch_size):
        vectors = iter(l2_normalize(features))
        for item in batch:
            readable = item.pixels is not None
            embeddings.append(next(vectors) if readable else None)
            thumbnails.append({"bytes": item.thumbnail_jpeg, "path": None} if readable else None)
            errors.append(item.error)
    columns = {"id": [item.id for item in items], "image": thumbnails, "embedding": embeddings, "error": errors}
    return pa.table(columns, schema=CHUNK_SCHEMA)
