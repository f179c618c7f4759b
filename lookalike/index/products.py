"""A build's product columns as arrays made once at load: groups of rows, facets, prices, stock.

Nothing here holds a Python object per product: every column is an Arrow dictionary's codes or a
float array, read from the memory-mapped rows, so a million products cost a few int32 arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lookalike.catalog.product import (
    AVAILABILITY,
    GROUP_ID,
    IN_STOCK,
    PRICE,
    PRODUCT_ID,
    SALE_PRICE,
    is_facet,
)

# What a group's products differ by, in the order a shopper reads it ("+4 sizes").
VARIANT_ATTRIBUTES = (("size", "sizes"), ("color", "colours"), ("material", "materials"), ("pattern", "patterns"))
# Facet values offered on the page per attribute: its size must not grow with the catalog.
OFFERED_VALUES = 30


@dataclass(frozen=True)
class CodedColumn:
    """A text column as small integer codes into its few distinct `values`; -1 where the row has none."""

    values: tuple[str, ...]
    codes: np.ndarray  # int32 per row
    counts: np.ndarray  # rows per value

    @classmethod
    def of(cls, column: pa.ChunkedArray | pa.Array) -> CodedColumn:
        # One array first: unifying the dictionaries of a million rows' 100 chunks takes 20 s, this 0.3 s.
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks() if column.num_chunks else pa.array([], type=column.type)
        encoded = pc.dictionary_encode(column)
        codes = np.asarray(encoded.indices.fill_null(-1), dtype=np.int32)
        values = tuple(encoded.dictionary.to_pylist())
        return cls(values, codes, np.bincount(codes[codes >= 0], minlength=len(values)))

    def rows_with(self, wanted: Sequence[str]) -> np.ndarray:
        """A boolean mask: rows whose value is one of `wanted`."""
        position = {value: code for code, value in enumerate(self.values)}
        kept = np.zeros(len(self.values) + 1, dtype=bool)  # the extra last entry is the rows with none (-1)
        for value in wanted:
            if value in position:
                kept[position[value]] = True
        return kept[self.codes]

    def most_common(self, n: int) -> list[str]:
        order = np.argsort(-self.counts, kind="stable")[:n]
        return sorted(self.values[code] for code in order.tolist())


@dataclass(frozen=True)
class ProductTable:
    """Per row: its product, its group (variants share one: `item_group_id`, else the product), and
    what filters read (facet codes, the price a shopper pays, whether it is in stock)."""

    products: np.ndarray  # int32 code of the row's product
    groups: np.ndarray  # int32 code of the row's group
    facets: dict[str, CodedColumn]
    price: np.ndarray | None  # float64, the sale price where there is one; NaN where unknown
    in_stock: np.ndarray | None  # bool; None when the catalog does not say
    _group_order: np.ndarray  # rows sorted by group
    _group_starts: np.ndarray  # where each group's rows begin in `_group_order`

    @classmethod
    def of(cls, table: pa.Table) -> ProductTable:
        n = table.num_rows
        names = table.column_names
        product_codes = CodedColumn.of(table.column(PRODUCT_ID if PRODUCT_ID in names else "id")).codes
        if GROUP_ID in names:
            group_codes = CodedColumn.of(table.column(GROUP_ID)).codes
            # A product without a group is a group of its own: codes after the named groups'.
            keys = np.where(group_codes >= 0, group_codes, group_codes.max(initial=-1) + 1 + product_codes)
            _, groups = np.unique(keys, return_inverse=True)
            groups = groups.astype(np.int32)
        else:
            groups = product_codes
        order = np.argsort(groups, kind="stable")
        starts = np.searchsorted(groups[order], np.arange(int(groups.max(initial=-1)) + 2))
        facets = {
            name: CodedColumn.of(table.column(name))
            for name in names
            if name != "label" and is_facet(name, table.schema.field(name).type)
        }
        return cls(
            products=product_codes,
            groups=groups,
            facets=facets,
            price=_paid_price(table) if PRICE in names or SALE_PRICE in names else None,
            in_stock=facets[AVAILABILITY].rows_with([IN_STOCK]) if AVAILABILITY in facets else None,
            _group_order=order,
            _group_starts=starts if n else np.zeros(1, dtype=np.int64),
        )

    @property
    def n_products(self) -> int:
        return int(self.products.max(initial=-1)) + 1

    def group_rows(self, row: int) -> np.ndarray:
        """Every row of the group `row` belongs to: the product's other photos and its variants'."""
        group = int(self.groups[row])
        return self._group_order[self._group_starts[group] : self._group_starts[group + 1]]

    def sibling_rows(self, row: int) -> list[int]:
        """One row per other product of `row`'s group (its variants), in catalog order."""
        seen = {int(self.products[row])}
        siblings = []
        for member in self.group_rows(row).tolist():
            product = int(self.products[member])
            if product not in seen:
                seen.add(product)
                siblings.append(member)
        return siblings

    def offered_facets(self) -> list[str]:
        """The "attribute=value" choices a page offers: each attribute's most common values, a bounded list."""
        return [
            f"{name}={value}"
            for name, column in self.facets.items()
            if len(column.values) > 1
            for value in column.most_common(OFFERED_VALUES)
        ]


def _paid_price(table: pa.Table) -> np.ndarray:
    def column(name: str) -> np.ndarray:
        if name not in table.column_names:
            return np.full(table.num_rows, np.nan)
        return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)

    price, sale = column(PRICE), column(SALE_PRICE)
    return np.where(np.isnan(sale), price, sale)


def variant_note(records: Sequence[dict]) -> str:
    """How a group's other products differ from the shown one, in a few words: "+4 sizes", "+2 variants".

    >>> variant_note([{"size": "S"}, {"size": "L"}])
    '+2 sizes'
    """
    if not records:
        return ""
    n = len(records)
    for attribute, plural in VARIANT_ATTRIBUTES:
        if len({record.get(attribute) for record in records} - {None}) == n:
            return f"+{n} {plural if n > 1 else plural.removesuffix('s')}"
    return f"+{n} variant" + ("s" if n > 1 else "")
