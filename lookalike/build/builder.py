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

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from lookalike.backbones.inference import Inference, InferenceConfig, InferenceKind, Precision, load_inference
from lookalike.backbones.registry import DEFAULT_BACKBONE, Backbone, load_backbone
from lookalike.build.chunk import CHUNK_SCHEMA, embed_chunk
from lookalike.build.incremental import HASH_COLUMN, REUSED_COLUMNS, content_hashes, reusable_rows
from lookalike.build.pipeline import PipelineConfig
from lookalike.build.ray_engine import RayConfig
from lookalike.catalog import CatalogItem, CatalogSource, load_catalog, stratified_split
from lookalike.index.ann import ANN_SEARCH, EXACT_SEARCH, AnnConfig, AnnMode, lists_for, wants_ann
from lookalike.index.store import IndexMetadata, save_index

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
    batch_size: int = 32
    # The fastest installed runtime that gives PyTorch's embeddings (OpenVINO, then ONNX Runtime, then PyTorch).
    inference: InferenceKind = InferenceKind.AUTO
    # fp32 unless asked: bf16 about doubles the model's speed on CPUs with native bfloat16, at ~97 % of
    # the same top-10 neighbours (benchmarks/run.py prints the agreement). Queries are still embedded in fp32.
    precision: Precision = Precision.FP32
    # Threads decoding and resizing images while the model runs (Pillow releases the GIL): one per core.
    decode_workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    test_fraction: float = 0.2
    split_seed: int = 0
    # Items per checkpoint file: a killed build loses at most this much work.
    chunk_size: int = 512
    # An approximate index beside the embeddings: AUTO from ann.ANN_MIN_ITEMS items up, ON/OFF to force it.
    ann: AnnMode = AnnMode.AUTO
    # Rows of the index already at `output` are reused for images whose id and bytes did not change.
    incremental: bool = True
    engine: Engine = Engine.LOCAL
    ray: RayConfig = field(default_factory=RayConfig)

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.chunk_size < 1:
            raise ValueError(f"batch_size and chunk_size must be >= 1, got {self.batch_size}, {self.chunk_size}")
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


def build_index(config: BuildConfig, show_progress: bool = True) -> BuildReport:
    """Embed every readable catalog image and write the dataset to `config.output`.

    Images whose id and bytes match a row of the index already at `config.output` keep that row.
    The rest are embedded in chunks checkpointed under a hidden sibling folder; running the same
    build again after an interruption embeds only the chunks that were not finished.
    """
    catalog = load_catalog(config.source)
    splits = catalog.given_splits or stratified_split(catalog.labels, config.test_fraction, config.split_seed)
    backbone = load_backbone(config.model)
    inference_config = InferenceConfig(kind=config.inference, precision=config.precision)
    inference = load_inference(backbone, inference_config)
    metadata = IndexMetadata(
        model_id=backbone.name,
        embedding_dim=backbone.embedding_dim,
        preprocessing=backbone.preprocessing,
        weights_fingerprint=backbone.fingerprint,
        source=catalog.source,
        split_seed=config.split_seed,
        test_fraction=config.test_fraction,
        n_items=len(catalog.items),
        split_column=config.source.split_column,
        inference=inference.name,
        precision=inference_config.precision.value,
    )
    hashes = content_hashes(catalog.items, config.decode_workers)
    keys = [(item.id, digest) for item, digest in zip(catalog.items, hashes, strict=True)]
    reused = _reusable(config, metadata, keys)
    reused_keys = set(_keys(reused))
    todo = [
        (item, key) for item, key in zip(catalog.items, keys, strict=True) if key[1] is None or key not in reused_keys
    ]
    work_dir = _prepare_work_dir(config, backbone, inference, catalog.source, [key for _, key in todo])
    embedded, n_resumed = _embed_with_checkpoints(config, backbone, inference, todo, work_dir, show_progress)
    skipped = [
        SkippedImage(id=item_id, reason=error)
        for item_id, error in zip(embedded.column("id").to_pylist(), embedded.column("error").to_pylist(), strict=True)
        if error
    ]
    rows = pa.concat_tables([reused, embedded.filter(pc.is_null(embedded.column("error"))).select(REUSED_COLUMNS)])
    table = _in_catalog_order(rows, keys, catalog.labels, splits)
    use_ann = wants_ann(config.ann, table.num_rows)
    metadata = dataclasses.replace(
        metadata,
        n_items=table.num_rows,
        skipped=[{"id": s.id, "reason": s.reason} for s in skipped],
        search=ANN_SEARCH if use_ann else EXACT_SEARCH,
        ann=dataclasses.asdict(AnnConfig(n_lists=lists_for(table.num_rows))) if use_ann else None,
    )
    save_index(_to_dataset(table, backbone.embedding_dim), metadata, config.output)
    shutil.rmtree(work_dir)
    return BuildReport(
        output=Path(config.output),
        n_indexed=table.num_rows,
        n_resumed=n_resumed,
        skipped=skipped,
        n_reused=reused.num_rows,
        n_embedded=len(todo) - n_resumed,
        search=metadata.search,
    )


def _embed_with_checkpoints(
    config: BuildConfig,
    backbone: Backbone,
    inference: Inference,
    todo: list[tuple[CatalogItem, tuple[str, str | None]]],
    work_dir: Path,
    show_progress: bool,
) -> tuple[pa.Table, int]:
    """Every `todo` item's chunk row (with its content hash), and how many came from earlier checkpoints."""
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
    embedded = pa.concat_tables([pq.read_table(path) for path in chunk_files]) if chunks else _empty_chunk()
    return embedded, n_resumed


def _reusable(config: BuildConfig, metadata: IndexMetadata, keys: list[tuple[str, str | None]]) -> pa.Table:
    wanted = {key for key in keys if key[1] is not None}
    previous = None
    if config.incremental:
        previous = reusable_rows(config.output, metadata, wanted, CHUNK_SCHEMA.field("embedding").type)
    if previous is None:
        return _empty_chunk().select(REUSED_COLUMNS)
    # An id listed twice with the same bytes matches one previous row twice; keep one.
    first_of_key = {key: row for row, key in enumerate(_keys(previous))}
    return previous.take(sorted(first_of_key.values()))


def _keys(table: pa.Table) -> list[tuple[str, str | None]]:
    """(id, content hash) of each row: what identifies an image across builds."""
    return list(zip(table["id"].to_pylist(), table[HASH_COLUMN].to_pylist(), strict=True))


def _empty_chunk() -> pa.Table:
    return CHUNK_SCHEMA.append(pa.field(HASH_COLUMN, pa.string())).empty_table()


def _embed_chunks(
    config: BuildConfig, backbone: Backbone, inference: Inference, chunks: Sequence[Sequence[CatalogItem]]
) -> Iterator[pa.Table]:
    """Each chunk's `chunk_embedding.CHUNK_SCHEMA` table, in order, from the configured engine."""
    if config.engine is Engine.RAY:
        from lookalike.build.ray_engine import embed_chunks_on_ray

        # The runtime this process resolved (e.g. AUTO -> onnx), so the metadata is true of every actor.
        yield from embed_chunks_on_ray(chunks, config.model, inference.name, config.pipeline, config.ray)
        return
    for items in chunks:
        yield embed_chunk(inference, backbone.preprocessing, items, config.pipeline)


def _in_catalog_order(
    rows: pa.Table, keys: list[tuple[str, str | None]], labels: list[str], splits: list[str]
) -> pa.Table:
    """One row per indexed catalog item, in catalog order, with its current label and split."""
    row_of_key = {key: row for row, key in enumerate(_keys(rows))}
    positions = [position for position, key in enumerate(keys) if key in row_of_key]
    table = rows.take([row_of_key[keys[position]] for position in positions])
    table = table.append_column("label", pa.array([labels[p] for p in positions], type=pa.string()))
    return table.append_column("split", pa.array([splits[p] for p in positions], type=pa.string()))


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
    if identity_file.exists() and identity_file.read_text() != identity_text:
        logger.info("Discarding checkpoints of a different build in %s", work_dir)
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    identity_file.write_text(identity_text)
    return work_dir


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
            # Digest of the source image's bytes: an incremental rebuild reuses the row while it matches.
            HASH_COLUMN: datasets.Value("string"),
        }
    )
    # Cast in Arrow: going through Python lists would create a float object per embedding component.
    arrow = table.select(list(features)).cast(features.arrow_schema)
    return datasets.Dataset(arrow, info=datasets.DatasetInfo(features=features))
