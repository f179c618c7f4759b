"""The schema of a product that every stage shares: a catalog row, its columns and their Arrow types.

A catalog row is one photo. A product with several photos has several rows (`id` unique per row,
`product_id` shared); variants of one product (sizes, colours) share an `item_group_id`. The
attribute names are the Google Merchant Center product data specification's, which Meta,
Pinterest and TikTok catalogs take too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pyarrow as pa

from lookalike.images import ImageSource

logger = logging.getLogger(__name__)

PRODUCT_ID = "product_id"
GROUP_ID = "item_group_id"
LINK = "link"
PRICE = "price"
SALE_PRICE = "sale_price"
AVAILABILITY = "availability"
IN_STOCK = "in_stock"

# Every product column a build can hold, in the order the parquet files list them. Columns a source
# adds beyond these (a Hub dataset's own) are kept as strings, after them.
PRODUCT_COLUMNS: dict[str, pa.DataType] = {
    PRODUCT_ID: pa.string(),
    "title": pa.string(),
    "description": pa.string(),
    LINK: pa.string(),
    "image_link": pa.string(),
    PRICE: pa.float64(),
    SALE_PRICE: pa.float64(),
    "currency": pa.string(),
    AVAILABILITY: pa.string(),
    "brand": pa.string(),
    "condition": pa.string(),
    "product_type": pa.string(),
    "google_product_category": pa.string(),
    GROUP_ID: pa.string(),
    "color": pa.string(),
    "size": pa.string(),
    "gender": pa.string(),
    "age_group": pa.string(),
    "material": pa.string(),
    "pattern": pa.string(),
}
# Columns that name or describe one product rather than sort products into kinds: never facets.
NOT_FACETS = frozenset(
    {"id", "label", "split", "image", "embedding", "content_hash", PRODUCT_ID, "title", "description", LINK}
    | {"image_link", "currency", GROUP_ID, PRICE, SALE_PRICE}
)


def column_type(name: str) -> pa.DataType:
    """The Arrow type of a product column; a column outside the schema is text."""
    return PRODUCT_COLUMNS.get(name, pa.string())


def is_facet(name: str, data_type: pa.DataType) -> bool:
    """Whether shoppers can filter on a column's values ("brand=Acme"): a text attribute of kinds."""
    return name not in NOT_FACETS and pa.types.is_string(data_type)


@dataclass(frozen=True)
class CatalogItem:
    """One catalog row: a stable id, its category, what `open_image` (or the downloader) reads its
    photo from, and its product's columns (`PRODUCT_COLUMNS` and any a source adds; absent: unknown)."""

    id: str
    label: str
    image: ImageSource
    product: Mapping[str, object] = field(default_factory=dict)

    @property
    def product_id(self) -> str:
        return str(self.product.get(PRODUCT_ID) or self.id)


@dataclass(frozen=True)
class RejectedRow:
    """A row of a source that was left out of the catalog, and why (shown by the build)."""

    row: str  # where it is: "line 12", "item 3", an id
    reason: str


@dataclass(frozen=True)
class Catalog:
    source: str
    items: list[CatalogItem]
    # The source's own train/test assignment, when it has one; else build_index splits by seed.
    given_splits: list[str] | None = None
    rejected: list[RejectedRow] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return [item.label for item in self.items]

    @property
    def product_columns(self) -> dict[str, pa.DataType]:
        return product_columns(item.product for item in self.items)


class CatalogError(ValueError):
    """A catalog source that cannot be read; the message says what to pass instead."""


def product_columns(products: Iterable[Mapping[str, object]]) -> dict[str, pa.DataType]:
    """The columns some product has, schema columns first in schema order, then the others by name.

    `product_id` is always there: a build says for every row which product it shows.
    """
    present = {PRODUCT_ID}
    for product in products:
        present.update(name for name, value in product.items() if value is not None)
    known = [name for name in PRODUCT_COLUMNS if name in present]
    return {name: column_type(name) for name in known + sorted(present - set(known))}


def product_arrays(items: Sequence[CatalogItem], columns: Mapping[str, pa.DataType]) -> dict[str, pa.Array]:
    """The product columns of some rows as Arrow arrays of the schema's types (None where unknown)."""
    arrays = {}
    for name, data_type in columns.items():
        if name == PRODUCT_ID:
            values = [item.product_id for item in items]
        else:
            values = [_typed(item.product.get(name), data_type) for item in items]
        arrays[name] = pa.array(values, type=data_type)
    return arrays


def is_web_link(text: object) -> bool:
    """An http or https URL with a host: the only product links ever served (never `javascript:`, `data:`).

    >>> is_web_link("https://shop.example/p/1"), is_web_link("javascript:alert(1)"), is_web_link("/p/1")
    (True, False, False)
    """
    try:
        parts = urlsplit(str(text))
    except ValueError:
        return False
    return parts.scheme.lower() in {"http", "https"} and bool(parts.netloc)


def product_values(values: Mapping[str, object]) -> dict[str, object]:
    """A source row's attributes as a product: each typed by the schema, empty values left out.

    >>> product_values({"price": "12.5", "brand": " Acme ", "size": ""})
    {'price': 12.5, 'brand': 'Acme'}
    """
    product = {}
    for name, value in values.items():
        if isinstance(value, str):
            value = value.strip()
        if value is None or value == "" or isinstance(value, dict | list | bytes):
            continue  # empty, or no attribute (another image, a nested record)
        if name == LINK and not is_web_link(value):
            logger.warning("Link %r dropped (only http and https links are served)", value)
            continue
        try:
            product[name] = _typed(value, column_type(name))
        except (TypeError, ValueError):
            continue  # a price that is no number is unknown, not a reason to lose the photo
    return product


def _typed(value: object, data_type: pa.DataType) -> object:
    if value is None:
        return None
    if pa.types.is_floating(data_type):
        return float(value)
    return str(value)
