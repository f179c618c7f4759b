"""Build an embeddings dataset from a catalog, resumably, skipping images that cannot be read."""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from .backbones import DEFAULT_BACKBONE, Backbone, load_backbone
from .catalog import Catalog, CatalogItem, CatalogSource, load_catalog, stratified_split
from .embedding import l2_normalize
from .embedding_store import IndexMetadata, save_index
from .inference import Inference, InferenceConfig, InferenceKind, load_inference
from .pipeline import PipelineConfig, embed_batches, ordered_map, prepare
from .preprocessing import Preprocessing

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildConfig:
    """Everything that decides what `build_index` writes."""

    source: CatalogSource = field(default_factory=CatalogSource)
    model: str = DEFAULT_BACKBONE
    output: Path = Path("embeddings") / DEFAULT_BACKBONE
    batch_size: int = 32
    # ONNX Runtime when available (same embeddings as PyTorch to ~1e-6, 2-3x faster here).
    inference: InferenceKind = InferenceKind.AUTO
    # Threads decoding and resizing images while the model runs (Pillow releases the GIL).
    decode_workers: int = 2
    test_fraction: float = 0.2
    split_seed: int = 0
    # Items per checkpoint file: a killed build loses at most this much work.
    chunk_size: int = 512

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.chunk_size < 1:
            raise ValueError(f"batch_size and chunk_size must be >= 1, got {self.batch_size}, {self.chunk_size}")
        object.__setattr__(self, "inference", InferenceKind(self.inference))

    @property
    def pipeline(self) -> PipelineConfig:
        return PipelineConfig(batch_size=self.batch_size, decode_workers=self.decode_workers)


@dataclass(frozen=True)
class SkippedImage:
    id: str
    reason: str


@dataclass
class BuildReport:
    output: Path
    n_indexed: int
    n_resumed: int
    skipped: list[SkippedImage]


def build_index(config: BuildConfig, show_progress: bool = True) -> BuildReport:
    """Embed every readable catalog image and write the dataset to `config.output`.

    Work is checkpointed in chunks under a hidden sibling folder; running the same build again
    after an interruption embeds only the chunks that were not finished.
    """
    catalog = load_catalog(config.source)
    splits = catalog.given_splits or stratified_split(catalog.labels, config.test_fraction, config.split_seed)
    backbone = load_backbone(config.model)
    inference = load_inference(backbone, InferenceConfig(kind=config.inference))
    work_dir = _prepare_work_dir(config, catalog, backbone, inference)
    n_chunks = -(-len(catalog.items) // config.chunk_size)
    n_resumed = 0
    with tqdm(total=len(catalog.items), desc=f"Embedding with {backbone.name}", disable=not show_progress) as bar:
        for chunk in range(n_chunks):
            start = chunk * config.chunk_size
            items = catalog.items[start : start + config.chunk_size]
            chunk_file = work_dir / f"chunk-{chunk:06d}.parquet"
            if chunk_file.exists():
                n_resumed += len(items)
            else:
                table = _embed_chunk(
                    inference, backbone.preprocessing, items, splits[start : start + len(items)], config.pipeline
                )
                _write_atomically(table, chunk_file)
            bar.update(len(items))
    table = pa.concat_tables(pq.read_table(work_dir / f"chunk-{c:06d}.parquet") for c in range(n_chunks))
    errors = table.column("error").to_pylist()
    skipped = [SkippedImage(id=i, reason=e) for i, e in zip(table.column("id").to_pylist(), errors, strict=True) if e]
    kept = table.filter(pc.is_null(table.column("error"))).drop_columns(["error"])
    metadata = IndexMetadata(
        model_id=backbone.name,
        embedding_dim=backbone.embedding_dim,
        preprocessing=backbone.preprocessing,
        weights_fingerprint=backbone.fingerprint,
        source=catalog.source,
        split_seed=config.split_seed,
        test_fraction=config.test_fraction,
        n_items=kept.num_rows,
        split_column=config.source.split_column,
        skipped=[{"id": s.id, "reason": s.reason} for s in skipped],
        inference=inference.name,
    )
    save_index(_to_dataset(kept, backbone.embedding_dim), metadata, config.output)
    shutil.rmtree(work_dir)
    return BuildReport(output=Path(config.output), n_indexed=kept.num_rows, n_resumed=n_resumed, skipped=skipped)


def _prepare_work_dir(config: BuildConfig, catalog: Catalog, backbone: Backbone, inference: Inference) -> Path:
    """The checkpoint folder, emptied if it belongs to a different build."""
    work_dir = Path(config.output).with_name(f".{Path(config.output).name}.partial")
    identity = {
        "model": backbone.name,
        "weights": backbone.fingerprint,
        "inference": inference.name,
        "preprocessing": backbone.preprocessing.to_dict(),
        "source": catalog.source,
        "n_items": len(catalog.items),
        "chunk_size": config.chunk_size,
        "split_seed": config.split_seed,
        "test_fraction": config.test_fraction,
    }
    identity_file = work_dir / "build.json"
    # Compared as JSON text: a JSON round trip turns the preprocessing's tuples into lists.
    identity_text = json.dumps(identity, sort_keys=True)
    if identity_file.exists() and identity_file.read_text() != identity_text:
        logger.info("Discarding checkpoints of a different build in %s", work_dir)
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    identity_file.write_text(identity_text)
    return work_dir


def _embed_chunk(
    inference: Inference,
    preprocessing: Preprocessing,
    items: list[CatalogItem],
    splits: list[str],
    pipeline: PipelineConfig,
) -> pa.Table:
    prepared = ordered_map(
        lambda item: prepare(item.image, preprocessing, with_thumbnail=True),
        items,
        workers=pipeline.decode_workers,
        ahead=2 * pipeline.batch_size,
    )
    embeddings, thumbnails, errors = [], [], []
    for batch, features in embed_batches(inference, prepared, pipeline.batch_size):
        vectors = iter(l2_normalize(features))
        for item in batch:
            readable = item.pixels is not None
            embeddings.append(next(vectors).tolist() if readable else None)
            thumbnails.append({"bytes": item.thumbnail_jpeg, "path": None} if readable else None)
            errors.append(item.error)
    return pa.table(
        {
            "id": [item.id for item in items],
            "label": [item.label for item in items],
            "split": splits,
            "image": thumbnails,
            "embedding": embeddings,
            "error": pa.array(errors, type=pa.string()),
        }
    )


def _write_atomically(table: pa.Table, path: Path) -> None:
    partial = path.with_suffix(".tmp")
    pq.write_table(table, partial)
    os.replace(partial, path)


def _to_dataset(table: pa.Table, embedding_dim: int):
    import datasets

    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "label": datasets.Value("string"),
            "split": datasets.Value("string"),
            "image": datasets.Image(),
            "embedding": datasets.List(datasets.Value("float32"), length=embedding_dim),
        }
    )
    return datasets.Dataset.from_dict(table.to_pydict(), features=features)
