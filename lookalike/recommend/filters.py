"""Which catalog products may be recommended: chosen categories, and optionally not the query's own."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CategoryFilter:
    """Restrict recommendations by category. The default lets every product through.

    `exclude_query_category` serves "show me matching accessories": products of the query's own
    category are left out, so the results are what goes with it rather than more of the same.
    """

    only: tuple[str, ...] = ()  # recommend only these categories; empty means every category
    exclude: tuple[str, ...] = ()
    exclude_query_category: bool = False

    def __post_init__(self) -> None:
        # Tuples, so the filter is hashable and a list from a UI cannot be mutated behind our back.
        object.__setattr__(self, "only", tuple(self.only))
        object.__setattr__(self, "exclude", tuple(self.exclude))

    def check_known(self, known: Iterable[str]) -> None:
        """Raise ValueError naming the valid categories if the filter names one the catalog lacks."""
        known = set(known)
        unknown = sorted(set(self.only + self.exclude) - known)
        if unknown:
            raise ValueError(f"Unknown categories {', '.join(unknown)}; this catalog has {', '.join(sorted(known))}.")

    def allowed(self, labels: Sequence[str], query_categories: Iterable[str] = ()) -> np.ndarray:
        """A boolean mask over catalog rows: True where a product may be recommended.

        >>> CategoryFilter(only=("fruit", "tool"), exclude_query_category=True).allowed(
        ...     ["fruit", "tool", "bird"], query_categories=["fruit"]).tolist()
        [False, True, False]
        """
        labels = np.asarray(labels, dtype=object)
        mask = np.isin(labels, list(self.only)) if self.only else np.ones(len(labels), dtype=bool)
        excluded = set(self.exclude) | (set(query_categories) if self.exclude_query_category else set())
        if excluded:
            mask &= ~np.isin(labels, list(excluded))
        return mask
