"""Street-to-shop figures: shoppers' photos query the catalog through the app's own search.

A query folder holds photos and a `metadata.csv` with `file_name, product_id` (and `label`, the
product's category, for the category figures); `street_scenes` writes one. Each photo is searched
exactly as the page searches an upload (`Recommender.search`: the served query method, one result
per product, near-duplicates collapsed), and its target is the very product it shows. A result
is that product when its product id is the query's, or when the query's product is one of the
variants it stands for (a group answers once).

- Recall@K: the product is among the first K results.
- mAP@K of the exact product: it is the one relevant result, so AP@K = 1 / rank when rank <= K, else 0.
- Category P@K: the share of the first K results of the query's category (its `label`).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.images import ImageError, open_image
from lookalike.recommend.recommender import Recommendation, RecommendationRequest, Recommender

METADATA = "metadata.csv"


@dataclass(frozen=True)
class StreetQuery:
    image: Path
    file_name: str
    product_id: str
    label: str | None


@dataclass(frozen=True)
class StreetOutcome:
    """One query's answer: where its product came (None: not in the first K) and what came first."""

    query: str  # the photo's file_name, relative to the folder
    product_id: str
    rank: int | None  # 1-based
    top_ids: tuple[str, ...]
    top_score: float


@dataclass(frozen=True)
class StreetFigures:
    n_queries: int
    recall_at_k: dict[str, float]
    map_at_k: dict[str, float]
    precision_at_k: dict[str, float]  # category; empty when the folder gives no labels
    outcomes: tuple[StreetOutcome, ...]
    n_unreadable: int = 0


def is_street_folder(folder: Path) -> bool:
    """A query folder naming each photo's product (`metadata.csv` with a `product_id` column)."""
    path = Path(folder) / METADATA
    if not path.is_file():
        return False
    with path.open(newline="", encoding="utf-8") as handle:
        return "product_id" in (csv.DictReader(handle).fieldnames or [])


def street_queries(folder: Path) -> list[StreetQuery]:
    folder = Path(folder)
    with (folder / METADATA).open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    missing = {"file_name", "product_id"} - set(rows[0] if rows else {})
    if missing:
        raise ValueError(f"{folder / METADATA} lacks the column(s) {sorted(missing)}: it needs file_name, product_id")
    return [
        StreetQuery(
            folder / row["file_name"],
            row["file_name"],
            row["product_id"].strip(),
            (row.get("label") or "").strip() or None,
        )
        for row in rows
        if row["file_name"] and row["product_id"]
    ]


def _products_shown(result: Recommendation) -> set[str]:
    return {result.product_id or result.id, result.id, *result.variants}


def evaluate_street(
    recommender: Recommender, queries: Sequence[StreetQuery], ks: Sequence[int] = (1, 5, 10)
) -> StreetFigures:
    """Search each photo as the page does and score the answers (see the module's docstring)."""
    if not queries:
        raise ValueError("no street queries to evaluate")
    known = set(recommender.ids) | set(_catalog_product_ids(recommender))
    unknown = sorted({q.product_id for q in queries} - known)
    if unknown:
        raise ValueError(f"{len(unknown)} query product(s) are not in the {recommender.name} catalog: {unknown[:5]}")
    depth = max(ks)
    outcomes, category_hits, n_unreadable = [], [], 0
    for query in queries:
        try:
            image = open_image(query.image)
        except ImageError:
            n_unreadable += 1
            continue
        results = recommender.search(RecommendationRequest(k=depth), images=[image]).items
        rank = next((i + 1 for i, r in enumerate(results) if query.product_id in _products_shown(r)), None)
        top = tuple(r.product_id or r.id for r in results)
        outcomes.append(StreetOutcome(query.file_name, query.product_id, rank, top, results[0].score))
        if query.label is not None:
            category_hits.append([r.label == query.label for r in results] + [False] * (depth - len(results)))
    if not outcomes:
        raise ValueError("no street query photo could be read")
    ranks = np.array([o.rank or depth + 1 for o in outcomes])
    hits = np.asarray(category_hits, dtype=bool)
    return StreetFigures(
        n_queries=len(outcomes),
        recall_at_k={str(k): float(np.mean(ranks <= k)) for k in ks},
        map_at_k={str(k): float(np.mean(np.where(ranks <= k, 1.0 / ranks, 0.0))) for k in ks},
        precision_at_k={str(k): float(hits[:, :k].mean()) for k in ks} if len(hits) else {},
        outcomes=tuple(outcomes),
        n_unreadable=n_unreadable,
    )


def _catalog_product_ids(recommender: Recommender) -> list[str]:
    table = recommender.index.dataset.data.table
    return table.column("product_id").to_pylist() if "product_id" in table.column_names else []
