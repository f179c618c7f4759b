"""A shop's catalog as a shopper uses it in headless Chromium: names and prices under the pictures,
links to the shop's pages, brand / price / stock filters, and captions that fit their cards on a phone.

The sample shop (scripts/sample_shop.py) is built once for the module, as in tests/test_product_feed.py,
and served by `python app.py`; the shop's own server is gone by then, so its links are checked, not followed.
Screenshots go to screenshots/ (git-ignored), like tests/test_browser.py's.
"""

from __future__ import annotations

import json
import re
import sys

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import WebDriverWait

from lookalike.catalog import REPO_ROOT, CatalogSource
from lookalike.catalog.download import DownloadConfig
from lookalike.indexing.builder import BuildConfig, build_index
from tests import test_browser
from tests.local_server import running_app
from tests.test_browser import SCREENSHOTS, gallery_captions, upload, wait, wait_for_gallery

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import sample_shop  # a script, not a package

pytestmark = test_browser.pytestmark
browser = test_browser.browser  # one headless Chromium per module
# test_product_feed's tiny timeouts (not imported: that module pulls in Gradio, seconds of collection):
# the shop's 90 s image costs seconds, not minutes.
DOWNLOADS = {"read_timeout": 1.0, "deadline": 2.0, "retries": 1, "backoff": 0.1}

BRANDS = ("Acme", "Zeta")
PRICE_UP_TO = 100
PHONE_WIDTH, PHONE_HEIGHT = 412, 915
# "Zeta apple fuji · 64.00 EUR (was 80.00) · 0.60 · +2 sizes": name, price paid, score, then notes.
CAPTION = re.compile(
    r"(?P<name>[^·]*\w[^·]*) · (?P<price>[\d,]+\.\d\d) EUR( \(was [\d,]+\.\d\d\))? · [01]\.\d\d( · .+)?"
)


@pytest.fixture(scope="module")
def shop_embeddings(tmp_path_factory):
    """The sample shop's feed built once from its loopback server, as test_product_feed's `shop_build` does
    (which builds twice, to check the rebuild; one build is all a page needs)."""
    root = tmp_path_factory.mktemp("browser_shop")
    with sample_shop.serving(sample_shop.ShopServer()) as shop:
        feed = sample_shop.write_tsv(sample_shop.sample_products(shop), root / "feed.tsv")
        download = DownloadConfig(cache_dir=root / "downloads", **DOWNLOADS)
        output = root / "embeddings" / "shop"
        build_index(BuildConfig(source=CatalogSource(str(feed)), output=output, download=download), show_progress=False)
    return output.parent


@pytest.fixture(scope="module")
def shop_url(shop_embeddings):
    with running_app(shop_embeddings, log_path=shop_embeddings.parent / "app.log") as url:
        yield url


def open_shop(driver, url: str):
    driver.get(url)
    wait(driver).until(seen.presence_of_element_located((By.CSS_SELECTOR, "input[type=file]")))
    return driver


@pytest.fixture
def shop_page(browser, shop_url):
    return open_shop(browser, shop_url)


@pytest.fixture
def phone_page(browser, shop_url):
    """The same browser with a phone's viewport, for one test."""
    metrics = {"width": PHONE_WIDTH, "height": PHONE_HEIGHT, "deviceScaleFactor": 1, "mobile": True}
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        yield open_shop(browser, shop_url)
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def steady(driver, timeout: float = 60) -> WebDriverWait:
    """A wait that looks again when Gradio re-renders an element under it."""
    return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,))


def scroll_to(driver, element) -> None:
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)


def open_accordion(driver, title: str) -> None:
    accordion = driver.find_element(By.XPATH, f"//*[normalize-space(text())='{title}']/ancestor-or-self::button[1]")
    scroll_to(driver, accordion)
    accordion.click()


# Read in one script each: nothing held across Gradio's re-renders.
def page_captions(driver) -> list[str]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#lookalike-results button.thumbnail-item .caption-label')]"
        ".map(label => label.innerText);"
    )


def summary(driver) -> str:
    """The Markdown above the gallery: average similarity, filters, the "In the shop" list."""
    return driver.execute_script(
        "const column = document.getElementById('lookalike-results')?.closest('.column');"
        "const text = column && column.querySelector('.prose'); return text ? text.innerText : '';"
    )


def filters_line(driver) -> str:
    return next((line for line in summary(driver).splitlines() if line.startswith("Filters:")), "")


def shop_links(driver) -> list[dict]:
    """The "In the shop" list: each product link with its whole line ("name · price · availability")."""
    return driver.execute_script(
        "const column = document.getElementById('lookalike-results').closest('.column');"
        "return [...column.querySelector('.prose').querySelectorAll('li a')].map(a => ({"
        "  text: a.innerText, href: a.getAttribute('href'), target: a.getAttribute('target'),"
        "  rel: a.getAttribute('rel') || '', line: a.closest('li').innerText}));"
    )


def results_json(driver) -> list[dict] | None:
    """The "Results as JSON" accordion's list (open it first); None while it is not rendered."""
    text = driver.execute_script(
        "const title = [...document.querySelectorAll('button')]"
        "  .find(b => b.innerText.trim().startsWith('Results as JSON'));"
        "let block = title; while (block && !block.querySelector('.json-holder')) block = block.parentElement;"
        "return block ? block.querySelector('.json-holder').innerText : null;"
    )
    try:  # the viewer puts every token on its own line; no value here holds a line break
        return json.loads(text.replace("\n", "")) if text else None
    except ValueError:
        return None


def paid_price(result: dict) -> float:
    return result["sale_price"] if result.get("sale_price") is not None else result["price"]


def pick_facet(driver, facet: str) -> None:
    field = driver.find_element(By.CSS_SELECTOR, "input[aria-label^='Attributes']")
    scroll_to(driver, field)
    field.click()
    option_xpath = f"//li[@role='option'][contains(normalize-space(), '{facet}')]"
    steady(driver, 10).until(seen.element_to_be_clickable((By.XPATH, option_xpath))).click()


def test_results_name_their_price_and_link_to_the_shop_in_a_new_tab(shop_page, example_photo):
    upload(shop_page, example_photo, "Your product")
    captions = wait_for_gallery(shop_page)
    shop_page.save_screenshot(SCREENSHOTS / "shop-1-results.png")
    matches = [CAPTION.fullmatch(caption) for caption in captions]
    assert all(matches), captions
    links = steady(shop_page).until(lambda d: shop_links(d) or False)
    names = {match["name"] for match in matches}
    for link in links:
        assert link["href"].startswith(("http://", "https://")), link
        assert link["target"] == "_blank" and "noopener" in link["rel"], link
        assert link["text"] in names, (link, names)
        assert "EUR" in link["line"], link


def test_brand_price_and_stock_filters_hold_for_every_result(shop_page, example_photo):
    upload(shop_page, example_photo, "Your product")
    wait_for_gallery(shop_page)
    # Opening the accordion shows the empty price fields as 0, which must mean "any price".
    open_accordion(shop_page, "Filters")
    for chosen in range(1, len(BRANDS) + 1):
        pick_facet(shop_page, f"brand={BRANDS[chosen - 1]}")
        brands = " or ".join(f"brand={brand}" for brand in BRANDS[:chosen])
        steady(shop_page).until(lambda d, brands=brands: brands in filters_line(d))
        steady(shop_page, 10).until(page_captions, f"no results for {brands} (a price field's 0 as a bound?)")
    shop_page.find_element(By.TAG_NAME, "h1").click()  # close the dropdown's list
    price = shop_page.find_element(By.CSS_SELECTOR, "input[aria-label^='Price up to']")
    scroll_to(shop_page, price)
    price.click()
    price.send_keys(Keys.CONTROL, "a")
    price.send_keys(str(PRICE_UP_TO))  # at once: the search must use 100, not the first keystroke's 1
    up_to = re.compile(rf"price [\d.]+–{PRICE_UP_TO}(?!\d)")
    steady(shop_page).until(lambda d: up_to.search(filters_line(d)))
    in_stock = shop_page.find_element(By.XPATH, "//label[contains(., 'In stock only')]//input[@type='checkbox']")
    scroll_to(shop_page, in_stock)
    in_stock.click()
    steady(shop_page).until(lambda d: filters_line(d).endswith("· in stock") and up_to.search(filters_line(d)))
    open_accordion(shop_page, "Results as JSON")

    def one_answer(driver):
        """The gallery's captions and the JSON's results once both show the same, non-empty answer."""
        captions, results = page_captions(driver), results_json(driver)
        return (captions, results) if captions and results and len(results) == len(captions) else False

    message = "no results, or the gallery and the JSON disagree"
    captions, results = steady(shop_page, 20).until(one_answer, message)
    shop_page.save_screenshot(SCREENSHOTS / "shop-2-filtered.png")
    assert [CAPTION.fullmatch(c)["name"] for c in captions] == [r["title"] for r in results], (captions, results)
    for result in results:
        assert result["brand"] in BRANDS, result
        assert result["currency"] == "EUR" and paid_price(result) <= PRICE_UP_TO, result
        assert result["availability"] == "in_stock", result
    # What the page shows says the same: prices in the captions, availability in the shop list.
    assert all(float(CAPTION.fullmatch(c)["price"].replace(",", "")) <= PRICE_UP_TO for c in captions), captions
    assert all(c.split(" ")[0] in BRANDS for c in captions), captions  # the sample shop's names start with it
    lines = [link["line"] for link in shop_links(shop_page)]
    assert lines and all(line.endswith("· in stock") for line in lines), lines


def test_captions_fit_inside_their_cards_on_a_phone(phone_page, example_photo):
    assert phone_page.execute_script("return window.innerWidth") == PHONE_WIDTH
    upload(phone_page, example_photo, "Your product")
    captions = wait_for_gallery(phone_page)
    phone_page.save_screenshot(SCREENSHOTS / "shop-3-phone.png")
    boxes = phone_page.execute_script(
        "return [...document.querySelectorAll('#lookalike-results button.thumbnail-item')].map(card => {"
        "  const label = card.querySelector('.caption-label');"
        "  const c = card.getBoundingClientRect(), l = label.getBoundingClientRect(), style = getComputedStyle(label);"
        "  const inner = label.clientHeight - parseFloat(style.paddingTop) - parseFloat(style.paddingBottom);"
        "  return {text: label.innerText, lines: Math.round(inner / parseFloat(style.lineHeight)),"
        "          scrollHeight: label.scrollHeight, clientHeight: label.clientHeight,"
        "          scrollWidth: label.scrollWidth, clientWidth: label.clientWidth,"
        "          top: l.top, bottom: l.bottom, left: l.left, right: l.right,"
        "          cardTop: c.top, cardBottom: c.bottom, cardLeft: c.left, cardRight: c.right};});"
    )
    assert [box["text"] for box in boxes] == captions
    for box in boxes:
        assert box["scrollHeight"] <= box["clientHeight"] + 1, box  # no line hidden under the caption's edge
        assert box["scrollWidth"] <= box["clientWidth"] + 1, box  # nor cut off with an ellipsis
        assert box["cardTop"] - 1 <= box["top"] and box["bottom"] <= box["cardBottom"] + 1, box
        assert box["cardLeft"] - 1 <= box["left"] and box["right"] <= box["cardRight"] + 1, box
    # Long names wrap onto more lines rather than being cut: the check above is not vacuous.
    assert max(box["lines"] for box in boxes) >= 2, boxes
    assert phone_page.execute_script("return document.documentElement.scrollWidth") <= PHONE_WIDTH
    assert gallery_captions(phone_page) == captions
