"""A sample shop on loopback: a Merchant Center product feed of bundled-catalog photos, served over HTTP.

    python scripts/sample_shop.py --output shop/   # writes shop/feed.tsv and shop/feed.xml, serves until Ctrl-C
    python build_index.py shop/feed.tsv --output embeddings/shop

The feed has what real feeds have: variants (sizes sharing an `item_group_id`), additional photos,
out-of-stock items, sale prices, and rows that cannot be used (an image answering 404, one answering
an HTML page, a 40 MB one, one answering after 90 s, a `javascript:` product link, a row with no
id, a bad price). The server answers ETag / If-None-Match with 304 and counts the image bodies it
sends, so a test can check that a second build downloads none. Only 127.0.0.1: never the internet.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

from PIL import Image, ImageOps

CATALOG = Path(__file__).resolve().parent.parent / "catalog"
BRANDS = ("Acme", "Northwind", "Zeta", "Orbit")
COLOURS = ("red", "green", "blue", "black")
SIZES = ("S", "M", "L")
COLUMNS = [
    *("id", "title", "description", "link", "image_link", "additional_image_link", "price", "sale_price"),
    *("availability", "brand", "product_type", "item_group_id", "color", "size"),
]
SLOW_SECONDS = 90
HUGE_BYTES = 40 * 1024 * 1024


@dataclass
class ShopServer:
    """Photos by URL path, the bad routes, and what was sent."""

    photos: dict[str, bytes] = field(default_factory=dict)
    bodies_sent: Counter = field(default_factory=Counter)  # image path -> times its body was sent
    requests: Counter = field(default_factory=Counter)
    url: str = ""


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _handler(shop: ShopServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            shop.requests[path] += 1
            if path == "/missing.jpg":
                self.send_error(404)
            elif path == "/page.jpg":
                self._send(b"<html><body>Not found, but here is a page</body></html>", "text/html")
            elif path == "/huge.jpg":
                self._huge()
            elif path.startswith("/products/"):
                name = escape(path.removeprefix("/products/"))
                self._send(f"<html><title>{name}</title><h1>Product {name}</h1></html>".encode(), "text/html")
            elif path == "/slow.jpg":
                time.sleep(SLOW_SECONDS)
                self._send(shop.photos[next(iter(shop.photos))], "image/jpeg")
            elif path in shop.photos:
                body = shop.photos[path]
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                shop.bodies_sent[path] += 1
                self._send(body, "image/jpeg", {"ETag": etag})
            else:
                self.send_error(404)

        def _send(self, body: bytes, content_type: str, headers: dict | None = None) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _huge(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(HUGE_BYTES))
            self.end_headers()
            chunk = b"\xff" * 65536
            try:
                for _ in range(HUGE_BYTES // len(chunk)):
                    self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading at its cap, as it should

    return Handler


@contextmanager
def serving(shop: ShopServer):
    """Serve the shop on a free port of 127.0.0.1 while the block runs."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(shop))
    server.daemon_threads = True
    shop.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield shop
    finally:
        server.shutdown()
        server.server_close()


def sample_products(shop: ShopServer, per_category: int = 2, categories: int = 8) -> list[dict[str, str]]:
    """Feed rows (attribute -> text) for photos of the bundled catalog, and the photos for the server."""
    rows = []
    folders = sorted(p for p in CATALOG.iterdir() if p.is_dir())[:categories]
    number = 0
    for folder in folders:
        for photo in sorted(folder.glob("*.jpg"))[:per_category]:
            number += 1
            image = Image.open(photo)
            main, extra = f"/img/{folder.name}/{photo.stem}.jpg", f"/img/{folder.name}/{photo.stem}-side.jpg"
            shop.photos[main] = _jpeg(image)
            # A second photo of the same product: mirrored and cropped, as a shop's side view would be.
            shop.photos[extra] = _jpeg(ImageOps.mirror(ImageOps.crop(image, border=image.width // 12)))
            product = {
                "id": f"sku-{number:03d}",
                "title": f"{BRANDS[number % 4]} {photo.stem.replace('-', ' ')}",
                "description": f"A {photo.stem.replace('-', ' ')} from the {folder.name} range.",
                "link": f"{shop.url}/products/sku-{number:03d}",
                "image_link": shop.url + main,
                "additional_image_link": shop.url + extra,
                "price": f"{5 + 7.5 * number:.2f} EUR",
                "sale_price": f"{(5 + 7.5 * number) * 0.8:.2f} EUR" if number % 5 == 0 else "",
                "availability": "out of stock" if number % 4 == 0 else "in stock",
                "brand": BRANDS[number % 4],
                "product_type": folder.name,
                "color": COLOURS[number % 4],
            }
            if number % 3 == 0:  # a product sold in three sizes: one photo, three items of one group
                for size in SIZES:
                    rows.append(
                        {**product, "id": f"{product['id']}-{size}", "item_group_id": product["id"], "size": size}
                    )
            else:
                rows.append(product)
    bad = {"product_type": "broken", "price": "10 EUR", "availability": "in stock", "brand": "Acme"}
    rows += [
        {**bad, "id": "bad-404", "title": "Gone", "image_link": shop.url + "/missing.jpg"},
        {**bad, "id": "bad-html", "title": "A page", "image_link": shop.url + "/page.jpg"},
        {**bad, "id": "bad-huge", "title": "Huge", "image_link": shop.url + "/huge.jpg"},
        {**bad, "id": "bad-slow", "title": "Slow", "image_link": shop.url + "/slow.jpg"},
        {**bad, "id": "", "title": "No id", "image_link": shop.url + next(iter(shop.photos))},
        {**bad, "id": "bad-price", "title": "Priceless", "price": "ask us", "image_link": shop.url + main},
    ]
    # A real photo whose product link is a script: the row is kept, the link dropped.
    rows.append({**rows[0], "id": "script-link", "link": "javascript:alert(1)", "item_group_id": "", "size": ""})
    return rows


def write_tsv(rows: list[dict[str, str]], path: Path) -> Path:
    lines = ["\t".join(COLUMNS)] + ["\t".join(row.get(column, "") for column in COLUMNS) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_rss(rows: list[dict[str, str]], path: Path) -> Path:
    items = []
    for row in rows:
        elements = "".join(f"<g:{column}>{escape(row[column])}</g:{column}>" for column in COLUMNS if row.get(column))
        items.append(f"<item>{elements}</item>")
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" xmlns:g="http://base.google.com/ns/1.0">'
        f"<channel><title>Sample shop</title>{''.join(items)}</channel></rss>\n",
        encoding="utf-8",
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("shop"))
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    with serving(ShopServer()) as shop:
        rows = sample_products(shop)
        print(f"Serving {len(shop.photos)} photos at {shop.url}")
        print(f"Wrote {write_tsv(rows, args.output / 'feed.tsv')} and {write_rss(rows, args.output / 'feed.xml')}")
        print("Build from it in another shell, e.g.: python build_index.py", args.output / "feed.tsv")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
