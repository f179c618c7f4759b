"""Query latency (image bytes -> top-10) and recall@10 at catalog sizes up to 1M, exact vs IVF-SQ8."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.backbones.inference import InferenceConfig, load_inference
from lookalike.backbones.registry import load_backbone
from lookalike.catalog import EXAMPLES_DIR, load_image_folder
from lookalike.index.ann import AnnConfig, AnnIndex, lists_for
from lookalike.index.exact import top_k
from lookalike.indexing.pipeline import prepare

K = 10
CHUNK = 100_000
N_PROBES = (8, 16, 32, 64)


@dataclass(frozen=True)
class QueryFigures:
    n_items: int
    method: str
    query_p50_ms: float  # embed + search
    query_p95_ms: float
    search_p50_ms: float
    recall_at_10: float
    bytes_per_item: float  # resident bytes per item the search needs in memory
    build_s: float


class ClusteredEmbeddings:
    """Synthetic unit vectors with nested clusters (category -> product line -> item), like real
    embeddings: uniform random vectors would be a degenerate worst case for any index."""

    def __init__(self, dim: int = 1280, n_clusters: int = 1000, lines_per_cluster: int = 50, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.dim = dim
        centres = _unit(rng.standard_normal((n_clusters, dim), dtype=np.float32))
        spread = rng.standard_normal((n_clusters * lines_per_cluster, dim), dtype=np.float32) / np.sqrt(dim)
        self.lines = _unit(np.repeat(centres, lines_per_cluster, axis=0) + 0.7 * spread)

    def sample(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        noise = rng.standard_normal((n, self.dim), dtype=np.float32) / np.sqrt(self.dim)
        return _unit(self.lines[rng.integers(len(self.lines), size=n)] + 0.5 * noise)

    def chunks(self, n: int) -> Iterator[np.ndarray]:
        for number, start in enumerate(range(0, n, CHUNK)):
            yield self.sample(min(CHUNK, n - start), seed=1000 + number)


def _unit(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def embedding_latencies_ms(n_queries: int) -> np.ndarray:
    """One query at a time as the app runs it: photo bytes -> decode/preprocess -> forward pass."""
    backbone = load_backbone("efficientnet-lite0")
    inference = load_inference(backbone, InferenceConfig())
    photos = [Path(item.image).read_bytes() for item in load_image_folder(EXAMPLES_DIR).items]
    inference.features(prepare(photos[0], backbone.preprocessing).pixels[None])  # warm-up
    latencies = []
    for number in range(n_queries):
        start = time.perf_counter()
        inference.features(prepare(photos[number % len(photos)], backbone.preprocessing).pixels[None])
        latencies.append((time.perf_counter() - start) * 1e3)
    return np.asarray(latencies)


def _search_latencies_ms(search, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    search(queries[:1])  # warm-up
    latencies, found = [], []
    for query in queries:
        start = time.perf_counter()
        found.append(search(query[None])[0])
        latencies.append((time.perf_counter() - start) * 1e3)
    return np.asarray(latencies), np.stack(found)


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / K for a, b in zip(found, truth, strict=True)]))


def _figures(n, method, embed_ms, search_ms, recall, bytes_per_item, build_s) -> QueryFigures:
    total = embed_ms[: len(search_ms)] + search_ms
    return QueryFigures(
        n_items=n,
        method=method,
        query_p50_ms=float(np.percentile(total, 50)),
        query_p95_ms=float(np.percentile(total, 95)),
        search_p50_ms=float(np.percentile(search_ms, 50)),
        recall_at_10=recall,
        bytes_per_item=bytes_per_item,
        build_s=build_s,
    )


def measure_size(n: int, embed_ms: np.ndarray, data: ClusteredEmbeddings, folder: Path) -> list[QueryFigures]:
    """Exact and IVF-SQ8 search over `n` clustered vectors, kept as a float32 file that is memory-mapped."""
    path = folder / f"catalog-{n}.npy"
    catalog = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, data.dim))
    start = 0
    for chunk in data.chunks(n):
        catalog[start : start + len(chunk)] = chunk
        start += len(chunk)
    catalog.flush()
    catalog = np.load(path, mmap_mode="r")
    queries = data.sample(len(embed_ms), seed=7)

    exact_ms, truth = _search_latencies_ms(lambda q: top_k(catalog, q, K).indices, queries)
    results = [_figures(n, "exact", embed_ms, exact_ms, 1.0, 4 * data.dim, 0.0)]

    build_start = time.perf_counter()
    ann = AnnIndex.train(catalog[: min(n, 50_000)], AnnConfig(n_lists=lists_for(n)))
    ann.add_chunks(catalog[s : s + CHUNK] for s in range(0, n, CHUNK))
    ann.vectors = catalog  # exact re-ranking reads only the candidates' rows from the mapped file
    build_s = time.perf_counter() - build_start
    for n_probe in N_PROBES:
        ann.index.nprobe = n_probe
        ann_ms, found = _search_latencies_ms(lambda q: ann.search(q, K).indices, queries)
        results.append(
            _figures(
                n, f"ivf-sq8 nprobe={n_probe}", embed_ms, ann_ms, _recall(found, truth), ann.bytes_per_item, build_s
            )
        )
    path.unlink()  # the mapping stays valid until `catalog` goes; the disk space returns then
    return results


def measure_queries(
    sizes: list[int], n_queries: int, data: ClusteredEmbeddings | None = None
) -> tuple[np.ndarray, list[QueryFigures]]:
    embed_ms = embedding_latencies_ms(n_queries)
    data = data or ClusteredEmbeddings()
    figures = []
    with tempfile.TemporaryDirectory() as folder:
        for n in sizes:
            figures.extend(measure_size(n, embed_ms, data, Path(folder)))
    return embed_ms, figures
