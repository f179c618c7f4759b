"""Approximate top-K for large catalogs: FAISS inverted lists of 8-bit vectors, re-ranked exactly."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.index.exact import EVERY_ROW, Metric, RowFilter, SearchResults, best_k, check_k, cosine_to_euclidean

ANN_FILE = "ann.faiss"
# Rows of the stored vectors scored at once by an exact scan (16k x 1280 float32 = 84 MB).
EXACT_BLOCK_ROWS = 16_384


@dataclass(frozen=True)
class AnnConfig:
    """IVF-SQ8: `n_lists` k-means cells, `n_probe` of them scanned per query, 1 byte per dimension."""

    n_lists: int = 1024
    # Chosen by measurement (benchmarks/README.md, benchmarks/recall-*.json): recall@10 0.9994 on the
    # 70,000 real Fashion-MNIST embeddings (256 cells) and 0.9999 on 1M synthetic-from-real ones. 16
    # still gives 0.994 there but 8 only 0.968 on the real set; 32 keeps a margin for real catalogs
    # more crowded than these at a cost (a few ms) small beside the query's forward pass.
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

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> SearchResults:
        """The approximate `k` best rows per query, best first, scored by cosine similarity.

        With `allowed` (a boolean mask over the rows), FAISS skips the other rows while it scans the
        probed cells, so a filter costs nothing extra; slots it cannot fill come back as row -1.
        """
        import faiss

        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        check_k(k, len(self))
        n_candidates = min(len(self), k * self.config.rerank_factor) if self.vectors is not None else k
        if allowed is None:
            scores, indices = self.index.search(queries, n_candidates)
        else:
            bitmap = np.packbits(np.asarray(allowed, dtype=bool), bitorder="little")  # alive until the search ends
            selector = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))  # its size in bytes
            # A filter keeping 1 row in m leaves 1/m of each cell: probe m times the cells (up to all of
            # them) so a query meets as many allowed rows as an unfiltered one meets rows.
            widening = max(1, len(self) // max(1, int(np.count_nonzero(allowed))))
            parameters = faiss.SearchParametersIVF(
                sel=selector, nprobe=min(self.index.nlist, self.index.nprobe * widening)
            )
            scores, indices = self.index.search(queries, n_candidates, params=parameters)
        if self.vectors is not None:
            scores, indices = self._rerank(queries, indices)
        return SearchResults(indices=indices[:, :k].astype(np.int64), scores=scores[:, :k].astype(np.float32))

    def top_k(self, queries: np.ndarray, k: int, metric: Metric | str = Metric.COSINE, rows=EVERY_ROW) -> SearchResults:
        """The `VectorSearch.top_k` contract answered from the index: never a row that `rows` keeps out.

        The allowed mask filters inside FAISS; excluded rows are dropped afterwards, asking for more
        candidates until each query has `k`. A query that still lacks them (the probed cells hold too
        few allowed rows) is answered by exact search over the allowed rows' stored vectors alone, so
        `k` rows always come back, as from `exact.top_k`.
        """
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        check_k(k, rows.n_searchable(len(self)))
        if rows.allowed is not None and np.count_nonzero(rows.allowed) <= self.rows_probed:
            # Fewer allowed rows than the probed cells hold: scanning just them is cheaper, and exact.
            found = self._exact(queries, k, rows)
            return (
                found
                if Metric(metric) is Metric.COSINE
                else SearchResults(found.indices, cosine_to_euclidean(found.scores))
            )
        excluded = rows.excluded(len(queries))
        indices = np.zeros((len(queries), k), dtype=np.int64)
        scores = np.zeros((len(queries), k), dtype=np.float32)
        pending = np.arange(len(queries))
        depth = min(len(self), k + max(map(len, excluded), default=0))
        while len(pending):
            found = self.search(queries[pending], depth, rows.allowed)
            still_pending = []
            for query, found_rows, row_scores in zip(pending, found.indices, found.scores, strict=True):
                usable = [i for i, row in enumerate(found_rows) if row >= 0 and row not in excluded[query]]
                if len(usable) >= k:
                    indices[query], scores[query] = found_rows[usable[:k]], row_scores[usable[:k]]
                elif (found_rows >= 0).all() and depth < len(self):
                    still_pending.append(query)  # exclusions took the places: look deeper
                else:
                    exact = self._exact(queries[query], k, rows.for_query(query))
                    indices[query], scores[query] = exact.indices[0], exact.scores[0]
            pending = np.asarray(still_pending, dtype=np.int64)
            depth = min(len(self), 2 * depth)
        scores = scores if Metric(metric) is Metric.COSINE else cosine_to_euclidean(scores)
        return SearchResults(indices=indices, scores=scores)

    @property
    def rows_probed(self) -> int:
        """About how many rows one query's probed cells hold."""
        return len(self) * self.index.nprobe // max(1, self.index.nlist)

    def _exact(self, queries: np.ndarray, k: int, rows: RowFilter) -> SearchResults:
        """Exact top-k (cosine) reading only the allowed rows of the stored vectors."""
        if self.vectors is None:
            raise ValueError("Exact search needs the catalog vectors: load the index with `vectors=`.")
        candidates = np.arange(len(self)) if rows.allowed is None else np.flatnonzero(rows.allowed)
        local_exclude = None
        if rows.exclude is not None:  # each query's excluded rows, as positions among the candidates
            local_exclude = []
            for excluded in rows.exclude:
                excluded = np.asarray(excluded, dtype=np.int64)
                positions = np.minimum(candidates.searchsorted(excluded), len(candidates) - 1)
                local_exclude.append(positions[candidates[positions] == excluded].tolist())
        # Scored a block of rows at a time: the rows are read from the memory map, never copied whole.
        similarities = np.empty((len(queries), len(candidates)), dtype=np.float32)
        for start in range(0, len(candidates), EXACT_BLOCK_ROWS):
            block = np.asarray(self.vectors[candidates[start : start + EXACT_BLOCK_ROWS]], dtype=np.float32)
            similarities[:, start : start + len(block)] = queries @ block.T
        best = best_k(similarities, k, local_exclude)
        return SearchResults(candidates[best.indices], best.scores)

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
