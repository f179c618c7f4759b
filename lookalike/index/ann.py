"""Approximate top-K for large catalogs: FAISS inverted lists of 8-bit vectors, re-ranked exactly."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.index.exact import EVERY_ROW, Metric, RowFilter, SearchResults, check_k, cosine_to_euclidean, top_k

ANN_FILE = "ann.faiss"


@dataclass(frozen=True)
class AnnConfig:
    """IVF-SQ8: `n_lists` k-means cells, `n_probe` of them scanned per query, 1 byte per dimension."""

    n_lists: int = 1024
    # Chosen by measurement (benchmarks/README.md): the smallest that keeps recall@10 >= 0.95 at 1M.
    n_probe: int = 32
    # Candidates per wanted result that are re-scored with the exact float32 vectors.
    rerank_factor: int = 4
    train_size: int = 50_000
    # k-means passes over the training sample; past 10 the cells barely move (FAISS's default is 25).
    kmeans_iterations: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.n_lists, self.n_probe, self.rerank_factor, self.train_size, self.kmeans_iterations) < 1:
            raise ValueError(f"all AnnConfig values must be >= 1, got {self}")


def lists_for(n_items: int) -> int:
    """About sqrt(N) cells, a power of two: 128 at 10k, 256 at 100k, 1024 at 1M.

    >>> lists_for(1_000_000)
    1024
    """
    return int(2 ** round(np.log2(max(1.0, np.sqrt(n_items)))))


class AnnIndex:
    """Cosine top-K over unit vectors through a FAISS IVF-SQ8 index (inner product, not FAISS's L2 default)."""

    def __init__(self, index, config: AnnConfig, vectors: np.ndarray | None = None) -> None:
        self.index = index
        self.config = config
        # The exact vectors (ideally memory-mapped): only the few candidate rows per query are read.
        self.vectors = vectors
        index.nprobe = min(config.n_probe, index.nlist)

    @classmethod
    def train(cls, sample: np.ndarray, config: AnnConfig | None = None) -> AnnIndex:
        """An empty index whose cells and quantiser ranges are learnt from a sample of the catalog."""
        import faiss

        config = config or AnnConfig()
        rng = np.random.default_rng(config.seed)
        # Subsample before converting: `sample` may be a memory-mapped catalog far larger than RAM.
        if len(sample) > config.train_size:
            sample = sample[np.sort(rng.choice(len(sample), config.train_size, replace=False))]
        sample = np.ascontiguousarray(sample, dtype=np.float32)
        # FAISS wants >= 39 training points per cell; small catalogs get fewer cells.
        n_lists = max(1, min(config.n_lists, len(sample) // 39))
        quantizer = faiss.IndexFlatIP(sample.shape[1])
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, sample.shape[1], n_lists, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        index.cp.seed = config.seed
        index.cp.niter = config.kmeans_iterations
        index.train(sample)
        return cls(index, config)

    @classmethod
    def build(cls, embeddings: np.ndarray, config: AnnConfig | None = None) -> AnnIndex:
        """Train on (a sample of) the catalog and add every row; keeps `embeddings` for re-ranking.

        Rows are added 100,000 at a time: a memory-mapped catalog is then never read into RAM whole.
        """
        ann = cls.train(embeddings, config)
        ann.add_chunks(embeddings[start : start + 100_000] for start in range(0, len(embeddings), 100_000))
        ann.vectors = embeddings
        return ann

    def add_chunks(self, chunks: Iterable[np.ndarray]) -> None:
        """Add rows in order, chunk by chunk, so a large catalog never sits in memory as float32."""
        for chunk in chunks:
            self.index.add(np.ascontiguousarray(chunk, dtype=np.float32))

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def bytes_per_item(self) -> float:
        """Stored size per catalog item: codes, ids and the cells' share of the centroids."""
        import faiss

        return len(faiss.serialize_index(self.index)) / max(1, len(self))

    def search(self, queries: np.ndarray, k: int) -> SearchResults:
        """The approximate `k` best rows per query, best first, scored by cosine similarity."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        check_k(k, len(self))
        n_candidates = min(len(self), k * self.config.rerank_factor) if self.vectors is not None else k
        scores, indices = self.index.search(queries, n_candidates)
        if self.vectors is not None:
            scores, indices = self._rerank(queries, indices)
        return SearchResults(indices=indices[:, :k].astype(np.int64), scores=scores[:, :k].astype(np.float32))

    def top_k(self, queries: np.ndarray, k: int, metric: Metric | str = Metric.COSINE, rows=EVERY_ROW) -> SearchResults:
        """The `VectorSearch.top_k` contract answered from the index: never a row that `rows` keeps out.

        Asks for more candidates until each query has `k` acceptable ones. A query that still lacks
        them (a filter keeping few rows, or all probed cells used up) is answered by exact search over
        the stored vectors, so `k` rows always come back, as from `search.top_k`.
        """
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        n_candidates = rows.n_searchable(len(self))
        check_k(k, n_candidates)
        excluded = rows.excluded(len(queries))
        indices = np.zeros((len(queries), k), dtype=np.int64)
        scores = np.zeros((len(queries), k), dtype=np.float32)
        pending = np.arange(len(queries))
        # Enough candidates that k survive if the unwanted rows are spread evenly; doubled when not.
        depth = min(len(self), -(-(k + max(map(len, excluded), default=0)) * len(self) // max(1, n_candidates)))
        while len(pending):
            found = self.search(queries[pending], depth)
            still_pending = []
            for query, found_rows, row_scores in zip(pending, found.indices, found.scores, strict=True):
                usable = [i for i, row in enumerate(found_rows) if row >= 0 and row not in excluded[query]]
                if rows.allowed is not None:
                    usable = [i for i in usable if rows.allowed[found_rows[i]]]
                if len(usable) >= k:
                    indices[query], scores[query] = found_rows[usable[:k]], row_scores[usable[:k]]
                elif (found_rows >= 0).all() and depth < len(self):
                    still_pending.append(query)
                else:
                    indices[query], scores[query] = self._exact(queries[query], k, rows.for_query(query))
            pending = np.asarray(still_pending, dtype=np.int64)
            depth = min(len(self), 2 * depth)
        scores = scores if Metric(metric) is Metric.COSINE else cosine_to_euclidean(scores)
        return SearchResults(indices=indices, scores=scores)

    def _exact(self, query: np.ndarray, k: int, rows: RowFilter) -> tuple[np.ndarray, np.ndarray]:
        """One query's exact top-k (cosine) over the stored vectors."""
        if self.vectors is None:
            raise ValueError("Exact fallback needs the catalog vectors: load the index with `vectors=`.")
        exact = top_k(self.vectors, query, k, rows=rows)
        return exact.indices[0], exact.scores[0]

    def _rerank(self, queries: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact cosine for the candidates (8-bit codes blur near-ties), best first; -1 slots sink."""
        exact = np.full(candidates.shape, -np.inf, dtype=np.float32)
        for row, (query, ids) in enumerate(zip(queries, candidates, strict=True)):
            found = ids >= 0
            exact[row, found] = np.asarray(self.vectors[ids[found]], dtype=np.float32) @ query
        order = np.argsort(-exact, axis=1, kind="stable")
        return np.take_along_axis(exact, order, axis=1), np.take_along_axis(candidates, order, axis=1)

    def save(self, path: str | Path) -> Path:
        import faiss

        faiss.write_index(self.index, str(path))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, config: AnnConfig | None = None, vectors: np.ndarray | None = None) -> AnnIndex:
        """Memory-map the index file: the codes stay in the page cache, shared, not copied per process."""
        import faiss

        index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
        return cls(index, config or AnnConfig(), vectors)
