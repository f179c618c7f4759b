"""Decode and preprocess images on worker threads while the model runs the batch before."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from lookalike.backbones.embedding import l2_normalize
from lookalike.backbones.inference import Inference, accepts_uint8
from lookalike.backbones.preprocessing import Preprocessing
from lookalike.images import ImageError, ImageSource, encode_jpeg, open_image, thumbnail

# How much larger than the resize target a draft-decoded JPEG stays (see `prepare`). Measured on six
# 3000x2250 photos: decoding 4-14x faster, embeddings at cosine >= 0.9987 to a full decode's (0.994
# with no margin), so a catalog photo uploaded again still passes recommender.SAME_PHOTO_SIMILARITY.
DRAFT_MARGIN = 2

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(frozen=True)
class PipelineConfig:
    """Batching and overlap of the fast embedding path."""

    # 32-64 is where ONNX Runtime's throughput levels off on 2 cores (benchmarks/README.md).
    batch_size: int = 32
    # Pillow releases the GIL while decoding and resizing, so threads overlap with inference: one per
    # core keeps every core busy while the runtime waits for a batch, without more threads than cores.
    decode_workers: int = field(default_factory=lambda: os.cpu_count() or 1)

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.decode_workers < 1:
            raise ValueError(
                f"batch_size and decode_workers must be >= 1, got {self.batch_size}, {self.decode_workers}"
            )


@dataclass(frozen=True)
class PreparedImage:
    """One decoded picture ready for the model, or why it could not be read."""

    pixels: np.ndarray | None  # (3, H, W) float32, or the (H, W, 3) uint8 crop for a runtime that normalises
    thumbnail_jpeg: bytes | None = None
    error: str | None = None


def ordered_map(
    function: Callable[[Item], Result], items: Iterable[Item], workers: int, ahead: int
) -> Iterator[Result]:
    """`map(function, items)` on a thread pool, in order, keeping at most `ahead` results in flight.

    The bound keeps memory flat however long the catalog is.
    """
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = deque()
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def prepare(
    source: ImageSource, preprocessing: Preprocessing, with_thumbnail: bool = False, uint8: bool = False
) -> PreparedImage:
    """Decode one source into model input (and the stored thumbnail); unreadable ones carry their reason.

    With `uint8` the input is the crop itself, for a runtime that normalises it (`accepts_uint8`).
    """
    try:
        # Draft-decode large JPEGs to about twice the resize target: the resize still has real pixels to
        # average (so the result stays close to a full decode), at a fraction of the decoding cost.
        image = open_image(source, min_size=DRAFT_MARGIN * preprocessing.resize_shortest_edge)
    except ImageError as error:
        return PreparedImage(pixels=None, error=str(error))
    jpeg = encode_jpeg(thumbnail(image)) if with_thumbnail else None
    pixels = preprocessing.crop_array(image) if uint8 else preprocessing.to_array(image)
    return PreparedImage(pixels=pixels, thumbnail_jpeg=jpeg)


def embed_batches(
    inference: Inference,
    prepared: Iterable[PreparedImage],
    batch_size: int,
) -> Iterator[tuple[list[PreparedImage], np.ndarray]]:
    """Group prepared images into batches and yield each with its features, readable rows only."""
    batch: list[PreparedImage] = []
    for item in prepared:
        batch.append(item)
        if len(batch) == batch_size:
            yield batch, _features(inference, batch)
            batch = []
    if batch:
        yield batch, _features(inference, batch)


def _features(inference: Inference, batch: Sequence[PreparedImage]) -> np.ndarray:
    readable = [item.pixels for item in batch if item.pixels is not None]
    if not readable:
        return np.zeros((0, 0), dtype=np.float32)
    return inference.features(np.stack(readable))


def embed_sources(
    inference: Inference,
    preprocessing: Preprocessing,
    sources: Sequence[ImageSource],
    config: PipelineConfig | None = None,
) -> tuple[np.ndarray, list[str | None]]:
    """Unit-norm embeddings of every readable source (rows in order) and, per source, its error."""
    config = config or PipelineConfig()
    prepared = ordered_map(
        lambda source: prepare(source, preprocessing, uint8=accepts_uint8(inference)),
        sources,
        config.decode_workers,
        ahead=2 * config.batch_size,
    )
    chunks, errors = [], []
    for batch, features in embed_batches(inference, prepared, config.batch_size):
        errors.extend(item.error for item in batch)
        if len(features):
            chunks.append(features)
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32), errors
    return l2_normalize(np.concatenate(chunks)), errors
