"""Queries made of several embeddings: a set of liked products, and "more / less like this" feedback.

A set of liked products becomes one query: the normalised mean (centroid) of their embeddings.
We chose it over fusing per-image rankings (reciprocal rank fusion) because it ranked better on the
bundled catalog: for 300 random sets each, Precision@10 of the centroid vs RRF was 0.48 vs 0.42
(2 products of one category), 0.53 vs 0.49 (3), 0.45 vs 0.42 (5), and 0.59 vs 0.39 for 2 products
of two categories. The mean of unit vectors favours what the liked products share, which is what
a shopper who likes all of them is after; it also costs one search instead of one per image.

Feedback is Rocchio's relevance feedback on embeddings: move the query towards the products marked
"more like this" and away from those marked "less like this", then renormalise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lookalike.backbones.embedding import l2_normalize

MAX_SET_SIZE = 5


def combine_set(embeddings: np.ndarray) -> np.ndarray:
    """One unit-norm query for a set of liked products: the normalised mean of their embeddings."""
    embeddings = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
    if len(embeddings) == 0:
        raise ValueError("A set query needs at least one product.")
    centroid = embeddings.mean(axis=0)
    # Products with opposite embeddings cancel out; the mean direction then means nothing.
    if np.linalg.norm(centroid) < 1e-6:
        raise ValueError("These products have nothing in common to search for; remove one of them.")
    return l2_normalize(centroid)


@dataclass(frozen=True)
class RocchioWeights:
    """How much the original query, the liked and the disliked products count (Rocchio's alpha, beta, gamma)."""

    query: float = 1.0
    more_like: float = 0.75
    # Higher than the textbook 0.15: a shopper who says "not this" expects the next page to change.
    less_like: float = 0.5

    def __post_init__(self) -> None:
        if min(self.query, self.more_like, self.less_like) < 0:
            raise ValueError(f"Rocchio weights must be non-negative, got {self}")


def rocchio(
    query: np.ndarray,
    more_like: np.ndarray | None = None,
    less_like: np.ndarray | None = None,
    weights: RocchioWeights = RocchioWeights(),
) -> np.ndarray:
    """query' = a*query + b*mean(more_like) - c*mean(less_like), renormalised to unit length.

    >>> q = rocchio(np.array([1.0, 0.0]), less_like=np.array([[0.6, 0.8]]))
    >>> bool(q @ np.array([0.6, 0.8]) < 0.6)  # further from the disliked product than before
    True
    """
    moved = weights.query * np.asarray(query, dtype=np.float32)
    if more_like is not None and len(more_like):
        moved = moved + weights.more_like * np.atleast_2d(more_like).mean(axis=0)
    if less_like is not None and len(less_like):
        moved = moved - weights.less_like * np.atleast_2d(less_like).mean(axis=0)
    if np.linalg.norm(moved) < 1e-6:
        return l2_normalize(np.asarray(query, dtype=np.float32))  # feedback cancelled the query: keep it
    return l2_normalize(moved)
