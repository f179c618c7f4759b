"""Which catalog products may be recommended: chosen categories, and optionally not the query's own."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CategoryColumn:
    """A catalog's category per row as small integer codes, made once at load: a filter is then one gather."""

    names: tuple[str, ...]
    codes: np.ndarray  # one int32 per row, an index into `names`

    @classmethod
    def of(cls, labels: Iterable[str]) -> CategoryColumn:
        position: dict[str, int] = {}
        codes = np.fromiter((position.setdefault(label, len(position)) for label in labels), dtype=np.int32)
        return cls(tuple(position), codes)

    def labels(self) -> np.ndarray:
        """The category of every row, as an array of the few category strings."""
        return np.asarray(self.names, dtype=object)[self.codes]


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

    @property
    def keeps_everything(self) -> bool:
        """Whether every product passes, whatever the query: no mask is needed."""
        return not (self.only or self.exclude or self.exclude_query_category)

    def check_known(self, known: Iterable[str]) -> None:
        """Raise ValueError naming the valid categories if the filter names one the catalog lacks."""
        known = set(known)
        unknown = sorted(set(self.only + self.exclude) - known)
        if unknown:
            raise ValueError(f"Unknown categories {', '.join(unknown)}; this catalog has {', '.join(sorted(known))}.")

    def allowed(self, labels: CategoryColumn | Sequence[str], query_categories: Iterable[str] = ()) -> np.ndarray:
        """A boolean mask over catalog rows: True where a product may be recommended.

        >>> CategoryFilter(only=("fruit", "tool"), exclude_query_category=True).allowed(
        ...     ["fruit", "tool", "bird"], query_categories=["fruit"]).tolist()
        [False, True, False]
        """
        column = labels if isinstance(labels, CategoryColumn) else CategoryColumn.of(labels)
        excluded = set(self.exclude) | (set(query_categories) if self.exclude_query_category else set())
        kept = np.array(
            [(not self.only or name in self.only) and name not in excluded for name in column.names], dtype=bool
        )
        return kept[column.codes] if len(column.names) else np.ones(len(column.codes), dtype=bool)
