"""Reading a shop's product feed (Merchant Center product data as TSV, CSV or RSS/Atom XML) into a Catalog."""

from __future__ import annotations

import csv
import logging
import math
import re
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from lookalike.catalog.feed_xml import RawProduct, read_xml_feed
from lookalike.catalog.product import (
    AVAILABILITY,
    LINK,
    PRICE,
    PRODUCT_ID,
    SALE_PRICE,
    Catalog,
    CatalogError,
    CatalogItem,
    RejectedRow,
)

logger = logging.getLogger(__name__)

FEED_SUFFIXES = frozenset({".tsv", ".csv", ".txt", ".xml"})
DEFAULT_LABEL_COLUMN = "product_type"
OTHER_LABEL = "other"  # the label of a product with no value in the label column
ID, IMAGE_LINK, ADDITIONAL_IMAGE_LINK, CURRENCY = "id", "image_link", "additional_image_link", "currency"
MAX_ADDITIONAL_IMAGES = 10  # Merchant Center's limit; it ignores the rest as well
# The row columns of a build (lookalike.index.writer.ROW_COLUMNS) and our product id: a feed attribute of one
# of these names would collide with them, so it is left out of the product.
_BUILD_COLUMNS = frozenset({"label", "split", "image", "embedding", "content_hash", PRODUCT_ID})
_DELIMITERS = "\t,|~"  # what Merchant Center accepts between the fields of a text feed
_SHOWN_REJECTIONS = 3
_AVAILABILITY_ALIASES = {"pre_order": "preorder", "back_order": "backorder"}
_PRICE = re.compile(r"(?:(?P<before>[A-Za-z]{3})\s*)?(?P<amount>[0-9][0-9.,\s]*?)\s*(?P<after>[A-Za-z]{3})?")


def is_feed(path: Path) -> bool:
    """A file with a feed suffix."""
    return path.suffix.lower() in FEED_SUFFIXES and path.is_file()


def load_feed(path: str | Path, label_column: str | None = None) -> Catalog:
    """A Merchant Center product feed as a catalog with one row per photo (`id`, then `id#2`, `id#3`, ...).

    Rows that cannot be used (no id or image, a bad price, a duplicate id, a wrong field count) are left
    out and listed in `Catalog.rejected`; the rest of the feed is read. `label_column` (default
    `product_type`) gives each product its label, "other" where a product has no value for it.
    """
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"No product feed at {path}: pass a .tsv, .csv, .txt or .xml file.")
    label_column = label_column or DEFAULT_LABEL_COLUMN
    if path.suffix.lower() == ".xml" or _looks_like_xml(path):
        products = read_xml_feed(path)
        columns = list(dict.fromkeys(name for product in products for name in product.values))
        rows: list[RawProduct | RejectedRow] = list(products)
    else:
        columns, rows = _read_text_feed(path)
    label_key = _attribute_name(label_column)
    if label_key not in columns:
        raise CatalogError(
            f"{path} has no {label_column!r} column to label its products by; its columns are "
            f"{', '.join(columns)}. Pass --label-column with one of them (e.g. google_product_category or brand)."
        )
    if clashing := sorted(set(columns) & _BUILD_COLUMNS):
        logger.warning("%s: attributes %s are left out (a build uses those names for its own columns)", path, clashing)
    return _catalog(path, rows, PRODUCT_ID if label_key == ID else label_key)


def _catalog(path: Path, rows: Iterable[RawProduct | RejectedRow], label_key: str) -> Catalog:
    items: list[CatalogItem] = []
    rejected: list[RejectedRow] = []
    taken: dict[str, str] = {}  # row id -> where its product is in the feed
    for row in rows:
        if isinstance(row, RejectedRow):
            rejected.append(row)
            continue
        try:
            product, photos, label = _product(row, label_key)
        except _Rejected as reason:
            rejected.append(RejectedRow(row.where, str(reason)))
            continue
        product_id = str(product[PRODUCT_ID])
        ids = [product_id] + [f"{product_id}#{n}" for n in range(2, len(photos) + 1)]
        if clash := next((row_id for row_id in ids if row_id in taken), None):
            rejected.append(RejectedRow(row.where, f"duplicate id {clash!r} (first at {taken[clash]})"))
            continue
        for row_id, photo in zip(ids, photos, strict=True):
            items.append(CatalogItem(id=row_id, label=label, image=photo, product=product))
            taken[row_id] = row.where
    if not items:
        shown = "; ".join(f"{row.row}: {row.reason}" for row in rejected[:_SHOWN_REJECTIONS])
        more = f" (and {len(rejected) - _SHOWN_REJECTIONS} more)" if len(rejected) > _SHOWN_REJECTIONS else ""
        if not rejected:
            raise CatalogError(f"{path} has no products: only a header line.")
        raise CatalogError(f"{path} has no product that can be used: {shown}{more}.")
    return Catalog(source=str(path), items=items, rejected=rejected)


class _Rejected(Exception):
    """A product left out of the catalog; the message is the reason the build lists."""


def _product(raw: RawProduct, label_key: str) -> tuple[dict[str, object], list[str], str]:
    """A raw product's mapping (checked and typed), its photo URLs (main first) and its label."""
    values = {name: [value.strip() for value in values if value.strip()] for name, values in raw.values.items()}
    # A repeated attribute other than the images (a column given twice) takes its first value.
    first = {name: values[0] for name, values in values.items() if values}
    product_id = first.get(ID)
    if product_id is None:
        raise _Rejected("no id")
    image = first.get(IMAGE_LINK)
    if image is None:
        raise _Rejected(f"product {product_id!r} has no image_link")
    if not _is_http(image):
        raise _Rejected(f"image_link {image!r} of product {product_id!r} is not an http or https URL")
    dropped = _BUILD_COLUMNS | {ID, ADDITIONAL_IMAGE_LINK}
    product: dict[str, object] = {PRODUCT_ID: product_id} | {k: v for k, v in first.items() if k not in dropped}
    _type_prices(product_id, product)
    if AVAILABILITY in product:
        product[AVAILABILITY] = _availability(str(product[AVAILABILITY]))
    if LINK in product and not _is_http(str(product[LINK])):
        logger.warning(
            "Product %s: link %r dropped (only http and https links are served)", product_id, product.pop(LINK)
        )
    label = product[label_key] if label_key in product else first.get(label_key)
    photos = [image, *_additional_images(product_id, image, values.get(ADDITIONAL_IMAGE_LINK, []))]
    return product, photos, OTHER_LABEL if label is None else str(label)


def _type_prices(product_id: str, product: dict[str, object]) -> None:
    """`price` and `sale_price` as numbers and the currency they name.

    A bad price rejects the product: a shop shows it, so a wrong one must not be served. A bad
    `sale_price` (or one in another currency) only drops the sale, as Merchant Center shows the
    regular price then too.
    """
    if CURRENCY in product:
        product[CURRENCY] = str(product[CURRENCY]).upper()
    if PRICE in product:
        parsed = _price(str(product[PRICE]))
        if parsed is None:
            raise _Rejected(f"price {product[PRICE]!r} of product {product_id!r} is not an amount like '12.99 USD'")
        product[PRICE], currency = parsed
        if currency:
            product[CURRENCY] = currency
    if SALE_PRICE in product:
        parsed = _price(str(product[SALE_PRICE]))
        if parsed is None or (parsed[1] and product.get(CURRENCY, parsed[1]) != parsed[1]):
            logger.warning(
                "Product %s: sale_price %r dropped (not an amount like '9.99 USD' in the price's currency)",
                product_id,
                product.pop(SALE_PRICE),
            )
            return
        product[SALE_PRICE], currency = parsed
        if currency:
            product.setdefault(CURRENCY, currency)


def _price(text: str) -> tuple[float, str | None] | None:
    """'12.99 USD', 'USD 12.99', '12.99', '1,299.00 EUR', '12,99 EUR' as (amount, ISO 4217 code or None).

    >>> _price("1,299.00 eur"), _price("USD 12,99"), _price("-5 USD")
    ((1299.0, 'EUR'), (12.99, 'USD'), None)
    """
    match = _PRICE.fullmatch(text.strip())
    if match is None or (match["before"] and match["after"]):
        return None
    amount = _amount(match["amount"])
    if amount is None:
        return None
    currency = match["before"] or match["after"]
    return amount, currency.upper() if currency else None


def _amount(text: str) -> float | None:
    """A number written with ',' or '.' decimals and thousands: the last separator is the decimal one,
    unless it is the only kind and groups thousands ("1,299", "1.299.000"; a lone "1.299" stays 1.299).

    >>> _amount("1.299,00"), _amount("12,99"), _amount("1,299"), _amount("1 299.5"), _amount("1.2.3")
    (1299.0, 12.99, 1299.0, 1299.5, None)
    """
    digits = re.sub(r"\s", "", text)
    separators = {char for char in digits if char in ",."}
    if len(separators) == 2:
        decimal = digits[max(digits.rfind(","), digits.rfind("."))]
        digits = digits.replace("," if decimal == "." else ".", "").replace(decimal, ".")
    elif separators:
        (separator,) = separators
        grouped = re.fullmatch(rf"[0-9]{{1,3}}(?:{re.escape(separator)}[0-9]{{3}})+", digits)
        thousands = grouped and (separator == "," or digits.count(separator) > 1)
        digits = digits.replace(separator, "" if thousands else ".")
    try:
        value = float(digits)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _availability(value: str) -> str:
    """The specification's spelling: "in stock" -> "in_stock"; an unknown value lower-cased, spaces -> "_"."""
    key = re.sub(r"[\s_-]+", "_", value.strip().lower())
    return _AVAILABILITY_ALIASES.get(key, key)


def _additional_images(product_id: str, image: str, urls: list[str]) -> list[str]:
    """The additional photos worth a row: http(s), not the main image again, at most Merchant Center's 10."""
    kept: list[str] = []
    for url in urls:
        if not _is_http(url):
            logger.warning("Product %s: additional_image_link %r dropped (not an http or https URL)", product_id, url)
        elif url != image and url not in kept:
            kept.append(url)
    if len(kept) > MAX_ADDITIONAL_IMAGES:
        logger.warning("Product %s: only the first %d additional images are kept", product_id, MAX_ADDITIONAL_IMAGES)
    return kept[:MAX_ADDITIONAL_IMAGES]


def _is_http(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def _read_text_feed(path: Path) -> tuple[list[str], list[RawProduct | RejectedRow]]:
    """The header's attribute names and each row (or why a row cannot be read) of a delimited text feed."""
    rows: list[RawProduct | RejectedRow] = []
    try:
        with path.open(encoding="utf-8-sig", newline="") as file:
            delimiter = _delimiter(file.readline(), path.suffix.lower())
            file.seek(0)
            reader = csv.reader(file, delimiter=delimiter)
            try:
                names = [_attribute_name(name) for name in next(reader, [])]
                start = reader.line_num + 1
                for fields in reader:
                    # line_num is where a record ends; a quoted field can span lines, so note where it starts.
                    where, start = f"line {start}", reader.line_num + 1
                    if any(field.strip() for field in fields):
                        rows.append(_text_row(where, names, fields))
            except csv.Error as error:
                raise CatalogError(f"{path} cannot be read at line {reader.line_num}: {error}.") from error
    except UnicodeDecodeError as error:
        raise CatalogError(f"{path} is not UTF-8 text ({error.reason}): save the feed as UTF-8.") from error
    missing = [name for name in (ID, IMAGE_LINK) if name not in names]
    if missing:
        raise CatalogError(
            f"{path} has no {' or '.join(missing)} column; its header (first line) is {', '.join(names) or 'empty'}. "
            "A Merchant Center feed names its attributes in the first line: id, title, image_link, ..."
        )
    return [name for name in dict.fromkeys(names) if name], rows


def _text_row(where: str, names: list[str], fields: list[str]) -> RawProduct | RejectedRow:
    if len(fields) != len(names):
        return RejectedRow(where, f"{len(fields)} fields, the header has {len(names)}")
    values: dict[str, list[str]] = {}
    for name, field in zip(names, fields, strict=True):
        if name:  # a column without a name (a trailing delimiter in the header) holds nothing to keep
            # Text feeds list additional images in one field, comma-separated (XML repeats the element).
            values.setdefault(name, []).extend(field.split(",") if name == ADDITIONAL_IMAGE_LINK else [field])
    return RawProduct(where, values)


def _delimiter(header: str, suffix: str) -> str:
    """The extension's delimiter unless the header line shows another: a `.txt` (or a mislabelled feed) can be
    tab- or comma-separated. Attribute names hold no delimiter, so the header line cannot mislead."""
    preferred = "," if suffix == ".csv" else "\t"
    if preferred in header:
        return preferred
    return next((delimiter for delimiter in _DELIMITERS if delimiter in header), preferred)


def _attribute_name(name: str) -> str:
    """A header name as the specification spells it: Merchant Center ignores case, spaces and a `g:` prefix."""
    return re.sub(r"\s+", "_", name.strip().lower().removeprefix("g:").strip())


def _looks_like_xml(path: Path) -> bool:
    """An XML feed saved with a text extension (`.txt`): it starts with '<' where a header would be."""
    with path.open("rb") as file:
        return file.read(64).removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"<")
