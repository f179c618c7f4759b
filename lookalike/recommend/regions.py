"""Region search for shoppers' photos: look for the product in parts of the photo, not only in the whole.

A shopper's photo shows the product as a part of the frame, among other things. The whole photo's
embedding mixes all of them; an embedding of the part the product fills does not. So an upload is
embedded whole and as a grid of overlapping square regions (multi-scale region matching in the
spirit of R-MAC, Tolias et al. 2016, and of Razavian et al.'s spatial search), each region searches
the catalog, and a product scores by its best-matching region. The catalog's embeddings stay as
they are: only the query side changes. Measured on the street-to-shop benchmark
(`python benchmarks/street_to_shop.py`): see the README's table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from lookalike.index.exact import Metric, SearchResults, cosine_to_euclidean


@dataclass(frozen=True)
class QueryRegions:
    """Square regions of side `scale` x the photo's shorter side, on a `grid` x `grid` of positions
    spread from edge to edge (overlapping when 1 / scale < grid), beside the whole photo."""

    scale: float = 0.6
    grid: int = 3

    def __post_init__(self) -> None:
        if not 0 < self.scale <= 1 or self.grid < 1:
            raise ValueError(f"QueryRegions needs 0 < scale <= 1 and grid >= 1, not {self.scale}, {self.grid}")

    @property
    def n_views(self) -> int:
        return 1 + self.grid * self.grid

    def views(self, image: Image.Image) -> list[Image.Image]:
        """The whole photo first, then its regions row by row."""
        width, height = image.size
        side = self.scale * min(width, height)
        lefts = np.linspace(0, width - side, self.grid) if self.grid > 1 else [(width - side) / 2]
        tops = np.linspace(0, height - side, self.grid) if self.grid > 1 else [(height - side) / 2]
        regions = [
            image.crop((round(left), round(top), round(left + side), round(top + side)))
            for top in tops
            for left in lefts
        ]
        return [image, *regions]


@dataclass(frozen=True)
class MergedViews:
    """Several views' results as one ranking: `ranked` rows best first, `scores` by row, and `bound`,
    the best score a row that no view found could still have (each view's last score)."""

    ranked: list[int]
    scores: dict[int, float]
    bound: float
    metric: Metric

    def settles(self, row: int) -> bool:
        """Whether no row left unfound can rank above `row`: then the ranking down to it is final."""
        score = self.scores[row]
        return score >= self.bound if self.metric is Metric.COSINE else score <= self.bound


def best_of_views(found: SearchResults, vectors, views: np.ndarray, metric: Metric) -> MergedViews:
    """Every row any view found, scored again by its best view over all of them (the rows' `vectors`
    read for it), best first. A row outside every view's results scores at most each view's last
    score there; a caller that folds rows away searches deeper until its k-th kept row settles."""
    rows = list(dict.fromkeys(found.indices.ravel().tolist()))
    best = (np.asarray(vectors[rows], dtype=np.float32) @ views.T).max(axis=1)
    order = np.argsort(-best, kind="stable")
    ranked = [rows[i] for i in order]
    scores = best[order] if metric is Metric.COSINE else cosine_to_euclidean(best[order])
    last = found.scores[:, -1]
    bound = float(last.max() if metric is Metric.COSINE else last.min())
    return MergedViews(ranked, dict(zip(ranked, scores.tolist(), strict=True)), bound, metric)
