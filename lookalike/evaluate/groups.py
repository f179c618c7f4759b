"""A build's rows as products and product groups: what a group-aware evaluation leaves out of a query's results.

A row is one photo. Its product is its `product_id` (builds made before product columns: the row's
own `id`); its group is its `item_group_id` (variants of one product: sizes, colours), or, where it
has none, its own product. A query's *group* rows are every row of its product or of its group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lookalike.catalog.product import GROUP_ID, PRODUCT_ID

# Columns that hold no category a hit could share: the photo itself and its vector.
NOT_LABELS = frozenset({"image", "embedding"})


def value_codes(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """An int64 code per row, equal for equal values; -1 where the row has no value (null or empty text).

    >>> value_codes(pa.array(["b", None, "a", "b", ""])).tolist()
    [0, -1, 1, 0, -1]
    """
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        column = pc.if_else(pc.equal(column, ""), pa.scalar(None, column.type), column)
    encoded = pc.dictionary_encode(column)
    chunks = encoded.chunks if isinstance(encoded, pa.ChunkedArray) else [encoded]
    if not chunks:
        return np.zeros(0, dtype=np.int64)
    # Chunks may carry different dictionaries: unify them before taking the codes.
    unified = pa.chunked_array(chunks).unify_dictionaries()
    return np.concatenate([np.asarray(c.indices.fill_null(-1), dtype=np.int64) for c in unified.chunks])


@dataclass(frozen=True)
class ProductGroups:
    """Per row, the code of its product and of its group (codes are positions, not ids)."""

    products: np.ndarray  # int64 per row
    groups: np.ndarray  # int64 per row; rows without an item_group_id form a group of their own product

    @classmethod
    def of_codes(cls, products: np.ndarray, item_groups: np.ndarray | None = None) -> ProductGroups:
        """From a product code per row and an item group code per row (-1: none; None: no column).

        >>> ProductGroups.of_codes(np.array([0, 0, 1, 2]), np.array([4, 4, 4, -1])).groups.tolist()
        [0, 0, 0, 1]
        """
        products = np.asarray(products, dtype=np.int64)
        if item_groups is None:
            return cls(products, products)
        item_groups = np.asarray(item_groups, dtype=np.int64)
        if item_groups.shape != products.shape:
            raise ValueError(f"one item group per row: {item_groups.shape} for {products.shape} products")
        # A product without a group is a group of its own: keys beyond the named groups' codes.
        keys = np.where(item_groups >= 0, item_groups, item_groups.max(initial=-1) + 1 + products)
        return cls(products, np.unique(keys, return_inverse=True)[1].astype(np.int64).reshape(-1))

    @classmethod
    def of_table(cls, table: pa.Table) -> ProductGroups:
        """From a build's rows: `product_id` (else `id`) and `item_group_id` when the build has it."""
        names = table.column_names
        products = value_codes(table.column(PRODUCT_ID if PRODUCT_ID in names else "id"))
        unnamed = products < 0
        if unnamed.any():  # a row that names no product is a product of its own
            products[unnamed] = products.max(initial=-1) + 1 + np.arange(int(unnamed.sum()))
        item_groups = value_codes(table.column(GROUP_ID)) if GROUP_ID in names else None
        return cls.of_codes(products, item_groups)

    def __len__(self) -> int:
        return len(self.products)

    def exclusions(self, rows: Sequence[int]) -> list[np.ndarray]:
        """Per row in `rows`: its group rows (every row of its product or of its group, itself included), sorted.

        Rows of one product and group share one array, so a catalog of large groups costs one array per group.

        >>> groups = ProductGroups.of_codes(np.array([0, 0, 1, 2]), np.array([4, 4, 4, -1]))
        >>> [rows.tolist() for rows in groups.exclusions([1, 3])]
        [[0, 1, 2], [3]]
        """
        of_product, of_group = _members(self.products), _members(self.groups)
        shared: dict[tuple[int, int], np.ndarray] = {}
        excluded = []
        for row in np.asarray(rows, dtype=np.int64).tolist():
            key = (int(self.products[row]), int(self.groups[row]))
            if key not in shared:
                shared[key] = np.union1d(of_product(key[0]), of_group(key[1]))
            excluded.append(shared[key])
        return excluded

    def photos_per_product(self) -> np.ndarray:
        """Per row, how many rows (photos) its product has, itself included.

        >>> ProductGroups.of_codes(np.array([0, 1, 0, 0])).photos_per_product().tolist()
        [3, 1, 3, 3]
        """
        return np.bincount(self.products)[self.products] if len(self.products) else np.zeros(0, dtype=np.int64)


def _members(codes: np.ndarray):
    """A function from a code to the rows that carry it, ascending."""
    order = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[order], np.arange(int(codes.max(initial=-1)) + 2))
    return lambda code: order[starts[code] : starts[code + 1]]


def label_values(table: pa.Table, column: str, where: str = "this build") -> np.ndarray:
    """Per row, its value in `column` as text: the category a hit shares with its query; None where it has none.

    With no row lacking a value the array is of str (as `index.labels` gives it); else of objects.
    Raises ValueError naming the table's columns when `column` is not one of them.
    """
    if column not in table.column_names or column in NOT_LABELS:
        usable = [name for name in table.column_names if name not in NOT_LABELS]
        raise ValueError(
            f"{where} has no column {column!r} to score by; its columns are: {', '.join(usable)}. "
            f"Pass one of them with --label-column (default: label)."
        )
    values = table.column(column)
    codes = value_codes(values)
    texts = [None if code < 0 else _text(value) for code, value in zip(codes.tolist(), values.to_pylist(), strict=True)]
    if (codes >= 0).all():
        return np.asarray(texts, dtype=str) if texts else np.asarray([], dtype=str)
    return np.asarray(texts, dtype=object)


def _text(value: object) -> str:
    return value if isinstance(value, str) else str(value)
