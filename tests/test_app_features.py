"""The shopper endpoints of the running app (`python app.py`), driven through gradio_client as API users would."""

from __future__ import annotations

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from tests.test_app import recommend

BACKBONE = "efficientnet-lite0"


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def ids(results) -> list[str]:
    return [r["id"] for r in results]


def assert_answers_like_recommend(answer, k):
    gallery, results, summary = answer
    assert len(gallery) == k and all("·" in item["caption"] for item in gallery)
    assert [set(r) for r in results] == [{"id", "label", "score"}] * k
    assert f"Average similarity of the top {k}" in summary
    return results


def test_the_api_lists_the_new_endpoints_next_to_the_old_ones(client):
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {
        "/recommend",
        "/compare",
        "/search",
        "/recommend_set",
        "/recommend_item",
        "/recommend_region",
        "/explain",
    } <= set(endpoints)
    assert [p["parameter_name"] for p in endpoints["/recommend"]["parameters"]] == ["image", "k", "metric", "backbone"]


def test_recommend_set_takes_a_list_of_images_and_k_and_never_returns_them(client, small_catalog_dir):
    photos = sorted((small_catalog_dir / "flower").glob("*.jpg"))[:3]
    results = assert_answers_like_recommend(
        client.predict([handle_file(str(p)) for p in photos], 6, api_name="/recommend_set"), 6
    )
    assert not {f"flower/{p.name}" for p in photos} & set(ids(results))
    assert [r["label"] for r in results[:3]] == ["flower"] * 3
    with pytest.raises(AppError, match="Up to 5 products"):
        client.predict([handle_file(str(p)) for p in photos * 2], 6, api_name="/recommend_set")


def test_recommend_set_reads_files_by_content_not_by_name(client, small_catalog_dir, tmp_path):
    """JavaScript clients upload Blobs, which have no file name extension."""
    photo = sorted((small_catalog_dir / "money").glob("*.jpg"))[0]
    unnamed, notes = tmp_path / "blob", tmp_path / "notes.jpg"
    unnamed.write_bytes(photo.read_bytes())
    notes.write_bytes(b"<html>404 Not Found</html>")
    results = client.predict([handle_file(str(unnamed))], 4, api_name="/recommend_set")[1]
    assert f"money/{photo.name}" not in ids(results) and results[0]["label"] == "money"
    with pytest.raises(AppError, match="This file is not an image Pillow can read"):
        client.predict([handle_file(str(unnamed)), handle_file(str(notes))], 4, api_name="/recommend_set")


def test_recommend_item_is_the_shareable_call_and_reproduces_its_results(client, small_catalog_dir):
    item_id = "vehicle/" + sorted(p.name for p in (small_catalog_dir / "vehicle").glob("*.jpg"))[0]
    first = client.predict(item_id, 5, api_name="/recommend_item")
    again = client.predict(item_id, 5, "cosine", BACKBONE, api_name="/recommend_item")
    assert assert_answers_like_recommend(first, 5) == again[1]
    assert f"?item={item_id.replace('/', '%2F')}&k=5&backbone={BACKBONE}" in first[2]
    # The same product uploaded as a photo: its own item is left out, the rest are the same.
    _, by_upload, _ = recommend(client, small_catalog_dir / item_id, k=5)
    assert ids(by_upload) == ids(first[1])
    with pytest.raises(AppError, match=r"No product with id 'shoes/x\.jpg'"):
        client.predict("shoes/x.jpg", 5, api_name="/recommend_item")


def test_search_applies_filters_and_not_wanted(client, example_photo):
    photo = handle_file(str(example_photo))
    unfiltered = assert_answers_like_recommend(client.predict(photo, 6, api_name="/search"), 6)
    assert ids(unfiltered) == ids(recommend(client, example_photo, k=6)[1])
    only = client.predict(photo, 6, "cosine", BACKBONE, ["flower"], api_name="/search")[1]
    assert {r["label"] for r in only} == {"flower"}
    matching = client.predict(photo, 6, "cosine", BACKBONE, [], True, api_name="/search")[1]
    assert "fruit" not in {r["label"] for r in matching}
    not_wanted = ids(unfiltered)[:2]
    steered = client.predict(photo, 6, "cosine", BACKBONE, [], False, not_wanted, api_name="/search")[1]
    assert len(steered) == 6 and not set(not_wanted) & set(ids(steered))


def test_recommend_region_searches_the_crop_not_the_whole_photo(client, small_catalog_dir, tmp_path):
    scene = Image.new("RGB", (448, 224), "white")
    for x, category in ((0, "flower"), (224, "money")):
        with Image.open(sorted((small_catalog_dir / category).glob("*.jpg"))[0]) as photo:
            scene.paste(photo.convert("RGB").resize((224, 224)), (x, 0))
    scene.save(tmp_path / "scene.png")
    scene.crop((224, 0, 448, 224)).save(tmp_path / "crop.png")
    editor = {
        "background": handle_file(str(tmp_path / "scene.png")),
        "layers": [],
        "composite": handle_file(str(tmp_path / "crop.png")),
    }
    cropped = assert_answers_like_recommend(client.predict(editor, 5, api_name="/recommend_region"), 5)
    assert ids(cropped) == ids(client.predict(handle_file(str(tmp_path / "crop.png")), 5, api_name="/search")[1])
    assert [r["label"] for r in cropped[:3]] == ["money"] * 3


def test_a_region_that_is_no_image_gets_a_readable_message(client, tmp_path):
    notes = tmp_path / "notes.jpg"
    notes.write_bytes(b"<html>404 Not Found</html>")
    editor = {"background": handle_file(str(notes)), "layers": [], "composite": handle_file(str(notes))}
    with pytest.raises(AppError, match="This file is not an image Pillow can read"):
        client.predict(editor, 5, api_name="/recommend_region")


def test_explain_returns_a_heatmap_per_picture(client, example_photo, small_catalog_dir):
    product = sorted((small_catalog_dir / "fruit").glob("*.jpg"))[0]
    heatmap_a, heatmap_b, note = client.predict(
        handle_file(str(example_photo)), handle_file(str(product)), BACKBONE, api_name="/explain"
    )
    for path in (heatmap_a, heatmap_b):
        with Image.open(path) as image:
            assert min(image.size) > 100
    assert "Why they match" in note
