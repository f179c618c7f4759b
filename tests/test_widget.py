"""The <lookalike-similar> widget on a shop's own page, in headless Chromium: one script tag from the app,
one element, a row of cards from GET /api/v1/similar across origins (CORS).

The sample shop (scripts/sample_shop.py) is built once for the module, as in tests/test_product_feed.py,
and served by `python app.py` on 127.0.0.1 allowing one shop origin. The "shop product pages" are plain
HTML from loopback servers on other ports, under names Chromium maps to 127.0.0.1: http://shop.test:PORT
(allowed) and http://other-shop.test:PORT (not). Not 127.0.0.1 or localhost pages: Gradio's own CORS
middleware lets any loopback origin call a loopback-hosted app, so such a page would be served whatever
LOOKALIKE_CORS_ORIGINS says, and the test would prove nothing about it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests import test_browser
from tests.local_server import running_app
from tests.test_browser import CHROMEDRIVER, CHROMIUM, wait
from tests.test_product_feed import shop_build  # noqa: F401

pytestmark = test_browser.pytestmark

PRODUCT, K = "sku-001", 6
SHOP, OTHER_SHOP = "shop.test", "other-shop.test"
WINDOW = (1200, 800)
SCREENSHOT = test_browser.SCREENSHOTS / "widget-1-shop-page.png"

# The shop's product page: its own content, the widget's script from the app, the element, and a
# listener that keeps every answer the widget announces (capturing: the event does not bubble).
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sample shop: {product}</title>
<link rel="icon" href="data:,">
<script type="module" src="{app}api/v1/widget.js"></script>
<style>body {{ font-family: sans-serif; margin: 24px; }} h2 {{ margin-top: 32px; }}</style>
</head><body>
<h1>Sample shop</h1><p>Product {product}: the shop's own page.</p>
<h2>You may also like</h2>
<lookalike-similar product="{product}" k="{k}"></lookalike-similar>
<script>
window.lookalikeAnswers = [];
document.addEventListener("lookalike-loaded", (event) => window.lookalikeAnswers.push(event.detail), true);
</script>
</body></html>
"""

# What the element shows, read through its (open) shadow root; null until the script has run.
READ_CARDS = """
const element = document.querySelector("lookalike-similar");
const root = element && element.shadowRoot;
if (!root) return null;
return {
  note: Array.from(root.querySelectorAll(".note"), (n) => n.textContent),
  cards: Array.from(root.querySelectorAll(".card"), (card) => {
    const img = card.querySelector("img");
    return {
      tag: card.tagName.toLowerCase(),
      href: card.getAttribute("href"),
      target: card.getAttribute("target"),
      rel: card.getAttribute("rel"),
      image: img && {src: img.src, loaded: img.complete && img.naturalWidth > 0},
      name: (card.querySelector(".name") || {}).textContent || "",
      price: (card.querySelector(".price") || {}).textContent || "",
    };
  }),
};
"""


@pytest.fixture(scope="module")
def browser():
    """tests/test_browser.py's headless Chromium, with the shops' names resolved to 127.0.0.1."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size={},{}".format(*WINDOW),
        f"--host-resolver-rules=MAP {SHOP} 127.0.0.1, MAP {OTHER_SHOP} 127.0.0.1",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    # The window's size is not its page's: fix the viewport, so the screenshot is WINDOW exactly.
    metrics = {"width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    yield driver
    driver.quit()


@contextmanager
def shop_page_server(pages: dict[str, str]) -> Iterator[str]:
    """A loopback server giving `pages[path]` as HTML (filled in later: the app's URL is not known yet)."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path.split("?")[0])
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write((body or "not found").encode())

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def shop_pages(shop_build):  # noqa: F811
    """The allowed and the refused shop's base URLs, their pages showing the widget of one running app."""
    allowed_pages: dict[str, str] = {}
    refused_pages: dict[str, str] = {}
    root = shop_build["root"]
    with shop_page_server(allowed_pages) as allowed, shop_page_server(refused_pages) as refused:
        allowed, refused = allowed.replace("127.0.0.1", SHOP), refused.replace("127.0.0.1", OTHER_SHOP)
        with running_app(root / "embeddings", root / "widget-app.log", {"LOOKALIKE_CORS_ORIGINS": allowed}) as app:
            for pages in (allowed_pages, refused_pages):
                pages["/product"] = PAGE.format(app=app, product=PRODUCT, k=K)
                pages["/missing"] = PAGE.format(app=app, product="no-such-sku", k=K)
            yield {"allowed": allowed, "refused": refused, "app": app}


def read_cards(driver) -> dict | None:
    return driver.execute_script(READ_CARDS)


def open_page(driver, url: str) -> None:
    driver.get(url)
    wait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")


def similar_requests(driver) -> list[str]:
    """The widget's requests to GET /similar, as the page's resource timing saw them."""
    return driver.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name).filter((n) => n.includes('/similar?'));"
    )


def test_the_widget_shows_similar_products_on_the_shop_page(browser, shop_pages):
    open_page(browser, shop_pages["allowed"] + "/product")

    def all_cards_and_images(driver):
        shown = read_cards(driver)
        cards = shown and shown["cards"]
        complete = cards and len(cards) == K and all(card["image"] and card["image"]["loaded"] for card in cards)
        return shown if complete else False

    try:
        cards = wait(browser, 30).until(all_cards_and_images)["cards"]
    finally:
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SCREENSHOT))
    answers = browser.execute_script("return window.lookalikeAnswers")
    # One request and one answer for one element (not one per attribute while it is upgraded).
    assert len(similar_requests(browser)) == 1 and len(answers) == 1, (similar_requests(browser), len(answers))
    products = answers[0]["products"]
    assert [card["name"] for card in cards] == [product["title"] for product in products]
    ids = [product["id"] for product in products]
    thumbnails = shop_pages["app"] + "api/v1/images/"
    assert PRODUCT not in ids and not any(card["href"] and card["href"].endswith("/" + PRODUCT) for card in cards)
    for card, product in zip(cards, products, strict=True):
        assert card["image"]["src"] == product["image_url"] and product["image_url"].startswith(thumbnails)
        assert card["name"].strip()
        # The price paid (a sale price where there is one) and its currency.
        assert card["price"] == f"{product.get('sale_price', product['price']):.2f} EUR", card
        if product.get("link"):
            assert card["tag"] == "a" and card["href"] == product["link"], card
            assert card["href"].startswith(("http://", "https://")) and "/products/sku-" in card["href"]
            assert card["target"] == "_blank" and card["rel"] == "noopener"
        else:  # the feed's javascript: link was dropped by the build: a card without a link
            assert product["id"] == "script-link" and card["tag"] == "div" and card["href"] is None
    assert sum(card["tag"] == "a" for card in cards) >= K - 1


def test_an_unknown_product_shows_the_apis_message_and_no_cards(browser, shop_pages):
    open_page(browser, shop_pages["allowed"] + "/missing")
    shown = wait(browser, 30).until(
        lambda d: (s := read_cards(d)) and s["note"] and "Loading" not in s["note"][0] and s
    )
    assert shown["cards"] == [] and "No product with id" in shown["note"][0], shown


def test_a_shop_origin_the_app_does_not_allow_gets_no_cards(browser, shop_pages):
    browser.get_log("browser")  # forget the earlier pages' messages
    open_page(browser, shop_pages["refused"] + "/product")
    # The module script itself is a CORS request: refused, it never runs, so the element stays empty
    # (no shadow root, no note) and the API is never asked.
    logs = " ".join(entry["message"] for entry in browser.get_log("browser"))
    assert "widget.js" in logs and "blocked by CORS policy" in logs, logs
    assert read_cards(browser) is None
    assert browser.execute_script("return customElements.get('lookalike-similar') === undefined")
    assert similar_requests(browser) == []
    assert browser.execute_script("return window.lookalikeAnswers") == []
