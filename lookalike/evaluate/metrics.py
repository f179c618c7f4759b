"""Retrieval metrics as pure functions over arrays of retrieved and query labels."""

from __future__ import annotations

import numpy as np


def _check(retrieved_labels: np.ndarray, query_labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    retrieved_labels = np.asarray(retrieved_labels)
    query_labels = np.asarray(query_labels)
    if retrieved_labels.ndim != 2 or len(retrieved_labels) == 0:
        raise ValueError(f"retrieved_labels must be a non-empty 2-D array, got shape {retrieved_labels.shape}")
    if query_labels.shape != (len(retrieved_labels),):
        raise ValueError(
            f"query_labels must have one label per query ({len(retrieved_labels)}), got shape {query_labels.shape}"
        )
    if not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k > retrieved_labels.shape[1]:
        raise ValueError(f"k={k} is more than the {retrieved_labels.shape[1]} results retrieved per query")
    return retrieved_labels, query_labels


def hits_at_k(retrieved_labels: np.ndarray, query_labels: np.ndarray, k: int) -> np.ndarray:
    """(n_queries, k) booleans: is the j-th result of query i of query i's category?"""
    retrieved_labels, query_labels = _check(retrieved_labels, query_labels, k)
    return retrieved_labels[:, :k] == query_labels[:, None]


def precision_at_k(retrieved_labels: np.ndarray, query_labels: np.ndarray, k: int) -> float:
    """Precision@K = mean over queries of (results among the first k of the query's category) / k.

    The denominator is always k, the number of recommendations shown.

    >>> precision_at_k(np.array([["a", "b"], ["b", "b"]]), np.array(["a", "b"]), 2)
    0.75
    """
    return float(hits_at_k(retrieved_labels, query_labels, k).mean())


def mean_similarity_at_k(similarities: np.ndarray, k: int) -> float:
    """The mean cosine similarity of the first k results, over all queries.

    >>> mean_similarity_at_k(np.array([[0.9, 0.5], [0.7, 0.1]]), 1)
    0.8
    """
    similarities = np.asarray(similarities, dtype=np.float64)
    if similarities.ndim != 2 or len(similarities) == 0:
        raise ValueError(f"similarities must be a non-empty 2-D array, got shape {similarities.shape}")
    if not isinstance(k, (int, np.integer)) or not 0 < k <= similarities.shape[1]:
        raise ValueError(f"k must be an integer in [1, {similarities.shape[1]}], got {k!r}")
    return round(float(similarities[:, :k].mean()), 12)


def recall_at_k(retrieved_labels: np.ndarray, query_labels: np.ndarray, k: int) -> float:
    """Recall@K (hit rate) = share of queries with at least one result of their category in the first k.

    >>> recall_at_k(np.array([["a", "b"], ["a", "a"]]), np.array(["b", "b"]), 2)
    0.5
    """
    return float(hits_at_k(retrieved_labels, query_labels, k).any(axis=1).mean())


def map_at_k(retrieved_labels: np.ndarray, query_labels: np.ndarray, k: int, n_relevant: np.ndarray) -> float:
    """mAP@K = mean over queries of AP@K = sum_{i<=k} P@i * rel_i / min(k, n_relevant).

    `n_relevant[q]` is how many catalog items share query q's category (the query itself not
    counted); a query with none scores 0.

    >>> map_at_k(np.array([["a", "b", "a"]]), np.array(["a"]), 3, np.array([2]))
    0.833333333333
    """
    hits = hits_at_k(retrieved_labels, query_labels, k).astype(np.float64)
    n_relevant = np.asarray(n_relevant)
    if n_relevant.shape != (len(hits),) or (n_relevant < 0).any():
        raise ValueError(f"n_relevant must hold one non-negative count per query, got shape {n_relevant.shape}")
    precision_at_i = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    denominator = np.minimum(k, n_relevant).astype(np.float64)
    average_precision = np.divide(
        (precision_at_i * hits).sum(axis=1), denominator, out=np.zeros(len(hits)), where=denominator > 0
    )
    return round(float(average_precision.mean()), 12)


def has_label(labels: np.ndarray) -> np.ndarray:
    """A boolean per row: has it a label (is it not None)?

    >>> has_label(np.array(["a", None], dtype=object)).tolist()
    [True, False]
    """
    labels = np.asarray(labels)
    if labels.dtype != object:
        return np.ones(labels.shape, dtype=bool)
    return np.fromiter((label is not None for label in labels.ravel()), bool, labels.size).reshape(labels.shape)


def relevant_counts(
    row_labels: np.ndarray, catalog: np.ndarray, query_labels: np.ndarray, exclude: list[np.ndarray] | None = None
) -> np.ndarray:
    """Per query, how many rows it could hit: catalog rows of its label, less those `exclude[q]` keeps from it.

    `catalog` is a boolean mask over the rows; a row without a label (None) is relevant to no query.
    This is mAP@K's `n_relevant`: a leave-one-out that excludes the query's product group does not
    count the group's rows as findable.

    >>> labels = np.array(["a", "a", "a", "b"])
    >>> relevant_counts(labels, np.ones(4, bool), np.array(["a", "b"]), [np.array([0, 1]), np.array([3])]).tolist()
    [1, 0]
    """
    row_labels, query_labels = np.asarray(row_labels), np.asarray(query_labels)
    catalog = np.asarray(catalog, dtype=bool)
    if catalog.shape != row_labels.shape:
        raise ValueError(f"catalog must be one boolean per row ({row_labels.shape}), got shape {catalog.shape}")
    if exclude is not None and len(exclude) != len(query_labels):
        raise ValueError(f"exclude must hold one list of rows per query ({len(query_labels)}), got {len(exclude)}")
    values, counts = np.unique(row_labels[catalog & has_label(row_labels)].astype(str), return_counts=True)
    in_catalog = dict(zip(values.tolist(), counts.tolist(), strict=True))
    n_relevant = np.array([in_catalog.get(label, 0) for label in query_labels.tolist()], dtype=np.int64)
    if exclude is not None:
        for query, (label, rows) in enumerate(zip(query_labels.tolist(), exclude, strict=True)):
            rows = np.asarray(rows, dtype=np.int64)
            n_relevant[query] -= int(np.count_nonzero(catalog[rows] & (row_labels[rows] == label)))
    return n_relevant


def instance_recall_at_k(retrieved_products: np.ndarray, query_products: np.ndarray, k: int) -> float:
    """Instance Recall@K = share of queries (photos) with at least one other photo of their own product in the
    first k results.

    Every query is a photo of a product with at least two photos, and the search leaves out only the
    query's own row: its product's other photos are the targets, every other row (a variant of the
    same group included) a miss. `retrieved_products` holds the product (any code) of each result.

    >>> instance_recall_at_k(np.array([[7, 3], [4, 4]]), np.array([3, 5]), 2)
    0.5
    """
    return recall_at_k(retrieved_products, query_products, k)


def instance_map_at_k(
    retrieved_products: np.ndarray, query_products: np.ndarray, k: int, n_other_photos: np.ndarray
) -> float:
    """Instance mAP@K = mean over queries of AP@K = sum_{i<=k} P@i * rel_i / min(k, n_other_photos),
    where rel_i says whether result i is another photo of the query's product.

    >>> instance_map_at_k(np.array([[3, 7, 3]]), np.array([3]), 3, np.array([2]))
    0.833333333333
    """
    return map_at_k(retrieved_products, query_products, k, n_other_photos)
