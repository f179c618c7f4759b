"""Exact top-K search over unit-norm embeddings, by cosine similarity or Euclidean distance."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np


class Metric(StrEnum):
    COSINE = "cosine"
    EUCLIDEAN = "euclidean"


@dataclass(frozen=True)
class SearchResults:
    """Per query, the K best catalog rows: `indices` and their `scores`, best first.

    Scores are cosine similarities (higher is closer) or Euclidean distances (lower is closer).
    """

    indices: np.ndarray  # (n_queries, k) int64
    scores: np.ndarray  # (n_queries, k) float32


@dataclass(frozen=True)
class RowFilter:
    """Which catalog rows a search may return: only the `allowed` ones (a boolean mask, one per row;
    None: every row), and for query q never the rows listed in `exclude[q]` (None: none)."""

    allowed: np.ndarray | None = None
    exclude: Sequence[Sequence[int]] | None = None

    def n_searchable(self, n_rows: int) -> int:
        """How many rows every query can surely get back: the allowed ones less a query's excluded
        allowed rows, for the query that excludes most (an excluded row that is not allowed costs nothing)."""
        n_allowed = n_rows if self.allowed is None else int(np.count_nonzero(self.allowed))
        if self.exclude is None:
            return n_allowed
        taken = [np.unique(np.asarray(e, dtype=np.int64)) for e in self.exclude]
        if self.allowed is not None:
            taken = [e[self.allowed[e]] for e in taken]
        return n_allowed - max((len(e) for e in taken), default=0)

    def excluded(self, n_queries: int) -> list[set[int]]:
        return [set(rows) for rows in self.exclude] if self.exclude is not None else [set()] * n_queries

    def for_block(self, start: int, stop: int) -> RowFilter:
        """The filter of queries start..stop-1, for a search that takes them a block at a time."""
        return RowFilter(self.allowed, self.exclude[start:stop] if self.exclude is not None else None)

    def for_query(self, position: int) -> RowFilter:
        """The filter of query number `position` alone."""
        return RowFilter(self.allowed, [self.exclude[position]] if self.exclude is not None else None)


EVERY_ROW = RowFilter()
# Query x catalog similarities scored at once (float32): 64 Mi of them is 256 MB.
BLOCK_SIMILARITIES = 64 * 2**20


def top_k(
    catalog: np.ndarray, queries: np.ndarray, k: int, metric: Metric | str = Metric.COSINE, rows: RowFilter = EVERY_ROW
) -> SearchResults:
    """The `k` nearest catalog rows to each query that `rows` lets through.

    `catalog` (N, D) and `queries` (Q, D) are unit-norm, so Euclidean distance is
    sqrt(2 - 2 cos): both metrics rank alike, and one matrix product serves both.
    """
    metric = Metric(metric)
    queries = np.atleast_2d(queries)
    if catalog.ndim != 2 or queries.shape[1] != catalog.shape[1]:
        raise ValueError(f"dimension mismatch: catalog {catalog.shape}, queries {queries.shape}")
    check_k(k, rows.n_searchable(len(catalog)))
    block = max(1, BLOCK_SIMILARITIES // max(1, len(catalog)))
    if len(queries) > block:  # bounded memory: 10k queries x 60k products would need 2.4 GB at once
        parts = [
            top_k(catalog, queries[i : i + block], k, metric, rows.for_block(i, i + block))
            for i in range(0, len(queries), block)
        ]
        return SearchResults(np.concatenate([p.indices for p in parts]), np.concatenate([p.scores for p in parts]))
    similarities = queries @ catalog.T
    if rows.allowed is not None:
        similarities[:, ~rows.allowed] = -np.inf
    best = best_k(similarities, k, rows.exclude)
    return best if metric is Metric.COSINE else SearchResults(best.indices, cosine_to_euclidean(best.scores))


def best_k(similarities: np.ndarray, k: int, exclude: Sequence[Sequence[int]] | None = None) -> SearchResults:
    """The k highest columns of each row of a (queries, candidates) similarity matrix, never an excluded one."""
    if exclude is not None:
        for row, excluded in enumerate(exclude):
            similarities[row, list(excluded)] = -np.inf
    # argpartition finds the k best in O(N); only those k are then sorted.
    candidates = np.argpartition(-similarities, k - 1, axis=1)[:, :k]
    candidate_scores = np.take_along_axis(similarities, candidates, axis=1)
    order = np.argsort(-candidate_scores, axis=1, kind="stable")
    indices = np.take_along_axis(candidates, order, axis=1)
    scores = np.take_along_axis(candidate_scores, order, axis=1).astype(np.float32)
    return SearchResults(indices=indices.astype(np.int64), scores=scores)


def check_k(k: int, n_candidates: int) -> None:
    """Every search's one rule for K: at least 1, at most the rows a query can get back."""
    if k < 1 or k > n_candidates:
        raise ValueError(f"k must be between 1 and {n_candidates} for this catalog, got {k}")


@dataclass(frozen=True)
class ExactSearch:
    """`top_k` over a matrix of unit vectors, compared with every row: the reference every index answers like."""

    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.vectors)

    def top_k(self, queries: np.ndarray, k: int, metric: Metric | str = Metric.COSINE, rows=EVERY_ROW) -> SearchResults:
        return top_k(self.vectors, queries, k, metric, rows)


def cosine_to_euclidean(similarity: np.ndarray) -> np.ndarray:
    """Distance between unit vectors with this cosine similarity."""
    return np.sqrt(np.clip(2.0 - 2.0 * similarity, 0.0, None)).astype(np.float32)
