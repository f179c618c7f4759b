"""Build an embeddings dataset from a catalog: incrementally, resumably, here or on Ray, skipping bad images."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from lookalike.backbones.inference import Inference, InferenceConfig, InferenceKind, Precision, load_inference
from lookalike.backbones.registry import DEFAULT_BACKBONE, Backbone, load_backbone
from lookalike.catalog import CatalogItem, CatalogSource, RejectedRow, load_catalog, stratified_split
from lookalike.catalog.download import DownloadConfig
from lookalike.catalog.remote import DownloadCounts, Fetcher, fetch_here, fetch_remote_images
from lookalike.index.ann import ANN_FILE
from lookalike.index.card import public_source
from lookalike.index.neighbours import PRECOMPUTED
from lookalike.index.search import ANN_MIN_ITEMS, EXACT_SEARCH, AnnMode, AnnReuse, SearchMethod
from lookalike.index.store import IndexMetadata
from lookalike.index.writer import ROWS_PER_SHARD, IndexWriter
from lookalike.indexing.assemble import BLOCK_ROWS, PREVIOUS, RowPlan, chunk_outcomes, plan_rows, row_blocks
from lookalike.indexing.chunk import embed_chunk
from lookalike.indexing.incremental import HASH_COLUMN, PreviousBuild, content_hashes, reusable_rows
from lookalike.indexing.output_guard import holding_output_lock, refuse_duplicate_ids
from lookalike.indexing.pipeline import PipelineConfig
from lookalike.indexing.ray_engine import RayConfig

logger = logging.getLogger(__name__)


class Engine(StrEnum):
    LOCAL = "local"  # this process: decode threads feeding one model
    RAY = "ray"  # Ray Data actors, one model each, on a local Ray instance or a cluster (RAY_ADDRESS)


@dataclass(frozen=True)
class BuildConfig:
    """Everything that decides what `build_index` writes."""

    source: CatalogSource = field(default_factory=CatalogSource)
    model: str = DEFAULT_BACKBONE
    output: Path = Path("embeddings") / DEFAULT_BACKBONE
    batch_size: int = field(default=32, metadata={"help": "images per forward pass"})
    inference: InferenceKind = field(
        default=InferenceKind.AUTO,
        metadata={
            "help": "what runs the model: auto = the fastest installed runtime with PyTorch's embeddings "
            "(OpenVINO, then ONNX Runtime, then PyTorch)"
        },
    )
    # fp32 unless asked: bf16 about doubles the model's speed on CPUs with native bfloat16, at ~97 % of
    # the same top-10 neighbours (benchmarks/run.py prints the agreement). Queries are still embedded in fp32.
    precision: Precision = field(
        default=Precision.FP32,
        metadata={
            "help": "bf16 about doubles the model's speed on CPUs with native bfloat16 (AVX-512 BF16, AMX); its "
            "neighbours differ slightly from fp32's (benchmarks/run.py prints by how much). Recorded in the metadata"
        },
    )
    # Pillow releases the GIL, so decode threads overlap the model's forward pass: one per core.
    decode_workers: int = field(
        default_factory=lambda: os.cpu_count() or 1,
        metadata={"help": "threads decoding images during inference (default: one per core)"},
    )
    test_fraction: float = field(default=0.2, metadata={"help": "share of each category kept for test"})
    split_seed: int = field(default=0, metadata={"flag": "seed", "help": "seed of the train/test split"})
    chunk_size: int = field(
        default=512,
        metadata={"help": "images per checkpoint: a build that is killed and rerun redoes at most this many"},
    )
    ann: AnnMode = field(
        default=AnnMode.AUTO,
        metadata={
            "help": f"approximate index (FAISS IVF-SQ8) beside the embeddings: auto = from {ANN_MIN_ITEMS:,} items up"
        },
    )
    # Rows of the index already at `output` are reused for images whose id and bytes did not change.
    incremental: bool = True
    engine: Engine = field(
        default=Engine.LOCAL,
        metadata={
            "help": "where images are embedded: this process, or Ray Data actors (pip install -r "
            "requirements-scale.txt; a cluster through RAY_ADDRESS, else a local Ray instance)"
        },
    )
    ray: RayConfig = field(default_factory=RayConfig)
    neighbours: int = field(
        default=PRECOMPUTED,
        metadata={
            "help": "nearest rows precomputed per product, so that 'similar to product X' needs no search "
            "(0: none; a search per product, minutes at a million)"
        },
    )
    # Photos at URLs (a product feed's): fetched concurrently into a cache that a rebuild revalidates.
    download: DownloadConfig = field(default_factory=DownloadConfig)
    # Rows per parquet data file of the output folder (the Hub dataset repository).
    rows_per_shard: int = ROWS_PER_SHARD
    # Rows gathered in memory at a time while the output is written.
    block_rows: int = BLOCK_ROWS
    # The `license:` of the dataset card: the catalog photos' licence (a Hub licence id), "other" if unknown.
    licence: str = field(
        default="other",
        metadata={
            "flag": "license",
            "help": "licence of the catalog photos, as a Hub licence id (e.g. cc-by-4.0), for the dataset card",
        },
    )

    def __post_init__(self) -> None:
        for name in ("batch_size", "chunk_size", "rows_per_shard", "block_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.neighbours < 0:
            raise ValueError(f"neighbours must be >= 0, got {self.neighbours}")
        object.__setattr__(self, "inference", InferenceKind(self.inference))
        object.__setattr__(self, "precision", Precision(self.precision))
        object.__setattr__(self, "ann", AnnMode(self.ann))
        object.__setattr__(self, "engine", Engine(self.engine))

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
    n_resumed: int  # embedded by an earlier, interrupted run of the same build
    skipped: list[SkippedImage]
    n_reused: int = 0  # taken unchanged from the index that was at `output`
    n_embedded: int = 0  # embedded by this run
    search: str = EXACT_SEARCH
    ann_update: str | None = None  # how the approximate index was made: trained, extended or refilled
    rejected: list[RejectedRow] = field(default_factory=list)  # source rows left out: bad feed rows, unfetchable photos
    downloads: DownloadCounts = field(default_factory=DownloadCounts)


@holding_output_lock  # a second build into the same output says which process holds it and stops
def build_index(config: BuildConfig, show_progress: bool = True) -> BuildReport:
    """Embed every readable catalog image and write the dataset to `config.output`.

    Images whose id and bytes match a row of the index already at `config.output` keep that row.
    The rest are embedded in chunks checkpointed under a hidden sibling folder; running the same
    build again after an interruption embeds only the chunks that were not finished.
    """
    catalog, downloads = fetch_remote_images(
        load_catalog(config.source), config.download, show_progress, _fetcher(config)
    )
    for row in catalog.rejected:  # the report lists them too: build_index.py prints them at the end
        logger.info("Left out %s: %s", row.row, row.reason)
    refuse_duplicate_ids([item.id for item in catalog.items])
    splits = catalog.given_splits or stratified_split(catalog.labels, config.test_fraction, config.split_seed)
    backbone = load_backbone(config.model)
    inference_config = InferenceConfig(kind=config.inference, precision=config.precision)
    inference = load_inference(backbone, inference_config)
    metadata = IndexMetadata(
        model_id=backbone.name,
        embedding_dim=backbone.embedding_dim,
        preprocessing=backbone.preprocessing,
        weights_fingerprint=backbone.fingerprint,
        source=public_source(catalog.source),  # pushed with the folder: a folder's name, never its path
        split_seed=config.split_seed,
        test_fraction=config.test_fraction,
        n_items=len(catalog.items),
        split_column=config.source.split_column,
        inference=inference.name,
        precision=inference_config.precision.value,
    )
    hashes = content_hashes(catalog.items, config.decode_workers)
    keys = [(item.id, digest) for item, digest in zip(catalog.items, hashes, strict=True)]
    previous = None
    if config.incremental:
        previous = reusable_rows(config.output, metadata, {key for key in keys if key[1] is not None})
    todo = [
        (item, key)
        for item, key in zip(catalog.items, keys, strict=True)
        if key[1] is None or previous is None or key not in previous.row_of_key
    ]
    todo_keys = [key for _, key in todo]
    work_dir = _prepare_work_dir(config, backbone, inference, catalog.source, todo_keys)
    chunk_files, n_resumed = _embed_with_checkpoints(config, backbone, inference, todo, work_dir, show_progress)
    outcome = chunk_outcomes(chunk_files, todo_keys, config.chunk_size)
    skipped = [SkippedImage(id=item_id, reason=error) for item_id, error in outcome.skipped]
    plan = plan_rows(keys, previous, outcome)
    ann = _approximate_index_plan(config, plan, previous)
    metadata = dataclasses.replace(
        metadata,
        n_items=len(plan),
        skipped=[{"id": s.id, "reason": s.reason} for s in skipped]
        + [{"id": r.row, "reason": r.reason} for r in catalog.rejected],
        search=ann.search,
    )
    # Row by row into shards and the serving matrix: memory holds one block, whatever the catalog size.
    columns = catalog.product_columns
    writer = IndexWriter(config.output, len(plan), backbone.embedding_dim, config.rows_per_shard, columns)
    for block in row_blocks(plan, catalog.items, splits, columns, previous, chunk_files, config.block_rows):
        writer.write(block)
    writer.finish(metadata, config.licence, ann.reuse, config.neighbours)
    shutil.rmtree(work_dir)
    return BuildReport(
        output=Path(config.output),
        n_indexed=len(plan),
        n_resumed=n_resumed,
        skipped=skipped,
        n_reused=plan.n_reused,
        n_embedded=len(todo) - n_resumed,
        search=metadata.search.name,
        ann_update=ann.update,
        rejected=catalog.rejected,
        downloads=downloads,
    )


@dataclass(frozen=True)
class _AnnPlan:
    search: SearchMethod
    reuse: AnnReuse | None  # a previous build's approximate index to keep
    update: str | None  # "trained", "extended" (new rows added) or "refilled" (all rows added again)


def _approximate_index_plan(config: BuildConfig, plan: RowPlan, previous: PreviousBuild | None) -> _AnnPlan:
    """Train a new approximate index, or keep the previous build's cells while the catalog has not
    outgrown search.ANN_RETRAIN_GROWTH times the size they were trained on (training is the slow part)."""
    chosen = SearchMethod.for_catalog(config.ann, len(plan))
    if chosen.ann is None:
        return _AnnPlan(chosen, None, None)
    before = previous.index if previous else None
    if before is None or before.metadata.search.outgrown_by(len(plan)):
        return _AnnPlan(chosen, None, "trained")
    n_before = len(before)
    appended = bool(
        len(plan) >= n_before
        and np.all(plan.chunks[:n_before] == PREVIOUS)
        and np.array_equal(plan.rows[:n_before], np.arange(n_before))
    )
    reuse = AnnReuse(before.path / ANN_FILE, n_before, appended)
    return _AnnPlan(before.metadata.search, reuse, "extended" if appended else "refilled")


def _embed_with_checkpoints(
    config: BuildConfig,
    backbone: Backbone,
    inference: Inference,
    todo: list[tuple[CatalogItem, tuple[str, str | None]]],
    work_dir: Path,
    show_progress: bool,
) -> tuple[list[Path], int]:
    """The checkpoint files holding every `todo` item's row, and how many came from earlier runs."""
    chunks = [todo[start : start + config.chunk_size] for start in range(0, len(todo), config.chunk_size)]
    chunk_files = [work_dir / f"chunk-{number:06d}.parquet" for number in range(len(chunks))]
    pending = [number for number, path in enumerate(chunk_files) if not path.exists()]
    n_resumed = len(todo) - sum(len(chunks[number]) for number in pending)
    with tqdm(
        total=len(todo), initial=n_resumed, desc=f"Embedding with {backbone.name}", disable=not show_progress
    ) as bar:
        pending_items = [[item for item, _ in chunks[number]] for number in pending]
        for number, table in zip(pending, _embed_chunks(config, backbone, inference, pending_items), strict=True):
            chunk_hashes = pa.array([digest for _, (_, digest) in chunks[number]], type=pa.string())
            _write_atomically(table.append_column(HASH_COLUMN, chunk_hashes), chunk_files[number])
            bar.update(table.num_rows)
    return chunk_files, n_resumed


def _embed_chunks(
    config: BuildConfig, backbone: Backbone, inference: Inference, chunks: Sequence[Sequence[CatalogItem]]
) -> Iterator[pa.Table]:
    """Each chunk's `chunk_embedding.CHUNK_SCHEMA` table, in order, from the configured engine."""
    if config.engine is Engine.RAY:
        from lookalike.indexing.ray_engine import embed_chunks_on_ray

        # The runtime this process resolved (e.g. AUTO -> onnx), so the metadata is true of every actor.
        yield from embed_chunks_on_ray(chunks, config.model, inference.name, config.pipeline, config.ray)
        return
    for items in chunks:
        yield embed_chunk(inference, backbone.preprocessing, items, config.pipeline)


def _fetcher(config: BuildConfig) -> Fetcher:
    """Where photos at URLs are downloaded: on the engine's workers (Ray actors), or on threads here."""
    if config.engine is Engine.RAY:
        from lookalike.indexing.ray_engine import fetch_on_ray

        return lambda urls, download, progress: fetch_on_ray(urls, download, progress, config.ray)
    return fetch_here


def _prepare_work_dir(
    config: BuildConfig, backbone: Backbone, inference: Inference, source: str, todo: list[tuple[str, str | None]]
) -> Path:
    """The checkpoint folder, emptied if it belongs to a different build."""
    work_dir = Path(config.output).with_name(f".{Path(config.output).name}.partial")
    identity = {
        "model": backbone.name,
        "weights": backbone.fingerprint,
        "inference": inference.name,
        "preprocessing": backbone.preprocessing.to_dict(),
        "source": source,
        # Which images this build embeds (what was not reused), by id and content.
        "todo": hashlib.blake2b(json.dumps(todo).encode(), digest_size=16).hexdigest(),
        "n_todo": len(todo),
        "chunk_size": config.chunk_size,
    }
    identity_file = work_dir / "build.json"
    # Compared as JSON text: a JSON round trip turns the preprocessing's tuples into lists.
    identity_text = json.dumps(identity, sort_keys=True)
    if identity_file.exists() and identity_file.read_text(encoding="utf-8") != identity_text:
        logger.info("Discarding checkpoints of a different build in %s", work_dir)
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    identity_file.write_text(identity_text, encoding="utf-8")
    return work_dir


def _write_atomically(table: pa.Table, path: Path) -> None:
    partial = path.with_suffix(".tmp")
    pq.write_table(table, partial)
    os.replace(partial, path)
