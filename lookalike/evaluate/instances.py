"""Instance-level retrieval: does each photo of a product with several photos find that product's other photos?

Over the whole build, whatever the category protocol (a product's photos may fall on both sides of
the train/test split): every photo of a product with at least two photos queries every other row,
its own row alone left out. Its targets are its product's other photos; a variant of its group is a
miss like any other product. Recall@K: at least one target in the first K; mAP@K over the targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lookalike.evaluate.groups import ProductGroups
from lookalike.evaluate.metrics import instance_map_at_k, instance_recall_at_k
from lookalike.index.exact import RowFilter
from lookalike.index.search import VectorSearch


@dataclass(frozen=True)
class InstanceFigures:
    """Instance Recall@K and mAP@K (keyed by str(K)) of `n_queries` photos."""

    n_queries: int
    recall_at_k: dict[str, float]
    map_at_k: dict[str, float]


def instance_query_rows(groups: ProductGroups) -> np.ndarray:
    """The rows that query: every photo of a product with at least two photos.

    >>> instance_query_rows(ProductGroups.of_codes(np.array([0, 1, 0, 2]))).tolist()
    [0, 2]
    """
    return np.flatnonzero(groups.photos_per_product() >= 2)


def evaluate_instances(
    search: VectorSearch, embeddings: np.ndarray, groups: ProductGroups, ks: Sequence[int] = (1, 5, 10)
) -> InstanceFigures | None:
    """Instance figures of a build searched through `search` (its rows are `embeddings`' and `groups`');
    None when no product has several photos."""
    rows = instance_query_rows(groups)
    if not len(rows):
        return None
    results = search.top_k(np.asarray(embeddings[rows]), max(ks), rows=RowFilter(exclude=[[row] for row in rows]))
    retrieved, wanted = groups.products[results.indices], groups.products[rows]
    n_other_photos = groups.photos_per_product()[rows] - 1
    return InstanceFigures(
        n_queries=len(rows),
        recall_at_k={str(k): instance_recall_at_k(retrieved, wanted, k) for k in ks},
        map_at_k={str(k): instance_map_at_k(retrieved, wanted, k, n_other_photos) for k in ks},
    )
