"""How an answer reads: gallery captions (name · price · score), the products' links, the summary."""

from __future__ import annotations

import re
from collections.abc import Sequence

from lookalike.catalog.product import is_web_link
from lookalike.index.exact import Metric
from lookalike.recommend.recommender import Recommendation, Recommender, average_similarity

# Characters Markdown would read as markup in a product's name.
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>#+!|~])")


def product_name(item_id: str) -> str:
    """A readable name from a product id: its file name without folder, extension or separators.

    >>> product_name("fruit/apple-red.jpg"), product_name("12345")
    ('Apple red', '12345')
    """
    stem = item_id.rsplit("/", 1)[-1]
    stem = stem.rsplit(".", 1)[0] if "." in stem[1:] else stem
    words = stem.replace("_", " ").replace("-", " ").split()
    return " ".join(words)[:1].upper() + " ".join(words)[1:] if words else item_id


def escape_markdown(text: str) -> str:
    r"""`text` shown as it is in Markdown: a name like "[Sale] *new*" is no link or emphasis.

    >>> escape_markdown("[Sale] *new*")
    '\\[Sale\\] \\*new\\*'
    """
    return _MARKDOWN.sub(r"\\\1", text)


def _url(link: str) -> str:
    """A link as a Markdown target: what would end it early (spaces, parentheses) percent-encoded."""
    return link.replace(" ", "%20").replace("(", "%28").replace(")", "%29")


def display_name(result: Recommendation) -> str:
    """The product's title where the feed gives one, else a name made from its id."""
    return str(result.product.get("title") or product_name(result.product_id or result.id))


def format_price(product: dict) -> str:
    """The price a shopper pays, with its currency: "12.99 EUR", or "9.99 EUR (was 12.99)" on sale.

    >>> format_price({"price": 12.99, "sale_price": 9.99, "currency": "EUR"}), format_price({})
    ('9.99 EUR (was 12.99)', '')
    """
    price, sale = product.get("price"), product.get("sale_price")
    if price is None and sale is None:
        return ""
    currency = f" {product['currency']}" if product.get("currency") else ""
    if sale is not None and price is not None and sale < price:
        return f"{sale:,.2f}{currency} (was {price:,.2f})"
    return f"{(sale if sale is not None else price):,.2f}{currency}"


def gallery_captions(results: list[Recommendation], metric: Metric) -> list[str]:
    """Name, price (or category) and a short score per product, its variants and near-identical ones
    in a few words; Gradio also uses the caption as the image's alt text."""
    score = "{:.2f}" if metric is Metric.COSINE else "distance {:.2f}"
    return [
        " · ".join(
            part
            for part in (
                display_name(r),
                format_price(r.product) or r.label,
                score.format(r.score),
                r.variant_note,
                f"+{len(r.near_duplicates)} alike" if r.near_duplicates else "",
            )
            if part
        )
        for r in results
    ]


def product_links(results: Sequence[Recommendation]) -> str:
    """A Markdown list of the products that have a page in the shop, each linking to it (a new tab)."""
    lines = [
        f"{rank}. [{escape_markdown(display_name(r))}]({_url(r.product['link'])})"
        + (f" · {format_price(r.product)}" if format_price(r.product) else "")
        + (f" · {r.product['availability'].replace('_', ' ')}" if r.product.get("availability") else "")
        for rank, r in enumerate(results, start=1)
        if is_web_link(r.product.get("link"))  # a build only keeps such links; an older or foreign one may not
    ]
    return "\n".join(lines)


def _catalog_size(recommender: Recommender) -> str:
    """How big the catalog is: "273 products", or "40 products (80 photos)" when products have several."""
    n_products, n_photos = recommender.products.n_products, len(recommender.index)
    return f"{n_products:,} products" + (f" ({n_photos:,} photos)" if n_photos != n_products else "")


def summary_text(
    recommender: Recommender, items, elapsed_ms: float, notes: list[str], query: str, link: str | None
) -> str:
    text = (
        f"**Average similarity of the top {len(items)}: {average_similarity(items):.3f}** (cosine) · "
        f"for {query} · {recommender.name} · {_catalog_size(recommender)} · {elapsed_ms:.0f} ms"
    )
    if notes:
        text += "\n\nFilters: " + " · ".join(notes)
    if link:
        text += f"\n\n[Link to these results]({link})"
    if links := product_links(items):
        text += "\n\n**In the shop:**\n\n" + links
    return text
