"""One search interface over a build's vectors, and the one place that decides exact or approximate.

Every implementation answers `top_k(queries, k, metric, rows)` with the same contract as
`exact.top_k`: the k best rows per query, never an excluded or disallowed one. A new index type is
a class with that method plus a branch in `SearchMethod` (how it is chosen, written and opened).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

import numpy as np

from lookalike.index.ann import ANN_FILE, AnnConfig, AnnIndex, lists_for
from lookalike.index.exact import EVERY_ROW, ExactSearch, Metric, SearchResults

# Below this many items exact numpy search answers within the latency budget (16 ms at 100k,
# 178 ms at 1M on 2 cores), builds instantly and is exact, so it stays the default.
ANN_MIN_ITEMS = 250_000
# What the metadata records as the search's name.
EXACT_SEARCH = "exact"
ANN_SEARCH = "ivf-sq8"


class VectorSearch(Protocol):
    """What the recommender and the evaluation search through, whatever the index behind it."""

    def __len__(self) -> int: ...

    def top_k(self, queries: np.ndarray, k: int, metric: Metric | str = Metric.COSINE, rows=EVERY_ROW) -> SearchResults:
        """The k best rows per query that `rows` lets through, best first (see `exact.top_k`)."""


class AnnMode(StrEnum):
    AUTO = "auto"  # an approximate index from ANN_MIN_ITEMS items up, exact search below
    ON = "on"
    OFF = "off"


@dataclass(frozen=True)
class SearchMethod:
    """How a build's vectors are searched: exactly, or through an IVF-SQ8 index with these settings."""

    ann: AnnConfig | None = None

    @classmethod
    def for_catalog(cls, mode: AnnMode | str, n_items: int) -> SearchMethod:
        """The search a catalog of `n_items` gets: approximate from ANN_MIN_ITEMS up under AUTO.

        >>> [SearchMethod.for_catalog(mode, n).name for mode, n in [("auto", 10_000), ("auto", 10**6), ("on", 10)]]
        ['exact', 'ivf-sq8', 'ivf-sq8']
        """
        mode = AnnMode(mode)
        if mode is AnnMode.ON or (mode is AnnMode.AUTO and n_items >= ANN_MIN_ITEMS):
            return cls(AnnConfig(n_lists=lists_for(n_items)))
        return cls()

    @property
    def name(self) -> str:
        return ANN_SEARCH if self.ann is not None else EXACT_SEARCH

    def to_dict(self) -> dict[str, object]:
        return {"method": self.name, **(dataclasses.asdict(self.ann) if self.ann is not None else {})}

    @classmethod
    def from_dict(cls, values: dict[str, object] | str, ann: dict[str, int] | None = None) -> SearchMethod:
        """Read `to_dict`'s form, or the older "search": NAME plus "ann": {...} pair of metadata keys."""
        if isinstance(values, str):
            values = {"method": values, **(ann or {})}
        values = dict(values)
        method = values.pop("method")
        if method not in (EXACT_SEARCH, ANN_SEARCH):
            raise ValueError(f"Unknown search method {method!r}; this version knows {EXACT_SEARCH} and {ANN_SEARCH}.")
        return cls(AnnConfig(**values) if method == ANN_SEARCH else None)

    def write(self, vectors: np.ndarray, folder: Path) -> None:
        """Whatever this search needs beside the vectors in a build folder (the trained ANN index)."""
        if self.ann is not None:
            AnnIndex.build(vectors, self.ann).save(folder / ANN_FILE)

    def open(self, folder: Path, vectors: np.ndarray) -> VectorSearch:
        """The search over a build folder's vectors; FileNotFoundError if its index file is missing."""
        if self.ann is None:
            return ExactSearch(vectors)
        if not (folder / ANN_FILE).is_file():
            raise FileNotFoundError(f"{folder} was built with an approximate index but {ANN_FILE} is missing.")
        return AnnIndex.load(folder / ANN_FILE, self.ann, vectors=vectors)
