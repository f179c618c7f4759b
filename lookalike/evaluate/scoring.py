"""Score retrieval on an embeddings folder: its query sets, the search, Precision@K and its companions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np

from lookalike.evaluate.metrics import map_at_k, mean_similarity_at_k, precision_at_k, recall_at_k
from lookalike.index.exact import RowFilter, SearchResults, top_k
from lookalike.index.store import EmbeddingIndex


class Protocol(StrEnum):
    SPLIT = "split"  # the test split queries the train split
    LEAVE_ONE_OUT = "leave-one-out"  # every item queries all the others


@dataclass(frozen=True)
class Evaluation:
    """Retrieval figures of one model on one query set; K dicts are keyed by str(K)."""

    model: str
    n_catalog: int
    n_queries: int
    precision_at_k: dict[str, float]
    mean_similarity_at_k: dict[str, float]
    recall_at_k: dict[str, float]
    map_at_k: dict[str, float]
    per_category: dict[str, dict[str, dict[str, float]]]


def evaluate_embeddings(
    model: str,
    catalog: np.ndarray,
    catalog_labels: Sequence[str],
    queries: np.ndarray,
    query_labels: Sequence[str],
    ks: Sequence[int] = (1, 5, 10),
    exclude_same_row: bool = False,
) -> Evaluation:
    """Score each query's top-K catalog results. With `exclude_same_row`, query i is catalog row i
    (leave-one-out) and is never retrieved for itself."""
    if not len(queries):
        raise ValueError("no queries to evaluate")
    exclude = [[row] for row in range(len(queries))] if exclude_same_row else None
    results = top_k(catalog, queries, max(ks), rows=RowFilter(exclude=exclude))
    return score_results(model, results, catalog_labels, catalog_labels, query_labels, ks, exclude_same_row)


def score_results(
    model: str,
    results: SearchResults,
    row_labels: Sequence[str],
    catalog_labels: Sequence[str],
    query_labels: Sequence[str],
    ks: Sequence[int] = (1, 5, 10),
    exclude_same_row: bool = False,
) -> Evaluation:
    """The figures of search results already made: `row_labels` names the rows `results` point at,
    `catalog_labels` is the searched catalog (it decides how many relevant items each query has)."""
    catalog_labels, query_labels = np.asarray(catalog_labels), np.asarray(query_labels)
    retrieved = np.asarray(row_labels)[results.indices]
    counts = {label: int((catalog_labels == label).sum()) for label in set(query_labels)}
    n_relevant = np.array([counts[label] - int(exclude_same_row) for label in query_labels])

    def figures(rows: np.ndarray) -> dict[str, dict[str, float]]:
        return {
            "precision_at_k": {str(k): precision_at_k(retrieved[rows], query_labels[rows], k) for k in ks},
            "mean_similarity_at_k": {str(k): mean_similarity_at_k(results.scores[rows], k) for k in ks},
            "recall_at_k": {str(k): recall_at_k(retrieved[rows], query_labels[rows], k) for k in ks},
            "map_at_k": {str(k): map_at_k(retrieved[rows], query_labels[rows], k, n_relevant[rows]) for k in ks},
        }

    overall = figures(np.arange(len(query_labels)))
    per_category = {label: figures(np.flatnonzero(query_labels == label)) for label in sorted(set(query_labels))}
    return Evaluation(
        model=model, n_catalog=len(catalog_labels), n_queries=len(query_labels), per_category=per_category, **overall
    )


@dataclass(frozen=True)
class QuerySet:
    """Which index rows form the catalog, and the queries (embeddings, labels) that search it."""

    catalog_rows: np.ndarray
    embeddings: np.ndarray
    labels: np.ndarray
    query_rows: np.ndarray | None  # index rows of the queries, when they come from the index
    leave_one_out: bool = False


def query_set(index: EmbeddingIndex, protocol: Protocol = Protocol.SPLIT) -> QuerySet:
    """The split stored in the index (test queries train), or every item against all others."""
    labels = np.asarray(index.labels)
    if protocol is Protocol.LEAVE_ONE_OUT:
        rows = np.arange(len(index))
        return QuerySet(rows, index.embeddings, labels, rows, leave_one_out=True)
    splits = np.asarray(index.splits)
    train, test = np.flatnonzero(splits == "train"), np.flatnonzero(splits == "test")
    if not len(test):
        raise ValueError(f"{index.path} has no test split; use --protocol leave-one-out or --queries FOLDER")
    return QuerySet(train, index.embeddings[test], labels[test], test)


def embed_query_folder(index: EmbeddingIndex, queries_dir: Path) -> QuerySet:
    """Images of an image folder, embedded with the index's own backbone, to query the whole index."""
    from lookalike.backbones.embedding import embed_images
    from lookalike.backbones.registry import load_backbone
    from lookalike.catalog import load_image_folder
    from lookalike.images import open_image

    backbone = load_backbone(index.metadata.model_id)
    index.metadata.check_matches(backbone.name, backbone.embedding_dim, backbone.preprocessing, backbone.fingerprint)
    folder = load_image_folder(queries_dir)
    embeddings = embed_images(backbone, [open_image(item.image) for item in folder.items])
    return QuerySet(np.arange(len(index)), embeddings, np.asarray(folder.labels), None)


def evaluate_query_set(index: EmbeddingIndex, queries: QuerySet, ks: Sequence[int] = (1, 5, 10)) -> Evaluation:
    """Search the index as the app does (its approximate index when it has one), then score."""
    if not len(queries.embeddings):
        raise ValueError("no queries to evaluate")
    labels = np.asarray(index.labels)
    allowed = np.zeros(len(index), dtype=bool)
    allowed[queries.catalog_rows] = True
    exclude = [[row] for row in queries.query_rows] if queries.leave_one_out else None
    results = index.top_k(queries.embeddings, max(ks), rows=RowFilter(allowed, exclude))
    return score_results(
        index.metadata.model_id,
        results,
        labels,
        labels[queries.catalog_rows],
        queries.labels,
        ks,
        exclude_same_row=queries.leave_one_out,
    )
