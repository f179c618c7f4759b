"""Reading an RSS 2.0 or Atom product feed (Merchant Center `g:` elements) into raw products, safely."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as safe_etree
from defusedxml import DefusedXmlException

from lookalike.catalog.product import CatalogError

GOOGLE_NS = "http://base.google.com/ns/1.0"
ATOM_NS = "http://www.w3.org/2005/Atom"
# Plain (non-`g:`) elements of an item that carry product attributes; a `g:` element of the same name wins.
# Everything else plain (guid, pubDate, Atom's own id and updated) describes the feed entry, not the product.
_PLAIN_ELEMENTS = {"title": "title", "link": "link", "description": "description"}
_ATOM_ELEMENTS = {"title": "title", "summary": "description", "content": "description"}


@dataclass(frozen=True)
class RawProduct:
    """One product as a feed spells it: where it is ("line 12", "item 3") and each attribute's values
    (several for a repeated attribute such as `additional_image_link`), not yet checked or typed."""

    where: str
    values: dict[str, list[str]]


def read_xml_feed(path: Path) -> list[RawProduct]:
    """Every `<item>` (RSS) or `<entry>` (Atom) of an XML feed, in order.

    defusedxml refuses entity declarations and external references: a product feed needs neither,
    and they are how a hostile feed expands to gigabytes (billion laughs) or reads local files.
    Items are cleared once read, so a large feed is streamed rather than held as a tree.
    """
    products = []
    try:
        for _, element in safe_etree.iterparse(str(path), events=("end",)):
            namespace, name = _split_tag(element.tag)
            if name in ("item", "entry") and namespace != GOOGLE_NS:
                products.append(RawProduct(f"item {len(products) + 1}", _item_values(element, atom=name == "entry")))
                element.clear()
    except DefusedXmlException as error:
        raise CatalogError(
            f"{path} is refused: it declares XML entities or external references ({error}). A product feed "
            "needs neither, and they can expand to gigabytes or read local files; remove its <!DOCTYPE> block."
        ) from error
    except ParseError as error:
        raise CatalogError(f"{path} is not well-formed XML ({error}); fix the feed at that line.") from error
    if not products:
        raise CatalogError(
            f"{path} has no <item> (RSS 2.0) or <entry> (Atom) elements: is it a Merchant Center product feed?"
        )
    return products


def _item_values(item: Element, atom: bool) -> dict[str, list[str]]:
    google: dict[str, list[str]] = {}
    plain: dict[str, list[str]] = {}
    for child in item:
        namespace, name = _split_tag(child.tag)
        if namespace == GOOGLE_NS:
            # Attributes with sub-elements (g:shipping, g:tax, g:installment) are not one value: skipped.
            if len(child) == 0:
                google.setdefault(name.lower(), []).append(child.text or "")
        elif atom and name == "link":
            if child.get("rel", "alternate") == "alternate" and child.get("href"):
                plain.setdefault("link", []).append(child.get("href", ""))
        elif len(child) == 0:
            elements = _ATOM_ELEMENTS if atom else _PLAIN_ELEMENTS
            if name in elements and namespace in ("", ATOM_NS):
                plain.setdefault(elements[name], []).append(child.text or "")
    # An empty element still says the feed has that attribute (a label column with no value: "other"),
    # but an empty `g:title` must not hide a plain <title>.
    for name, values in google.items():
        if name not in plain or any(value.strip() for value in values):
            plain[name] = values
    return plain


def _split_tag(tag: str) -> tuple[str, str]:
    """`{namespace}name` as (namespace, name); a tag without a namespace has namespace ""."""
    if tag.startswith("{"):
        namespace, _, name = tag[1:].partition("}")
        return namespace, name
    return "", tag
