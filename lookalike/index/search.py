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
from lookalike.index.serving_cache import row_reader

# Below this many items exact numpy search answers within the latency budget (16 ms at 100k,
# 178 ms at 1M on 2 cores), builds instantly and is exact, so it stays the default.
ANN_MIN_ITEMS = 250_000
# An approximate index keeps the cells it was trained with until the catalog outgrows this factor
# of the rows it was trained on (each cell would then hold too many rows); then it is trained again.
ANN_RETRAIN_GROWTH = 2.0
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
class AnnReuse:
    """A previous build's approximate index, kept trained instead of training a new one."""

    path: Path  # its ann.faiss
    n_rows: int  # the rows it holds
    appended: bool  # the new build starts with exactly those rows, in order: only the rest are added


@dataclass(frozen=True)
class SearchMethod:
    """How a build's vectors are searched: exactly, or through an IVF-SQ8 index with these settings."""

    ann: AnnConfig | None = None
    trained_on: int | None = None  # the catalog size the approximate index's cells were learnt from

    @classmethod
    def for_catalog(cls, mode: AnnMode | str, n_items: int) -> SearchMethod:
        """The search a catalog of `n_items` gets: approximate from ANN_MIN_ITEMS up under AUTO.

        >>> [SearchMethod.for_catalog(mode, n).name for mode, n in [("auto", 10_000), ("auto", 10**6), ("on", 10)]]
        ['exact', 'ivf-sq8', 'ivf-sq8']
        """
        mode = AnnMode(mode)
        if mode is AnnMode.ON or (mode is AnnMode.AUTO and n_items >= ANN_MIN_ITEMS):
            return cls(AnnConfig(n_lists=lists_for(n_items)), trained_on=n_items)
        return cls()

    def outgrown_by(self, n_items: int) -> bool:
        """Whether a catalog of `n_items` needs its approximate index trained again (or has none to keep)."""
        return self.ann is None or self.trained_on is None or n_items > ANN_RETRAIN_GROWTH * self.trained_on

    @property
    def name(self) -> str:
        return ANN_SEARCH if self.ann is not None else EXACT_SEARCH

    def to_dict(self) -> dict[str, object]:
        if self.ann is None:
            return {"method": self.name}
        return {"method": self.name, **dataclasses.asdict(self.ann), "trained_on": self.trained_on}

    @classmethod
    def from_dict(
        cls, values: dict[str, object] | str, ann: dict[str, int] | None = None, trained_on: int | None = None
    ) -> SearchMethod:
        """Read `to_dict`'s form, or the older "search": NAME with the ANN settings in keys of their own."""
        if isinstance(values, str):
            values = {"method": values, **(ann or {}), "trained_on": trained_on}
        values = dict(values)
        method, trained_on = values.pop("method"), values.pop("trained_on", None)
        if method not in (EXACT_SEARCH, ANN_SEARCH):
            raise ValueError(f"Unknown search method {method!r}; this version knows {EXACT_SEARCH} and {ANN_SEARCH}.")
        return cls(AnnConfig(**values), trained_on) if method == ANN_SEARCH else cls()

    def approximate_index(self, vectors: np.ndarray, reuse: AnnReuse | None = None) -> AnnIndex:
        """The approximate index over `vectors`: trained anew, or a previous build's (see AnnReuse) with
        the rows added that it lacks."""
        if self.ann is None:
            raise ValueError("An exact search has no approximate index.")
        if reuse is None:
            return AnnIndex.build(vectors, self.ann)
        import faiss

        index = faiss.read_index(str(reuse.path))  # into memory, not memory-mapped: it is written to
        start = reuse.n_rows if reuse.appended else 0
        if not reuse.appended:
            index.reset()  # rows were removed or moved: empty the cells, keep what was learnt
        ann = AnnIndex(index, self.ann)
        ann.add_chunks(vectors[row : row + 100_000] for row in range(start, len(vectors), 100_000))
        ann.vectors = vectors
        return ann

    def write(self, vectors: np.ndarray, folder: Path, reuse: AnnReuse | None = None) -> None:
        """Whatever this search needs beside the vectors in a build folder: the approximate index."""
        if self.ann is not None:
            self.approximate_index(vectors, reuse).save(folder / ANN_FILE)

    def open(self, folder: Path, vectors: np.ndarray) -> VectorSearch:
        """The search over a build folder's vectors; FileNotFoundError if its index file is missing."""
        if self.ann is None:
            return ExactSearch(vectors)
        if not (folder / ANN_FILE).is_file():
            raise FileNotFoundError(f"{folder} was built with an approximate index but {ANN_FILE} is missing.")
        # The re-ranked candidates' rows are read from the matrix's file, not its memory map.
        return AnnIndex.load(folder / ANN_FILE, self.ann, vectors=row_reader(vectors))
