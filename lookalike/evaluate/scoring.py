"""Score retrieval on an embeddings folder: its query sets, the search, Precision@K and its companions.

A row's category is its value in the label column: `label` unless another is asked for (`brand`,
`color`, any column of the build). A row without a value there (null or empty) is never a query and
never a hit; it stays a candidate, as the app would still show it.

When the build's own rows query it (split and leave-one-out protocols), a query never gets back its
product group: its own row, its product's other photos (same `product_id`) and its variants (same
`item_group_id`; see `groups`). They are neither candidates nor counted among the relevant rows: the
same shirt in another size says nothing of whether the search finds similar products. Builds without
product columns make every row a product and a group of its own: only the query's row is left out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np

from lookalike.evaluate.groups import ProductGroups, label_values
from lookalike.evaluate.instances import InstanceFigures, evaluate_instances
from lookalike.evaluate.metrics import (
    has_label,
    map_at_k,
    mean_similarity_at_k,
    precision_at_k,
    recall_at_k,
    relevant_counts,
)
from lookalike.index.exact import RowFilter, SearchResults, top_k
from lookalike.index.store import EmbeddingIndex


class Protocol(StrEnum):
    SPLIT = "split"  # the test split queries the train split
    LEAVE_ONE_OUT = "leave-one-out"  # every item queries all the others, its product group left out


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
    label_column: str = "label"  # the column whose value a hit shares with its query
    n_without_label: int = 0  # rows that would have queried but have no value in that column
    n_instance_queries: int = 0  # photos of products with several photos (see `instances`)
    instance_recall_at_k: dict[str, float] | None = None  # None: no product has several photos
    instance_map_at_k: dict[str, float] | None = None


def evaluate_embeddings(
    model: str,
    catalog: np.ndarray,
    catalog_labels: Sequence[str],
    queries: np.ndarray,
    query_labels: Sequence[str],
    ks: Sequence[int] = (1, 5, 10),
    exclude_same_row: bool = False,
    exclude_rows: Sequence[Sequence[int]] | None = None,
) -> Evaluation:
    """Score each query's top-K catalog results. With `exclude_same_row`, query i is catalog row i
    (leave-one-out) and is never retrieved for itself; `exclude_rows[i]`, when given, lists instead
    the catalog rows query i never gets back (its product group: `ProductGroups.exclusions`)."""
    if not len(queries):
        raise ValueError("no queries to evaluate")
    exclude = exclude_rows
    if exclude is None and exclude_same_row:
        exclude = [[row] for row in range(len(queries))]
    results = top_k(catalog, queries, max(ks), rows=RowFilter(exclude=exclude))
    catalog_labels = np.asarray(catalog_labels)
    n_relevant = relevant_counts(catalog_labels, np.ones(len(catalog_labels), bool), np.asarray(query_labels), exclude)
    return score_results(model, results, catalog_labels, catalog_labels, query_labels, ks, n_relevant=n_relevant)


def score_results(
    model: str,
    results: SearchResults,
    row_labels: Sequence[str],
    catalog_labels: Sequence[str],
    query_labels: Sequence[str],
    ks: Sequence[int] = (1, 5, 10),
    exclude_same_row: bool = False,
    n_relevant: np.ndarray | None = None,
) -> Evaluation:
    """The figures of search results already made: `row_labels` names the rows `results` point at
    (None: a row without a label, never a hit), `catalog_labels` is the searched catalog; it decides
    how many relevant items each query has unless `n_relevant` (`metrics.relevant_counts`) says so."""
    catalog_labels, query_labels = np.asarray(catalog_labels), np.asarray(query_labels)
    retrieved = np.asarray(row_labels)[results.indices]
    if n_relevant is None:
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
    exclude: Sequence[Sequence[int]] | None = None  # per query, the index rows it never gets back
    label_column: str = "label"  # the index column `labels` are values of
    n_without_label: int = 0  # rows left out of the queries for having no value in `label_column`

    def exclusions(self) -> Sequence[Sequence[int]] | None:
        """Per query, the index rows its search leaves out: `exclude`, else its own row in a leave-one-out."""
        if self.exclude is None and self.leave_one_out and self.query_rows is not None:
            return [[row] for row in self.query_rows]
        return self.exclude


def query_set(
    index: EmbeddingIndex, protocol: Protocol = Protocol.SPLIT, label_column: str = "label", exclude_group: bool = True
) -> QuerySet:
    """The split stored in the index (test queries train), or every item against all others.

    The queries are the rows with a value in `label_column`. With `exclude_group` each query's product
    group (see the module's docstring) is never a result; without, only its own row (the naive
    leave-one-out, which lets a variant of the query count as a hit).
    """
    table = index.dataset.data.table
    labels = label_values(table, label_column, str(index.path))
    labelled = has_label(labels)
    if protocol is Protocol.LEAVE_ONE_OUT:
        catalog = rows = np.arange(len(index))
    else:
        splits = np.asarray(index.splits)
        catalog, rows = np.flatnonzero(splits == "train"), np.flatnonzero(splits == "test")
        if not len(rows):
            raise ValueError(f"{index.path} has no test split; use --protocol leave-one-out or --queries FOLDER")
    queries = rows[labelled[rows]]
    if not len(queries):
        raise ValueError(f"no query row of {index.path} has a value in column {label_column!r}: nothing to score")
    if exclude_group:
        exclude = ProductGroups.of_table(table).exclusions(queries)
        if protocol is Protocol.SPLIT:  # only the group rows a query could get back matter: those in train
            in_train = np.zeros(len(index), dtype=bool)
            in_train[catalog] = True
            exclude = [group[in_train[group]] for group in exclude]
    else:
        exclude = [[row] for row in queries] if protocol is Protocol.LEAVE_ONE_OUT else None
    # Every row querying: the memory-mapped matrix as it is, not a copy of it.
    embeddings = index.embeddings if len(queries) == len(index) else index.embeddings[queries]
    return QuerySet(
        catalog,
        embeddings,
        labels[queries],
        queries,
        leave_one_out=protocol is Protocol.LEAVE_ONE_OUT,
        exclude=exclude,
        label_column=label_column,
        n_without_label=len(rows) - len(queries),
    )


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


def search_query_set(index: EmbeddingIndex, queries: QuerySet, k: int) -> SearchResults:
    """Each query's k best index rows (row numbers of the index, not of the catalog), searched as the
    app does (its approximate index when it has one): catalog rows only, never an excluded one."""
    allowed = np.zeros(len(index), dtype=bool)
    allowed[queries.catalog_rows] = True
    return index.top_k(queries.embeddings, k, rows=RowFilter(allowed, queries.exclusions()))


def evaluate_query_set(index: EmbeddingIndex, queries: QuerySet, ks: Sequence[int] = (1, 5, 10)) -> Evaluation:
    """Search the index as the app does, then score. When the queries are the build's own rows and some
    product has several photos, the instance figures too (`instances`: a photo finding its product's others)."""
    if not len(queries.embeddings):
        raise ValueError("no queries to evaluate")
    table = index.dataset.data.table
    labels = label_values(table, queries.label_column, str(index.path))
    in_catalog = np.zeros(len(index), dtype=bool)
    in_catalog[queries.catalog_rows] = True
    results = search_query_set(index, queries, max(ks))
    evaluation = score_results(
        index.metadata.model_id,
        results,
        labels,
        labels[queries.catalog_rows],
        queries.labels,
        ks,
        n_relevant=relevant_counts(labels, in_catalog, queries.labels, queries.exclusions()),
    )
    instances = None
    if queries.query_rows is not None:
        instances = evaluate_instances(index, index.embeddings, ProductGroups.of_table(table), ks)
    return dataclasses.replace(
        evaluation, label_column=queries.label_column, n_without_label=queries.n_without_label, **_instance(instances)
    )


def _instance(figures: InstanceFigures | None) -> dict[str, object]:
    if figures is None:
        return {}
    return {
        "n_instance_queries": figures.n_queries,
        "instance_recall_at_k": figures.recall_at_k,
        "instance_map_at_k": figures.map_at_k,
    }
