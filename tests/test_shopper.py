"""The shopper handlers as the page calls them, without a browser: sets, feedback, crops, heat-maps, permalinks."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import pytest
from PIL import Image
from starlette.datastructures import QueryParams

from lookalike.app.handlers import Handlers, region_of_interest
from lookalike.app.service import LookalikeService, Query, SearchRequest, gallery_captions
from lookalike.app.shopper_controls import add_to_set
from lookalike.index.exact import Metric
from lookalike.recommend.recommender import Recommendation

BACKBONE = "efficientnet-lite0"


@pytest.fixture(scope="module")
def handlers(small_index_dir) -> Handlers:
    return Handlers(LookalikeService.from_embeddings_dir(small_index_dir.parent))


def ids(answer) -> list[str]:
    return [r["id"] for r in answer[1]]


def reopen(handlers, summary: str, k=8, metric="cosine", backbone=None):
    """What the page shows when opened at the summary's "Link to these results"."""
    link = summary.split("[Link to these results](")[1].split(")")[0]
    return handlers.open_permalink(
        k, metric, backbone, SimpleNamespace(query_params=QueryParams(link.removeprefix("?")))
    )


def test_permalink_reproduces_the_recommendations_of_a_product(handlers):
    item_id = handlers.service.recommenders[BACKBONE].ids[7]
    _, results, summary, _ = handlers.recommend_item(item_id, 6, "cosine", BACKBONE)
    page = reopen(handlers, summary)
    assert page[1] == results and len(page[0]) == 6
    assert [update["value"] for update in page[4:7]] == [6, "cosine", BACKBONE]
    expected = handlers.service.recommenders[BACKBONE].recommend_for_item(item_id, k=6)
    assert [r["id"] for r in results] == [r.id for r in expected]


def test_permalink_keeps_filters_feedback_and_sets(handlers):
    ids_ = handlers.service.recommenders[BACKBONE].ids
    item_id, not_wanted = ids_[7], [ids_[20]]
    answer = handlers.recommend_item(item_id, 5, "euclidean", BACKBONE, ["money", "vehicle"], True, not_wanted, False)
    page = reopen(handlers, answer[2])
    reopened, (k, metric, _, categories, other_categories, not_wanted_update, collapse) = page[:4], page[4:11]
    assert reopened[1] == answer[1] and reopened[2].split(" ms")[1:] == answer[2].split(" ms")[1:]
    assert (k["value"], metric["value"], categories["value"]) == (5, "euclidean", ["money", "vehicle"])
    assert (other_categories["value"], not_wanted_update["value"], collapse["value"]) == (True, not_wanted, False)
    product_set = handlers.recommend_set(None, 6, "cosine", BACKBONE, [ids_[1], ids_[2]])
    assert "?item=" in product_set[2] and reopen(handlers, product_set[2])[1] == product_set[1]


def test_page_without_link_parameters_is_left_alone_and_a_bad_link_explains(handlers):
    answer = handlers.open_permalink(8, "cosine", BACKBONE, SimpleNamespace(query_params=QueryParams("")))
    assert all(isinstance(part, type(gr.skip())) for part in answer)
    assert Query(images=("a.jpg",)).permalink(SearchRequest(backbone=BACKBONE)) is None
    with pytest.raises(gr.Error, match=r"No product with id 'shoes/x\.jpg'"):
        handlers.open_permalink(8, "cosine", BACKBONE, SimpleNamespace(query_params=QueryParams("item=shoes/x.jpg")))


def test_set_of_uploads_and_picked_products_never_returns_them(handlers, small_catalog_dir):
    uploads = [str(p) for p in sorted((small_catalog_dir / "money").glob("*.jpg"))[:2]]
    picked = ["money/" + sorted(p.name for p in (small_catalog_dir / "money").glob("*.jpg"))[2]]
    answer = handlers.recommend_set(uploads, 10, "cosine", BACKBONE, picked)
    inputs = {f"money/{p.rsplit('/', 1)[1]}" for p in uploads} | set(picked)
    assert len(ids(answer)) == 10 and not inputs & set(ids(answer))
    assert [r["label"] for r in answer[1][:3]] == ["money"] * 3
    assert "for 3 products" in answer[2]
    with pytest.raises(gr.Error, match="Up to 5 products"):
        handlers.recommend_set(uploads * 3, 5, "cosine", BACKBONE)
    with pytest.raises(gr.Error, match="Upload or pick"):
        handlers.recommend_set(None, 5, "cosine", BACKBONE)


def test_less_like_this_adds_to_not_wanted_and_reruns_the_last_search(handlers, example_photo):
    first = handlers.search(str(example_photo), 5, "cosine", BACKBONE)
    not_wanted = ids(first)[0]
    *answer, not_wanted_update = handlers.less_like_this(
        first[3], 5, "cosine", BACKBONE, not_wanted, [], False, [], True
    )
    assert not_wanted_update["value"] == [not_wanted]
    assert answer[3] == first[3] and len(ids(answer)) == 5 and not_wanted not in ids(answer)
    assert "steered away from 1 not wanted" in answer[2]


def test_filters_from_the_page_controls(handlers, example_photo):
    answer = handlers.search(str(example_photo), 6, "cosine", BACKBONE, ["vehicle", "money"], False, [], True)
    assert {r["label"] for r in answer[1]} <= {"vehicle", "money"} and len(answer[1]) == 6
    answer = handlers.search(str(example_photo), 6, "cosine", BACKBONE, [], True, [], True)
    assert "fruit" not in {r["label"] for r in answer[1]} and "not your product's category (fruit)" in answer[2]
    with pytest.raises(gr.Error, match="Unknown categories shoes"):
        handlers.search(str(example_photo), 6, "cosine", BACKBONE, ["shoes"], False, [], True)
    nothing = handlers.search(str(example_photo), 6, "cosine", BACKBONE, ["fruit"], True, [], True)
    assert nothing[1] == [] and "No product passes these filters" in nothing[2]


def test_the_cropped_region_is_what_gets_searched(handlers, small_catalog_dir, tmp_path):
    """A flower and a banknote side by side; cropping to the banknote must search the banknote."""
    flower = Image.open(sorted((small_catalog_dir / "flower").glob("*.jpg"))[0]).convert("RGB").resize((224, 224))
    money = Image.open(sorted((small_catalog_dir / "money").glob("*.jpg"))[0]).convert("RGB").resize((224, 224))
    scene = Image.new("RGB", (448, 224), "white")
    scene.paste(flower, (0, 0))
    scene.paste(money, (224, 0))
    scene_path, crop_path = tmp_path / "scene.png", tmp_path / "crop.png"
    scene.save(scene_path)
    scene.crop((224, 0, 448, 224)).save(crop_path)
    editor = {"background": str(scene_path), "layers": [], "composite": str(crop_path)}
    assert region_of_interest(editor) == str(crop_path)
    cropped = handlers.recommend_region(editor, 5, "cosine", BACKBONE)
    assert ids(cropped) == ids(handlers.search(str(crop_path), 5, "cosine", BACKBONE))
    assert [r["label"] for r in cropped[1][:3]] == ["money"] * 3
    assert ids(cropped) != ids(handlers.search(str(scene_path), 5, "cosine", BACKBONE))


def test_clicking_a_result_selects_its_id(handlers):
    results = [{"id": "a/1.jpg", "label": "a", "score": 0.9}, {"id": "b/2.jpg", "label": "b", "score": 0.8}]
    assert handlers.selected_product(results, SimpleNamespace(index=1)) == ("b/2.jpg", "Selected: **b/2.jpg** (b)")
    assert handlers.selected_product([], SimpleNamespace(index=0)) == (None, "")


def test_explain_gives_two_heatmaps_and_how_to_read_them(handlers, example_photo, small_catalog_dir):
    product = sorted((small_catalog_dir / "fruit").glob("*.jpg"))[0]
    heatmap_a, heatmap_b, note = handlers.explain(str(example_photo), str(product), BACKBONE)
    assert isinstance(heatmap_a, Image.Image) and isinstance(heatmap_b, Image.Image)
    assert "Why they match" in note and "occlusion" in note
    with pytest.raises(gr.Error, match="two photos"):
        handlers.explain(None, str(product), BACKBONE)


def test_captions_say_how_many_near_identical_products_were_folded_in():
    image = Image.new("RGB", (4, 4))
    results = [
        Recommendation("a/1.jpg", "a", 0.91, 0.91, image, near_duplicates=("a/1-copy.jpg",)),
        Recommendation("b/2.jpg", "b", 0.8, 0.8, image),
    ]
    assert gallery_captions(results, Metric.COSINE) == ["1 · a · 0.91 · +1 alike", "2 · b · 0.80"]
    assert gallery_captions(results[1:], Metric.EUCLIDEAN) == ["2 · b · distance 0.80"]


def test_adding_the_clicked_product_to_the_set_opens_it_and_stops_at_five():
    picked, _, note = add_to_set(["a/1.jpg"], "b/2.jpg")
    assert picked == ["a/1.jpg", "b/2.jpg"] and "(2 of 5)" in note
    assert add_to_set(picked, "b/2.jpg")[0] == picked  # already in the set: once
    with pytest.raises(gr.Error, match="already has 5"):
        add_to_set([f"x/{i}.jpg" for i in range(5)], "b/2.jpg")


def test_changing_a_filter_runs_the_last_search_again(handlers, example_photo):
    assert all(
        isinstance(part, type(gr.skip()))
        for part in handlers.search_again(None, 5, "cosine", BACKBONE, [], False, [], True)
    )
    first = handlers.search(str(example_photo), 5, "cosine", BACKBONE)
    filtered = handlers.search_again(first[3], 5, "cosine", BACKBONE, ["vehicle"], False, [], True)
    assert filtered[3] == first[3] and {r["label"] for r in filtered[1]} == {"vehicle"}


def test_a_single_category_sent_as_text_is_one_category():
    assert SearchRequest.from_values(categories="fruit", not_wanted="a/1.jpg").categories == ("fruit",)
