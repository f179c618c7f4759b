"""The shopper features as a person uses them in headless Chromium: crop, feedback, heat-maps, a shared link.

Screenshots go to screenshots/ (git-ignored), like tests/test_browser.py's, whose browser helpers these reuse.
"""

from __future__ import annotations

import io
from urllib.parse import quote

import numpy as np
import pytest
from PIL import Image
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests import test_browser
from tests.test_browser import SCREENSHOTS, category, gallery_captions, upload, wait, wait_for_gallery

pytestmark = test_browser.pytestmark
# The same fixtures as the page tests: one headless Chromium per module, a fresh page per test.
browser = test_browser.browser
page = test_browser.page


def body_text(driver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def click(driver, element) -> None:
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].click();", element)


def button(driver, text: str):
    return next(b for b in driver.find_elements(By.CSS_SELECTOR, "button") if b.text.strip() == text)


def open_accordion(driver, title: str) -> None:
    click(driver, driver.find_element(By.XPATH, f"//*[normalize-space(text())='{title}']"))


@pytest.fixture
def scene(small_catalog_dir, tmp_path):
    """A flower on the left, a banknote on the right."""
    picture = Image.new("RGB", (448, 224), "white")
    for x, folder in ((0, "flower"), (224, "money")):
        with Image.open(sorted((small_catalog_dir / folder).glob("*.jpg"))[0]) as photo:
            picture.paste(photo.convert("RGB").resize((224, 224)), (x, 0))
    picture.save(tmp_path / "scene.png")
    return tmp_path / "scene.png"


def picture_box(canvas) -> tuple[int, int, int, int]:
    """Where the picture is drawn in the editor's canvas while cropping: the part not dimmed grey.

    The top and bottom strips hold the editor's label and its "Confirm crop" button.
    """
    pixels = np.asarray(Image.open(io.BytesIO(canvas.screenshot_as_png)).convert("RGB"), dtype=int)
    bright = pixels.mean(axis=2) > 150
    bright[:40], bright[-60:] = False, False
    rows, cols = np.flatnonzero(bright.any(axis=1)), np.flatnonzero(bright.any(axis=0))
    return cols[0], rows[0], cols[-1], rows[-1]


def test_cropping_in_the_editor_searches_only_the_cropped_part(page, scene):
    open_accordion(page, "Crop to the part that matters")
    editor_xpath = (
        "(//*[@data-testid='block-label' and normalize-space()='Region of interest'])/ancestor::div[.//canvas][1]"
    )
    editor = wait(page).until(lambda d: d.find_element(By.XPATH, editor_xpath))

    def photo_in_editor(driver):
        # A file sent while the accordion's editor is still mounting is dropped: send it again.
        if "Upload an image" not in editor.text:
            return True
        upload(driver, scene, "Region of interest")
        return False

    WebDriverWait(page, 60, poll_frequency=5).until(photo_in_editor)

    def crop_tool(driver):
        # A click on "Image" that lands while the editor is still settling is lost: click again until
        # its tools show (slowly enough that a late-opening toolbar is not closed again).
        tools = editor.find_elements(By.CSS_SELECTOR, "button[aria-label=Crop]")
        if tools:
            return tools[0]
        click(driver, editor.find_element(By.CSS_SELECTOR, "button[aria-label=Image]"))
        return False

    click(page, WebDriverWait(page, 60, poll_frequency=3).until(crop_tool))
    wait(page).until(lambda d: button(d, "Confirm crop"))
    # Two stacked canvases: the crop view is the one displayed now.
    canvas = next(c for c in editor.find_elements(By.CSS_SELECTOR, "canvas") if c.is_displayed())
    left, top, right, bottom = picture_box(canvas)
    middle_y = (top + bottom) // 2
    # Drag the crop frame's left edge to the middle of the picture: only the banknote stays.
    centre_x, centre_y = canvas.size["width"] // 2, canvas.size["height"] // 2
    drag = ActionChains(page).move_to_element_with_offset(canvas, left + 2 - centre_x, middle_y - centre_y)
    drag.click_and_hold()
    for _ in range(4):
        drag.move_by_offset((right - left) // 8 + 1, 0)
    drag.release().perform()
    click(page, button(page, "Confirm crop"))
    page.save_screenshot(SCREENSHOTS / "5-cropped.png")
    click(page, button(page, "Find lookalikes of the cropped region"))
    wait(page).until(lambda d: "for your photo" in body_text(d))
    captions = wait_for_gallery(page)
    page.save_screenshot(SCREENSHOTS / "6-cropped-results.png")
    assert [category(caption) for caption in captions[:3]] == ["money"] * 3, captions


def test_less_like_this_hides_the_clicked_product_and_more_like_this_searches_from_it(page, example_photo):
    upload(page, example_photo, "Your product")
    wait_for_gallery(page)
    click(page, page.find_elements(By.CSS_SELECTOR, "button.thumbnail-item")[0])
    wait(page).until(lambda d: "Selected:" in body_text(d))
    selected = body_text(page).split("Selected: ")[1].split(" ")[0]
    click(page, button(page, "Less like this"))
    wait(page).until(lambda d: "steered away from 1 not wanted" in body_text(d))
    page.save_screenshot(SCREENSHOTS / "7-less-like-this.png")
    click(page, page.find_elements(By.CSS_SELECTOR, "button.thumbnail-item")[2])
    wait(page).until(lambda d: "Selected:" in body_text(d))
    chosen = body_text(page).split("Selected: ")[1].split(" ")[0]
    assert chosen != selected
    click(page, button(page, "More like this"))
    wait(page).until(lambda d: f"for {chosen}" in body_text(d))
    assert len(wait_for_gallery(page)) == 8


def test_why_this_one_shows_heatmaps_in_the_compare_tab(page, example_photo):
    upload(page, example_photo, "Your product")
    wait_for_gallery(page)
    click(page, page.find_elements(By.CSS_SELECTOR, "button.thumbnail-item")[1])
    wait(page).until(lambda d: "Selected:" in body_text(d))
    click(page, button(page, "Why this one?"))
    click(page, next(t for t in page.find_elements(By.CSS_SELECTOR, "button[role=tab]") if "Compare" in t.text))
    wait(page, 120).until(lambda d: "Why they match" in body_text(d))
    heatmaps = [
        page.find_element(
            By.XPATH, f"(//*[@data-testid='block-label' and normalize-space()='{label}'])/ancestor::div[.//img][1]//img"
        )
        for label in ("What in A matches B", "What in B matches A")
    ]
    wait(page).until(lambda d: all(image.get_attribute("naturalWidth") not in (None, "0") for image in heatmaps))
    page.save_screenshot(SCREENSHOTS / "8-why.png")


def test_a_shared_link_opens_on_the_same_recommendations(browser, app_url, small_catalog_dir):
    item_id = "vehicle/" + sorted(p.name for p in (small_catalog_dir / "vehicle").glob("*.jpg"))[0]
    browser.get(f"{app_url}?item={quote(item_id, safe='')}&k=6")
    wait(browser).until(lambda d: f"for {item_id}" in body_text(d))
    captions = wait_for_gallery(browser, k=6)
    assert sum(category(caption) == "vehicle" for caption in captions) >= 3
    browser.save_screenshot(SCREENSHOTS / "9-shared-link.png")
    assert gallery_captions(browser) == captions


def test_ticking_a_category_filters_the_results_at_once(page, example_photo):
    upload(page, example_photo, "Your product")
    wait_for_gallery(page)
    open_accordion(page, "Filters")
    click(page, page.find_element(By.XPATH, "//label[.//span[normalize-space()='money']]//input"))
    wait(page).until(lambda d: "Filters: only money" in body_text(d))
    captions = wait_for_gallery(page, k=6)  # the small catalog has 6 banknotes
    assert all(category(caption) == "money" for caption in captions), captions
    page.save_screenshot(SCREENSHOTS / "10-filtered.png")
