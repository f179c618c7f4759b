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
from .embedding import embed_images
from .embedding_store import IndexMetadata, save_index
from .images import ImageError, encode_jpeg, open_image, thumbnail

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildConfig:
    """Everything that decides what `build_index` writes."""

    source: CatalogSource = field(default_factory=CatalogSource)
    model: str = DEFAULT_BACKBONE
    output: Path = Path("embeddings") / DEFAULT_BACKBONE
    batch_size: int = 32
    test_fraction: float = 0.2
    split_seed: int = 0
    # Items per checkpoint file: a killed build loses at most this much work.
    chunk_size: int = 512

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.chunk_size < 1:
            raise ValueError(f"batch_size and chunk_size must be >= 1, got {self.batch_size}, {self.chunk_size}")


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
    work_dir = _prepare_work_dir(config, catalog, backbone)
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
                table = _embed_chunk(backbone, items, splits[start : start + len(items)], config.batch_size)
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
    )
    save_index(_to_dataset(kept, backbone.embedding_dim), metadata, config.output)
    shutil.rmtree(work_dir)
    return BuildReport(output=Path(config.output), n_indexed=kept.num_rows, n_resumed=n_resumed, skipped=skipped)


def _prepare_work_dir(config: BuildConfig, catalog: Catalog, backbone: Backbone) -> Path:
    """The checkpoint folder, emptied if it belongs to a different build."""
    work_dir = Path(config.output).with_name(f".{Path(config.output).name}.partial")
    identity = {
        "model": backbone.name,
        "weights": backbone.fingerprint,
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


def _embed_chunk(backbone: Backbone, items: list[CatalogItem], splits: list[str], batch_size: int) -> pa.Table:
    images, errors = [], []
    for item in items:
        try:
            images.append(open_image(item.image))
            errors.append(None)
        except ImageError as error:
            images.append(None)
            errors.append(str(error))
    readable = [image for image in images if image is not None]
    vectors = iter(embed_images(backbone, readable, batch_size))
    embeddings, thumbnails = [], []
    for image in images:
        embeddings.append(next(vectors) if image is not None else None)
        thumbnails.append({"bytes": encode_jpeg(thumbnail(image)), "path": None} if image is not None else None)
    return pa.table(
        {
            "id": [item.id for item in items],
            "label": [item.label for item in items],
            "split": splits,
            "image": thumbnails,
            "embedding": [e.tolist() if e is not None else None for e in embeddings],
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
