"""Which catalog products may be recommended: chosen categories (optionally not the query's own), and
product attributes: facets, a price range, in stock."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from lookalike.index.products import ProductTable


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


@dataclass(frozen=True)
class ProductFilter:
    """Restrict recommendations by what the feed says of products. The default lets every product through.

    `facets` are "attribute=value" strings: values of one attribute are OR-ed, attributes AND-ed
    ("brand=Acme", "brand=Zeta", "color=red": an Acme or Zeta product that is red). A price bound
    applies to the price paid (the sale price where there is one); a product without a price fails it.
    """

    facets: tuple[str, ...] = ()
    price_min: float | None = None
    price_max: float | None = None
    in_stock_only: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "facets", tuple(self.facets))
        for name in ("price_min", "price_max"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise ValueError(f"{name} must be a price of 0 or more, got {value}.")
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise ValueError(f"price_min ({self.price_min}) is above price_max ({self.price_max}).")

    @property
    def keeps_everything(self) -> bool:
        return not (self.facets or self.in_stock_only) and self.price_min is None and self.price_max is None

    def by_attribute(self) -> dict[str, list[str]]:
        """The facets grouped by attribute; ValueError for one that is not "attribute=value".

        >>> ProductFilter(facets=("brand=Acme", "color=red", "brand=Zeta")).by_attribute()
        {'brand': ['Acme', 'Zeta'], 'color': ['red']}
        """
        grouped: dict[str, list[str]] = {}
        for facet in self.facets:
            attribute, equals, value = facet.partition("=")
            if not equals or not attribute.strip() or not value.strip():
                raise ValueError(f"A facet is written attribute=value (e.g. brand=Acme), got {facet!r}.")
            grouped.setdefault(attribute.strip(), []).append(value.strip())
        return grouped

    def allowed(self, products: ProductTable) -> np.ndarray:
        """A boolean mask over catalog rows: True where every condition holds."""
        mask = np.ones(len(products.groups), dtype=bool)
        for attribute, values in self.by_attribute().items():
            if attribute not in products.facets:
                known = ", ".join(sorted(products.facets)) or "none"
                raise ValueError(f"This catalog has no attribute {attribute!r} to filter on; its attributes: {known}.")
            mask &= products.facets[attribute].rows_with(values)
        if self.price_min is not None or self.price_max is not None:
            if products.price is None:
                raise ValueError("This catalog has no prices to filter on.")
            with np.errstate(invalid="ignore"):  # NaN (no price) compares False: it fails every bound
                if self.price_min is not None:
                    mask &= products.price >= self.price_min
                if self.price_max is not None:
                    mask &= products.price <= self.price_max
        if self.in_stock_only:
            if products.in_stock is None:
                raise ValueError("This catalog does not say which products are in stock.")
            mask &= products.in_stock
        return mask
