"""Product feeds: text and XML feeds read into the same catalog, bad rows listed, hostile XML refused."""

from __future__ import annotations

import csv
import io
import logging
import tempfile
import time
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lookalike.catalog.feed import FEED_SUFFIXES, is_feed, load_feed
from lookalike.catalog.product import CatalogError

HEADER = [
    "id",
    "title",
    "description",
    "link",
    "image_link",
    "additional_image_link",
    "price",
    "sale_price",
    "availability",
    "brand",
    "product_type",
    "google_product_category",
    "item_group_id",
    "color",
    "size",
    "gender",
    "material",
    "custom_label_0",
]
MUG = {
    "id": "p1",
    "title": "Blue mug",
    "description": "A blue, glazed mug",
    "link": "https://shop.example/p1",
    "image_link": "https://cdn.example/p1.jpg",
    "additional_image_link": ["https://cdn.example/p1-side.jpg", "https://cdn.example/p1-top.jpg"],
    "price": "12.99 USD",
    "sale_price": "9.99 USD",
    "availability": "in stock",
    "brand": "Acme",
    "product_type": "Home > Kitchen > Mugs",
    "google_product_category": "Home & Garden > Kitchen & Dining > Tableware > Drinkware > Mugs",
    "color": "blue",
    "material": "ceramic",
    "custom_label_0": "summer",
}
SHIRT = {
    "title": "Red shirt",
    "link": "https://shop.example/shirt",
    "price": "20.00 USD",
    "brand": "Acme",
    "product_type": "Apparel > Shirts",
    "google_product_category": "Apparel & Accessories > Clothing > Shirts & Tops",
    "item_group_id": "shirt",
    "color": "red",
    "gender": "male",
}
PRODUCTS = [
    MUG,
    SHIRT | {"id": "shirt-s", "size": "S", "availability": "out of stock", "image_link": "https://cdn.example/s.jpg"},
    SHIRT | {"id": "shirt-m", "size": "M", "availability": "preorder", "image_link": "https://cdn.example/m.jpg"},
    {"id": "lamp", "title": "Lamp", "image_link": "http://cdn.example/lamp.png", "price": "1,299.00 EUR"},
]
MUG_PRODUCT = {
    "product_id": "p1",
    "title": "Blue mug",
    "description": "A blue, glazed mug",
    "link": "https://shop.example/p1",
    "image_link": "https://cdn.example/p1.jpg",
    "price": 12.99,
    "sale_price": 9.99,
    "currency": "USD",
    "availability": "in_stock",
    "brand": "Acme",
    "product_type": "Home > Kitchen > Mugs",
    "google_product_category": "Home & Garden > Kitchen & Dining > Tableware > Drinkware > Mugs",
    "color": "blue",
    "material": "ceramic",
    "custom_label_0": "summer",
}


def text_feed(
    products: list[dict], columns: list[str] = HEADER, delimiter: str = "\t", header: list[str] | None = None
) -> str:
    """Products as a delimited text feed (`header` spells the column names), additional images comma-separated."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header or columns)
    for product in products:
        writer.writerow([_text_value(product.get(name, "")) for name in columns])
    return out.getvalue()


def _text_value(value: str | list[str]) -> str:
    return ",".join(value) if isinstance(value, list) else value


def rss_feed(products: list[dict], plain: frozenset[str] = frozenset({"title", "link", "description"})) -> str:
    """Products as RSS 2.0 with `g:` elements; the attributes in `plain` as plain RSS elements."""
    items = []
    for product in products:
        elements = []
        for name, value in product.items():
            tag = name if name in plain else f"g:{name}"
            for one in value if isinstance(value, list) else [value]:
                elements.append(f"<{tag}>{escape(one)}</{tag}>")
        items.append("<item>" + "".join(elements) + "</item>")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" xmlns:g="http://base.google.com/ns/1.0">\n'
        "<channel><title>Shop</title><link>https://shop.example</link>\n" + "\n".join(items) + "\n</channel></rss>\n"
    )


def atom_feed(products: list[dict]) -> str:
    """Products as Atom 1.0: title, link href and summary as Atom elements, the rest as `g:` elements."""
    entries = []
    for product in products:
        elements = ["<id>tag:shop.example,2024:entry</id>", "<updated>2024-01-01T00:00:00Z</updated>"]
        for name, value in product.items():
            if name == "title":
                elements.append(f"<title>{escape(value)}</title>")
            elif name == "link":
                elements.append(f"<link rel='alternate' href={quoteattr(value)}/>")
            elif name == "description":
                elements.append(f"<summary>{escape(value)}</summary>")
            else:
                elements += [f"<g:{name}>{escape(one)}</g:{name}>" for one in _as_list(value)]
        entries.append("<entry>" + "".join(elements) + "</entry>")
    return (
        '<?xml version="1.0"?>\n<feed xmlns="http://www.w3.org/2005/Atom" xmlns:g="http://base.google.com/ns/1.0">\n'
        "<title>Shop</title>\n" + "\n".join(entries) + "\n</feed>\n"
    )


def _as_list(value: str | list[str]) -> list[str]:
    return value if isinstance(value, list) else [value]


def write(directory: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = directory / name
    path.write_text(text, encoding=encoding, newline="")
    return path


def summary(catalog) -> list[tuple]:
    return [(item.id, item.label, item.image, dict(item.product)) for item in catalog.items]


def test_tsv_with_the_specification_columns_gives_a_row_per_photo(tmp_path):
    catalog = load_feed(write(tmp_path, "feed.tsv", text_feed(PRODUCTS)))

    assert catalog.source == str(tmp_path / "feed.tsv")
    assert [item.id for item in catalog.items] == ["p1", "p1#2", "p1#3", "shirt-s", "shirt-m", "lamp"]
    assert catalog.labels == ["Home > Kitchen > Mugs"] * 3 + ["Apparel > Shirts"] * 2 + ["other"]
    mug_rows = catalog.items[:3]
    assert [item.image for item in mug_rows] == [
        "https://cdn.example/p1.jpg",
        "https://cdn.example/p1-side.jpg",
        "https://cdn.example/p1-top.jpg",
    ]
    assert all(item.product is mug_rows[0].product for item in mug_rows)
    assert dict(mug_rows[0].product) == MUG_PRODUCT
    assert {item.product_id for item in mug_rows} == {"p1"}
    small, medium = catalog.items[3:5]
    assert small.product["item_group_id"] == medium.product["item_group_id"] == "shirt"
    assert (small.product["size"], medium.product["size"]) == ("S", "M")
    assert (small.product["availability"], medium.product["availability"]) == ("out_of_stock", "preorder")
    assert catalog.items[5].product["price"] == 1299.0
    assert catalog.items[5].product["currency"] == "EUR"
    assert catalog.rejected == []


def test_csv_keeps_quoted_commas_and_newlines(tmp_path):
    mug = MUG | {"description": 'A "blue", glazed mug,\nmicrowave safe'}
    path = write(tmp_path, "feed.csv", text_feed([mug, PRODUCTS[3]], delimiter=","))

    catalog = load_feed(path)

    assert [item.id for item in catalog.items] == ["p1", "p1#2", "p1#3", "lamp"]
    assert catalog.items[0].product["description"] == 'A "blue", glazed mug,\nmicrowave safe'
    assert catalog.items[0].product["google_product_category"] == MUG["google_product_category"]


@pytest.mark.parametrize(
    ("name", "delimiter", "encoding"),
    [
        ("feed.txt", ",", "utf-8"),
        ("feed.txt", "\t", "utf-8-sig"),
        ("feed.csv", ",", "utf-8-sig"),
        ("feed.tsv", "\t", "utf-8"),
    ],
)
def test_headers_are_read_as_merchant_center_reads_them(tmp_path, name, delimiter, encoding):
    header = [f" G:{name.upper()} " if n % 2 else f"g:{name}" for n, name in enumerate(HEADER)]
    header[4] = "Image Link"  # the specification's English name
    path = write(tmp_path, name, text_feed(PRODUCTS, header=header, delimiter=delimiter), encoding=encoding)

    assert summary(load_feed(path)) == summary(load_feed(write(tmp_path, "plain.tsv", text_feed(PRODUCTS))))


@pytest.mark.parametrize("writer", [rss_feed, atom_feed], ids=["rss", "atom"])
def test_xml_feeds_give_the_same_catalog_as_the_tsv(tmp_path, writer):
    tsv = load_feed(write(tmp_path, "feed.tsv", text_feed(PRODUCTS)))
    xml = load_feed(write(tmp_path, "feed.xml", writer(PRODUCTS)))

    assert summary(xml) == summary(tsv)
    assert xml.items[0].product is xml.items[2].product
    assert [row.row for row in xml.rejected] == []


def test_xml_skips_nested_attributes_and_prefers_g_elements(tmp_path):
    feed = rss_feed([MUG]).replace(
        "<g:color>",
        "<g:shipping><g:country>US</g:country><g:price>4.99 USD</g:price></g:shipping>"
        "<g:title>Blue mug (g:)</g:title><guid>ignored</guid><g:color>",
    )
    product = load_feed(write(tmp_path, "feed.xml", feed)).items[0].product

    assert "shipping" not in product and "country" not in product and "guid" not in product
    assert product["title"] == "Blue mug (g:)"
    assert product["price"] == 12.99


def test_an_xml_feed_with_a_text_extension_is_read_as_xml(tmp_path):
    catalog = load_feed(write(tmp_path, "feed.txt", rss_feed(PRODUCTS), encoding="utf-8-sig"))

    assert len(catalog.items) == 6


@pytest.mark.parametrize(
    ("price", "amount", "currency"),
    [
        ("12.99 USD", 12.99, "USD"),
        ("USD 12.99", 12.99, "USD"),
        ("12.99", 12.99, None),
        ("1,299.00 EUR", 1299.0, "EUR"),
        ("12,99 EUR", 12.99, "EUR"),
        ("1.299,00 EUR", 1299.0, "EUR"),
        ("1 299,50 SEK", 1299.5, "SEK"),
        ("7usd", 7.0, "USD"),
        ("0 USD", 0.0, "USD"),
    ],
)
def test_price_formats(tmp_path, price, amount, currency):
    product = load_feed(write(tmp_path, "feed.tsv", text_feed([MUG | {"price": price, "sale_price": ""}]))).items[0]

    assert product.product["price"] == pytest.approx(amount)
    assert product.product.get("currency") == currency


@pytest.mark.parametrize("price", ["abc", "-5 USD", "USD 5 EUR", "$12.99", "1.2.3 USD", "12.99 US DOLLARS"])
def test_a_bad_price_rejects_the_product(tmp_path, price):
    catalog = load_feed(write(tmp_path, "feed.tsv", text_feed([MUG | {"price": price}, PRODUCTS[3]])))

    assert [item.id for item in catalog.items] == ["lamp"]
    assert len(catalog.rejected) == 1
    assert catalog.rejected[0].row == "line 2"
    assert repr(price) in catalog.rejected[0].reason


@pytest.mark.parametrize("sale_price", ["soon", "9.99 EUR"])
def test_a_bad_sale_price_only_drops_the_sale(tmp_path, caplog, sale_price):
    with caplog.at_level(logging.WARNING, logger="lookalike.catalog.feed"):
        catalog = load_feed(write(tmp_path, "feed.tsv", text_feed([MUG | {"sale_price": sale_price}])))

    product = catalog.items[0].product
    assert "sale_price" not in product
    assert (product["price"], product["currency"]) == (12.99, "USD")
    assert "sale_price" in caplog.text and "p1" in caplog.text


@pytest.mark.parametrize(
    ("availability", "expected"),
    [
        ("in stock", "in_stock"),
        ("in_stock", "in_stock"),
        (" In Stock ", "in_stock"),
        ("out of stock", "out_of_stock"),
        ("preorder", "preorder"),
        ("pre-order", "preorder"),
        ("backorder", "backorder"),
        ("Limited Availability", "limited_availability"),
    ],
)
def test_availability_takes_the_specification_spelling(tmp_path, availability, expected):
    catalog = load_feed(write(tmp_path, "feed.tsv", text_feed([MUG | {"availability": availability}])))

    assert catalog.items[0].product["availability"] == expected


@pytest.mark.parametrize(
    "link", ["javascript:alert(document.cookie)", "data:text/html,hi", "file:///etc/passwd", "/p1"]
)
def test_a_link_that_is_not_http_is_dropped_but_the_product_kept(tmp_path, caplog, link):
    with caplog.at_level(logging.WARNING, logger="lookalike.catalog.feed"):
        catalog = load_feed(write(tmp_path, "feed.tsv", text_feed([MUG | {"link": link}])))

    assert [item.id for item in catalog.items] == ["p1", "p1#2", "p1#3"]
    assert "link" not in catalog.items[0].product
    assert catalog.rejected == []
    assert "Product p1: link" in caplog.text and "dropped" in caplog.text


def test_bad_rows_are_listed_with_their_lines_and_the_rest_is_read(tmp_path):
    header = ["id", "title", "image_link", "price"]
    lines = [
        ["good1", "One", "https://cdn.example/1.jpg", "1.00 USD"],  # line 2
        ["", "No id", "https://cdn.example/2.jpg", "1.00 USD"],  # line 3
        ["noimage", "No image", "", "1.00 USD"],  # line 4
        ["ftp", "FTP image", "ftp://cdn.example/3.jpg", "1.00 USD"],  # line 5
        ["badprice", "Bad price", "https://cdn.example/4.jpg", "cheap"],  # line 6
        ["good1", "Again", "https://cdn.example/5.jpg", "1.00 USD"],  # line 7
        ["short", "https://cdn.example/6.jpg"],  # line 8
        [],  # line 9: blank lines are skipped, not rejected
        ["good2", "Two\nlines", "https://cdn.example/7.jpg", ""],  # lines 10-11
        ["long", "Long", "https://cdn.example/8.jpg", "1 USD", "extra"],  # line 12
    ]
    text = text_feed([], columns=header) + "".join(
        "\t".join(f'"{field}"' if "\n" in field else field for field in line) + "\n" for line in lines
    )

    catalog = load_feed(write(tmp_path, "feed.tsv", text), label_column="title")

    assert [item.id for item in catalog.items] == ["good1", "good2"]
    assert catalog.items[1].product["title"] == "Two\nlines"
    rejected = [(row.row, row.reason) for row in catalog.rejected]
    assert [row for row, _ in rejected] == ["line 3", "line 4", "line 5", "line 6", "line 7", "line 8", "line 12"]
    reasons = dict(rejected)
    assert reasons["line 3"] == "no id"
    assert "no image_link" in reasons["line 4"]
    assert "'ftp://cdn.example/3.jpg'" in reasons["line 5"]
    assert "'cheap'" in reasons["line 6"]
    assert reasons["line 7"] == "duplicate id 'good1' (first at line 2)"
    assert reasons["line 8"] == "2 fields, the header has 4"
    assert reasons["line 12"] == "5 fields, the header has 4"


def test_xml_rejections_name_the_item(tmp_path):
    products = [PRODUCTS[3], {"title": "No id", "image_link": "https://cdn.example/x.jpg"}, PRODUCTS[3]]

    catalog = load_feed(write(tmp_path, "feed.xml", rss_feed(products)), label_column="title")

    assert [(row.row, row.reason) for row in catalog.rejected] == [
        ("item 2", "no id"),
        ("item 3", "duplicate id 'lamp' (first at item 1)"),
    ]


def test_additional_images_keep_http_ones_up_to_ten(tmp_path, caplog):
    extra = ["ftp://cdn.example/x.jpg", "not a url", MUG["image_link"]] + [
        f"https://cdn.example/{n}.jpg" for n in range(12)
    ]
    with caplog.at_level(logging.WARNING, logger="lookalike.catalog.feed"):
        catalog = load_feed(write(tmp_path, "feed.xml", rss_feed([MUG | {"additional_image_link": extra}])))

    assert [item.id for item in catalog.items] == ["p1"] + [f"p1#{n}" for n in range(2, 12)]
    assert catalog.items[1].image == "https://cdn.example/0.jpg"
    assert "ftp://cdn.example/x.jpg" in caplog.text


def test_a_photo_id_taken_by_another_product_rejects_the_later_product(tmp_path):
    clash = PRODUCTS[3] | {"id": "p1#2"}

    catalog = load_feed(write(tmp_path, "feed.tsv", text_feed([MUG, clash])))

    assert [item.id for item in catalog.items] == ["p1", "p1#2", "p1#3"]
    assert [(row.row, row.reason) for row in catalog.rejected] == [("line 3", "duplicate id 'p1#2' (first at line 2)")]


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE rss [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<rss xmlns:g="http://base.google.com/ns/1.0"><channel><item>
<g:id>p1</g:id><title>&lol9;</title><g:image_link>https://cdn.example/p1.jpg</g:image_link><g:product_type>x</g:product_type>
</item></channel></rss>
"""
EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<rss xmlns:g="http://base.google.com/ns/1.0"><channel><item>
<g:id>p1</g:id><title>&secret;</title><g:image_link>https://cdn.example/p1.jpg</g:image_link><g:product_type>x</g:product_type>
</item></channel></rss>
"""


@pytest.mark.parametrize("feed", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["billion-laughs", "external-entity"])
def test_xml_entities_are_refused_quickly(tmp_path, feed):
    started = time.monotonic()
    with pytest.raises(CatalogError, match="entities"):
        load_feed(write(tmp_path, "feed.xml", feed))
    assert time.monotonic() - started < 2


def test_an_external_dtd_is_never_read(tmp_path):
    write(tmp_path, "evil.dtd", '<!ENTITY secret "LEAKED">')
    feed = EXTERNAL_ENTITY.replace(
        '<!DOCTYPE rss [<!ENTITY secret SYSTEM "file:///etc/passwd">]>', '<!DOCTYPE rss SYSTEM "evil.dtd">'
    )
    with pytest.raises(CatalogError, match="secret"):
        load_feed(write(tmp_path, "feed.xml", feed))


def test_malformed_xml_names_the_line(tmp_path):
    feed = '<rss xmlns:g="http://base.google.com/ns/1.0">\n<channel>\n<item><g:id>p1</g:id></itm>\n</channel></rss>'
    with pytest.raises(CatalogError, match=r"not well-formed XML.*line 3"):
        load_feed(write(tmp_path, "feed.xml", feed))


def test_xml_without_items_says_what_a_feed_looks_like(tmp_path):
    with pytest.raises(CatalogError, match="<item>"):
        load_feed(write(tmp_path, "feed.xml", "<html><body>Not a feed</body></html>"))


@pytest.mark.parametrize(
    ("label_column", "labels"),
    [
        (
            "google_product_category",
            [MUG["google_product_category"]] * 3 + [SHIRT["google_product_category"]] * 2 + ["other"],
        ),
        ("brand", ["Acme"] * 5 + ["other"]),
        ("G:Brand", ["Acme"] * 5 + ["other"]),
        ("availability", ["in_stock"] * 3 + ["out_of_stock", "preorder", "other"]),
        ("id", ["p1"] * 3 + ["shirt-s", "shirt-m", "lamp"]),
    ],
)
def test_the_label_column_can_be_chosen(tmp_path, label_column, labels):
    for path in (write(tmp_path, "feed.tsv", text_feed(PRODUCTS)), write(tmp_path, "feed.xml", rss_feed(PRODUCTS))):
        assert load_feed(path, label_column=label_column).labels == labels


def test_a_missing_label_column_names_the_columns(tmp_path):
    header = [name for name in HEADER if name != "product_type"]
    with pytest.raises(CatalogError, match=r"no 'product_type' column.*id, title, .*custom_label_0.*--label-column"):
        load_feed(write(tmp_path, "feed.tsv", text_feed(PRODUCTS, columns=header)))
    with pytest.raises(CatalogError, match=r"no 'season' column.*google_product_category.*--label-column"):
        load_feed(write(tmp_path, "feed.xml", rss_feed(PRODUCTS)), label_column="season")


def test_a_feed_without_a_usable_product_says_why(tmp_path):
    products = [MUG | {"image_link": "ftp://x/1.jpg"}, {"title": "no id", "image_link": "https://x/2.jpg"}]
    with pytest.raises(
        CatalogError, match=r"no product that can be used: line 2: image_link 'ftp://x/1.jpg'.*line 3: no id"
    ):
        load_feed(write(tmp_path, "feed.tsv", text_feed(products)))


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), ("id\ttitle\nx\ty\n", "no image_link column"), ("title,image_link\n", "no id column")],
)
def test_a_text_feed_without_the_required_columns_is_refused(tmp_path, text, message):
    with pytest.raises(CatalogError, match=message):
        load_feed(write(tmp_path, "feed.txt", text))


def test_a_feed_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "feed.tsv"
    path.write_bytes(text_feed([MUG | {"title": "Tasse à café"}]).encode("latin-1"))
    with pytest.raises(CatalogError, match="UTF-8"):
        load_feed(path)


def test_is_feed_and_a_missing_file(tmp_path):
    assert {".tsv", ".csv", ".txt", ".xml"} == FEED_SUFFIXES
    assert is_feed(write(tmp_path, "Feed.TSV", text_feed(PRODUCTS)))
    assert not is_feed(tmp_path / "absent.tsv")
    assert not is_feed(write(tmp_path, "photo.jpg", ""))
    with pytest.raises(CatalogError, match="No product feed"):
        load_feed(tmp_path / "absent.tsv")


# Text that survives both formats unchanged: no control characters (XML cannot hold most, and turns \r
# into \n), no surrogates or non-characters.
_TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Cn")), max_size=12)
_OPTIONAL = ["title", "description", "brand", "color", "size", "material", "item_group_id", "custom_label_0"]
_PRODUCTS = st.lists(
    st.fixed_dictionaries(
        {
            # A few fixed ids make duplicates, photo-id clashes ("a#2") and blank ids likely.
            "id": st.one_of(st.sampled_from(["a", "a#2", "b", " "]), _TEXT),
            "image_link": st.integers(0, 10**6).map(lambda n: f"https://cdn.example/{n}.jpg"),
            "additional_image_link": st.lists(
                st.integers(0, 50).map(lambda n: f"https://cdn.example/x{n}.jpg"), max_size=4
            ),
            "product_type": _TEXT,
            "price": st.one_of(
                st.just(""),
                st.decimals(0, 10**6, places=2).map(lambda d: f"{d} USD"),
                st.decimals(0, 10**6, places=2).map(lambda d: f"EUR {d}"),
            ),
            "availability": st.sampled_from(["", "in stock", "out_of_stock", "preorder", "Back Order"]),
        },
        optional={name: _TEXT for name in _OPTIONAL},
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(products=_PRODUCTS, columns=st.sets(st.sampled_from(_OPTIONAL)), plain=st.booleans())
def test_reading_does_not_depend_on_the_format(products, columns, plain):
    header = ["id", "image_link", "additional_image_link", "product_type", "price", "availability", *sorted(columns)]
    products = [{name: value for name, value in product.items() if name in header} for product in products]
    plain_names = frozenset({"title", "description"} if plain else ())
    with tempfile.TemporaryDirectory() as directory:
        results = []
        for name, text in [
            ("feed.tsv", text_feed(products, columns=header)),
            ("feed.xml", rss_feed(products, plain_names)),
        ]:
            try:
                catalog = load_feed(write(Path(directory), name, text))
            except CatalogError:
                results.append(None)  # e.g. only blank ids: both formats must refuse it
            else:
                results.append((summary(catalog), [row.reason.split(" (first at")[0] for row in catalog.rejected]))
    assert results[0] == results[1]
