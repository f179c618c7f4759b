"""The page as a person uses it, in headless Chromium: upload, examples, compare, a bad upload.

Screenshots of each step go to screenshots/ (git-ignored) to be looked at after a run.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import WebDriverWait

from lookalike.catalog import REPO_ROOT
from tests.upload_cases import UPLOAD_CASES, oversized_png

SCREENSHOTS = REPO_ROOT / "screenshots"
DEFAULT_K = 8
# Debian's chromium and chromium-driver (`make install-dev` installs them); Selenium must not
# try to download a browser build, which cannot work offline.
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="needs Debian chromium and chromium-driver on PATH: apt-get install chromium chromium-driver",
    ),
]


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # --no-sandbox because CI runs as root; a fixed window keeps screenshots comparable.
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1500"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    SCREENSHOTS.mkdir(exist_ok=True)
    yield driver
    driver.quit()


@pytest.fixture
def page(browser, app_url):
    browser.get(app_url)
    WebDriverWait(browser, 60).until(seen.presence_of_element_located((By.CSS_SELECTOR, "input[type=file]")))
    return browser


def wait(driver, timeout: float = 60) -> WebDriverWait:
    return WebDriverWait(driver, timeout)


def gallery_captions(driver) -> list[str]:
    return [item.text for item in driver.find_elements(By.CSS_SELECTOR, "button.thumbnail-item .caption-label")]


def category(caption: str) -> str:
    """The category in a caption "Name · category · 0.65"."""
    return caption.split(" · ")[1]


def wait_for_gallery(driver, k: int = DEFAULT_K) -> list[str]:
    wait(driver).until(lambda d: len(gallery_captions(d)) == k and all(gallery_captions(d)))
    return gallery_captions(driver)


def upload(driver, path: Path, label: str) -> None:
    """Send a file to the image input labelled `label` (the nearest block holding a file input)."""
    xpath = (
        f"(//*[@data-testid='block-label' and normalize-space()='{label}'])"
        "/ancestor::div[.//input[@type='file']][1]//input[@type='file']"
    )
    wait(driver).until(seen.presence_of_element_located((By.XPATH, xpath))).send_keys(str(path))


def test_uploading_a_photo_shows_k_captioned_recommendations(page, example_photo):
    upload(page, example_photo, "Your product")
    captions = wait_for_gallery(page)
    assert all(re.fullmatch(r"[^·]+ · [a-z-]+ · [01]\.\d\d( · \+\d+ alike)?", caption) for caption in captions), (
        captions
    )
    assert sum(category(caption) == "fruit" for caption in captions) >= DEFAULT_K // 2
    wait(page).until(lambda d: "Average similarity of the top 8" in d.find_element(By.TAG_NAME, "body").text)
    page.save_screenshot(SCREENSHOTS / "1-upload.png")


def test_clicking_an_example_recommends_for_it(page):
    # Examples show as thumbnails; the daffodil photo is one of the flower examples.
    def daffodil_button(driver):
        thumbnails = driver.find_elements(By.CSS_SELECTOR, "button img")
        found = [i for i in thumbnails if (i.get_attribute("src") or "").endswith("/daffodil.jpg")]
        return found[0].find_element(By.XPATH, "./ancestor::button[1]") if found else False

    example = wait(page).until(daffodil_button)
    page.execute_script("arguments[0].scrollIntoView({block: 'center'});", example)
    example.click()
    captions = wait_for_gallery(page)
    page.save_screenshot(SCREENSHOTS / "2-example.png")
    assert sum(category(caption) == "flower" for caption in captions) >= DEFAULT_K // 2, captions


def test_compare_tab_gives_the_similarity_of_two_photos(page, example_photo):
    next(tab for tab in page.find_elements(By.CSS_SELECTOR, "button[role=tab]") if "Compare" in tab.text).click()
    upload(page, example_photo, "Image A")
    upload(page, example_photo, "Image B")
    compare = next(b for b in page.find_elements(By.CSS_SELECTOR, "button") if b.text.strip() == "Compare")
    wait(page).until(lambda d: compare.is_enabled())
    compare.click()
    try:
        wait(page).until(lambda d: "Similarity: 1.000" in d.find_element(By.TAG_NAME, "body").text)
    finally:
        page.save_screenshot(SCREENSHOTS / "3-compare.png")


@pytest.mark.parametrize("case", UPLOAD_CASES, ids=lambda case: case.filename)
def test_every_upload_through_the_page_gets_results_or_a_readable_message(page, tmp_path, case):
    upload_file = tmp_path / case.filename
    upload_file.write_bytes(case.make())
    upload(page, upload_file, "Your product")
    if case.expected_message is None:
        wait_for_gallery(page)
    else:
        wait(page).until(lambda d: case.expected_message in d.find_element(By.TAG_NAME, "body").text)
        assert "Traceback" not in page.find_element(By.TAG_NAME, "body").text
    page.save_screenshot(SCREENSHOTS / f"4-upload-{Path(case.filename).stem}.png")


def test_uploading_a_file_over_the_size_limit_shows_the_limit(page, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(oversized_png())
    upload(page, big, "Your product")
    wait(page).until(lambda d: "exceed the maximum allowed size of 10.0 Mb" in d.find_element(By.TAG_NAME, "body").text)
    page.save_screenshot(SCREENSHOTS / "5-too-large.png")


PHONE_WIDTH = 412


@pytest.fixture(scope="module")
def phone(browser):
    """The same browser with a phone's viewport (a headless window cannot be made that narrow)."""
    metrics = {"width": PHONE_WIDTH, "height": 900, "deviceScaleFactor": 1, "mobile": True}
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    yield browser
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def top_of(driver, element) -> float:
    return driver.execute_script("return arguments[0].getBoundingClientRect().top + window.scrollY;", element)


def test_the_page_works_on_a_phone(phone, app_url):
    phone.get(app_url)
    find_button = wait(phone).until(
        seen.presence_of_element_located((By.XPATH, "//button[normalize-space()='Find lookalikes']"))
    )

    def example_thumbnails(driver):
        block = "//*[starts-with(normalize-space(), 'Or click an example photo')]/ancestor::div[.//button//img][1]"
        return driver.find_elements(By.XPATH, block + "//button//img") or False

    examples = wait(phone).until(example_thumbnails)
    # The example photos come right under the photo input, before the search controls.
    assert top_of(phone, examples[0]) < top_of(phone, find_button)
    daffodil = next(i for i in examples if (i.get_attribute("src") or "").endswith("/daffodil.jpg"))
    phone.execute_script("arguments[0].scrollIntoView({block: 'center'});", daffodil)
    daffodil.find_element(By.XPATH, "./ancestor::button[1]").click()
    captions = wait_for_gallery(phone)
    phone.save_screenshot(SCREENSHOTS / "phone-results.png")
    assert phone.execute_script("return document.documentElement.scrollWidth") <= PHONE_WIDTH  # no sideways scroll
    items = phone.find_elements(By.CSS_SELECTOR, "#lookalike-results button.thumbnail-item")
    tops = [round(top_of(phone, item)) for item in items[:3]]
    assert tops[0] == tops[1] < tops[2], tops  # two columns
    for item, caption in zip(items, captions, strict=True):
        label = item.find_element(By.CSS_SELECTOR, ".caption-label")
        assert phone.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth;", label), caption
        alt = item.find_element(By.TAG_NAME, "img").get_attribute("alt")
        assert alt == caption and category(caption) in alt  # name and category for screen readers
    # The raw JSON stays folded away until asked for.
    assert not [
        e for e in phone.find_elements(By.CSS_SELECTOR, ".json-holder, [data-testid='json']") if e.is_displayed()
    ]
    assert phone.find_element(By.XPATH, "//*[normalize-space()='Results as JSON']").is_displayed()
