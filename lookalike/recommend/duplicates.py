"""Near-identical products: find groups of them, and collapse them into one in recommendations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Measured on the bundled catalog (efficientnet-lite0): the closest two different products are
# coins of two denominations at 0.944, while a re-encoded or resized copy of a photo scores above
# 0.99 and two crops of one photo 0.93-0.99. 0.96 flags copies without merging distinct products.
DUPLICATE_SIMILARITY = 0.96
# Candidates compared all pairs at once when collapsing (a 256 x 256 matrix); more are compared one by one.
ALL_PAIRS_UP_TO = 256


@dataclass(frozen=True)
class DuplicateGroup:
    """Products whose photos are near-identical; `similarity` is the closest pair's cosine."""

    ids: tuple[str, ...]
    labels: tuple[str, ...]
    similarity: float


def find_duplicate_groups(
    embeddings: np.ndarray, ids: Sequence[str], labels: Sequence[str], threshold: float = DUPLICATE_SIMILARITY
) -> list[DuplicateGroup]:
    """Groups of products linked by pairs at cosine >= threshold (transitively), most similar first."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    similarities = embeddings @ embeddings.T
    first, second = np.nonzero(np.triu(similarities >= threshold, k=1))
    parent = list(range(len(ids)))

    def root(row: int) -> int:
        while parent[row] != row:
            parent[row] = parent[parent[row]]
            row = parent[row]
        return row

    for a, b in zip(first.tolist(), second.tolist(), strict=True):
        parent[root(a)] = root(b)
    members: dict[int, list[int]] = {}
    for row in sorted(set(first.tolist()) | set(second.tolist())):
        members.setdefault(root(row), []).append(row)
    groups = [
        DuplicateGroup(
            ids=tuple(ids[row] for row in rows),
            labels=tuple(labels[row] for row in rows),
            similarity=float(similarities[np.ix_(rows, rows)][np.triu_indices(len(rows), k=1)].max()),
        )
        for rows in members.values()
    ]
    return sorted(groups, key=lambda group: -group.similarity)


def collapse_near_duplicates(
    embeddings: np.ndarray, ranked_rows: Sequence[int], threshold: float = DUPLICATE_SIMILARITY
) -> list[tuple[int, list[int]]]:
    """Walk a ranking best first; a row near-identical to one already kept is folded into it.

    Returns (kept row, rows folded into it) in ranking order.

    >>> unit = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> collapse_near_duplicates(unit, [0, 1, 2])
    [(0, [1]), (2, [])]
    """
    rows = [int(row) for row in ranked_rows]
    if not rows:
        return []
    # Every candidate's vector in one read (the matrix may be a file read row run by row run).
    vectors = np.asarray(embeddings[rows], dtype=np.float32)
    # A usual answer's few dozen candidates: every pair at once, then plain floats. A deep search (one
    # product photographed thousands of times) compares each candidate with the kept ones only.
    pairs = (vectors @ vectors.T).tolist() if len(rows) <= ALL_PAIRS_UP_TO else None
    kept: list[tuple[int, list[int]]] = []
    kept_positions: list[int] = []
    for position, row in enumerate(rows):
        if kept:
            if pairs is not None:
                similarities = [pairs[other][position] for other in kept_positions]
            else:
                similarities = (vectors[kept_positions] @ vectors[position]).tolist()
            closest = max(range(len(similarities)), key=similarities.__getitem__)
            if similarities[closest] >= threshold:
                kept[closest][1].append(row)
                continue
        kept.append((row, []))
        kept_positions.append(position)
    return kept
