"""Embed catalog chunks with Ray Data: an actor pool, one model per actor, the local engine's code in each."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pyarrow as pa

from lookalike.catalog import CatalogItem
from lookalike.catalog.download import DownloadConfig, Fetched
from lookalike.catalog.remote import DownloadCounts
from lookalike.indexing.pipeline import PipelineConfig

RAY_MISSING = (
    "The Ray engine needs Ray Data, which is not installed: pip install -r requirements-scale.txt "
    "(or build in this process with --engine local)."
)


@dataclass(frozen=True)
class RayConfig:
    """How the work is spread: `concurrency` actors, each holding a model and `cpus_per_actor` CPUs."""

    concurrency: int = field(default=2, metadata={"help": "Ray actors, one model each"})
    # Also the runtime's thread count: actors on one machine then never oversubscribe its cores.
    cpus_per_actor: int = field(default=1, metadata={"help": "CPUs (and runtime threads) of each actor"})
    # None: RAY_ADDRESS from the environment when set (a cluster), else a new local Ray instance.
    address: str | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.cpus_per_actor < 1:
            raise ValueError(f"concurrency and cpus_per_actor must be >= 1, got {self}")


class ChunkEmbedder:
    """A Ray Data actor: loads the backbone once, then embeds every batch it is given."""

    def __init__(self, model: str, inference: str, threads: int, pipeline: PipelineConfig) -> None:
        from lookalike.backbones.inference import config_named, load_inference
        from lookalike.backbones.registry import load_backbone

        backbone = load_backbone(model)
        self.preprocessing = backbone.preprocessing
        # The runtime the driver resolved ("openvino-bf16", "onnx", ...): every actor runs the same.
        self.inference = load_inference(backbone, config_named(inference, threads=threads))
        self.pipeline = pipeline

    def __call__(self, batch: pa.Table) -> pa.Table:
        from lookalike.indexing.chunk import embed_chunk

        items = [
            CatalogItem(id=row["id"], label="", image=row["bytes"] if row["bytes"] is not None else Path(row["path"]))
            for row in batch.to_pylist()
        ]
        return embed_chunk(self.inference, self.preprocessing, items, self.pipeline)


class UrlFetcher:
    """A Ray Data actor: one downloader (its threads, its HTTP connections) fetching every batch of URLs
    into the download cache, which the workers and the driver share (one machine, or shared storage)."""

    def __init__(self, config: DownloadConfig) -> None:
        from lookalike.catalog.download import ImageDownloader

        self.downloader = ImageDownloader(config)

    def __call__(self, batch: pa.Table) -> pa.Table:
        results = self.downloader.fetch_all(batch.column("url").to_pylist(), show_progress=False)
        return pa.table(
            {
                "url": [r.url for r in results],
                "path": [str(r.path) if r.path else None for r in results],
                "error": [r.error for r in results],
                "outcome": [r.outcome for r in results],
            }
        )


def fetch_on_ray(
    urls: Sequence[str], download: DownloadConfig, show_progress: bool, config: RayConfig
) -> tuple[list[Fetched], DownloadCounts]:
    """`remote.fetch_here`'s answer, the downloads made on a pool of `config.concurrency` Ray actors."""
    with _ray_session(config) as ray:
        ray.data.DataContext.get_current().execution_options.preserve_order = True
        fetched = ray.data.from_items([{"url": url} for url in urls]).map_batches(
            UrlFetcher,
            fn_constructor_kwargs={"config": download},
            compute=ray.data.ActorPoolStrategy(size=config.concurrency),
            num_cpus=config.cpus_per_actor,
            # Batches of a few times each actor's download threads keep its connections busy.
            batch_size=max(1, min(4 * download.workers, -(-len(urls) // config.concurrency))),
            batch_format="pyarrow",
        )
        rows = pa.concat_tables(list(fetched.iter_batches(batch_format="pyarrow"))).to_pylist()
    results = [
        Fetched(
            r["url"], Path(r["path"]) if r["path"] else None, r["error"], r["outcome"] == "downloaded", r["outcome"]
        )
        for r in rows
    ]
    outcomes = Counter(result.outcome for result in results)
    return results, DownloadCounts(
        outcomes["downloaded"], outcomes["revalidated"], outcomes["failed"], outcomes["stale"]
    )


def embed_chunks_on_ray(
    chunks: Sequence[Sequence[CatalogItem]],
    model: str,
    inference: str,
    pipeline: PipelineConfig,
    config: RayConfig,
) -> Iterator[pa.Table]:
    """Each chunk's table (as `chunk_embedding.embed_chunk` makes it), in order, as results stream back."""
    if not chunks:
        return
    # What each actor is built with (ChunkEmbedder's arguments).
    embedder = {
        "model": model,
        "inference": str(inference),  # a runtime the build resolved, e.g. openvino-bf16
        "threads": config.cpus_per_actor,
        "pipeline": pipeline,
    }
    with _ray_session(config) as ray:
        yield from _embedded_chunks(ray, chunks, embedder, config)


@contextlib.contextmanager
def _ray_session(config: RayConfig) -> Iterator[ModuleType]:
    """Ray, connected to `config.address` (or RAY_ADDRESS, or a new local instance) unless it already is."""
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise RuntimeError(RAY_MISSING) from error
    started_here = not ray.is_initialized()
    if started_here:
        # The package travels with the job, so cluster nodes need only the requirements installed.
        package = str(Path(__file__).resolve().parents[1])
        ray.init(address=config.address, include_dashboard=False, runtime_env={"py_modules": [package]})
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()


def _embedded_chunks(
    ray: ModuleType, chunks: Sequence[Sequence[CatalogItem]], embedder: dict, config: RayConfig
) -> Iterator[pa.Table]:
    # Chunks are checkpointed in catalog order, so results must come back in the order they went in.
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    rows = [_as_row(item) for chunk in chunks for item in chunk]
    embedded = ray.data.from_items(rows).map_batches(
        ChunkEmbedder,
        fn_constructor_kwargs=embedder,
        # A fixed pool of `concurrency` actors (the `concurrency=` argument is deprecated since Ray 2.51).
        compute=ray.data.ActorPoolStrategy(size=config.concurrency),
        num_cpus=config.cpus_per_actor,
        # Small catalogs still reach every actor; large ones go in the runtime's best batch size.
        batch_size=max(1, min(embedder["pipeline"].batch_size, -(-len(rows) // config.concurrency))),
        batch_format="pyarrow",
    )
    batches = iter(embedded.iter_batches(batch_format="pyarrow"))
    yield from _cut_into_chunks(batches, [len(chunk) for chunk in chunks])


def _as_row(item: CatalogItem) -> dict[str, object]:
    """Paths travel as text (the workers read the files), in-memory images as their bytes."""
    is_bytes = isinstance(item.image, (bytes, bytearray))
    return {"id": item.id, "path": None if is_bytes else str(item.image), "bytes": item.image if is_bytes else None}


def _cut_into_chunks(batches: Iterator[pa.Table], sizes: Sequence[int]) -> Iterator[pa.Table]:
    """Re-slice a stream of tables into consecutive tables of the given sizes."""
    buffered: list[pa.Table] = []
    n_buffered = 0
    for size in sizes:
        while n_buffered < size:
            batch = next(batches)
            buffered.append(batch)
            n_buffered += batch.num_rows
        joined = pa.concat_tables(buffered)
        yield joined.slice(0, size)
        buffered, n_buffered = [joined.slice(size)], n_buffered - size
