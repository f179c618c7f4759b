"""Street-to-shop: scenes are composed as promised, and the benchmark scores the app's own search."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from lookalike.catalog import BUNDLED_CATALOG_DIR
from lookalike.evaluate.__main__ import main as evaluate_main
from lookalike.evaluate.street import StreetQuery, evaluate_street, is_street_folder, street_queries
from lookalike.evaluate.street_scenes import (
    SceneConfig,
    background_photos,
    compose_scene,
    cut_out,
    write_scene_folder,
)
from lookalike.evaluate.street_scenes import (
    main as scenes_main,
)
from lookalike.recommend.recommender import Recommender
from tests.conftest import SMALL_CATEGORIES

BACKGROUNDS = BUNDLED_CATALOG_DIR.parent / "backgrounds"


def packshot(size=(120, 90), box=(30, 20, 80, 70), colour=(200, 30, 30)) -> Image.Image:
    image = Image.new("RGB", size, "white")
    image.paste(colour, box)
    return image


def test_cut_out_keeps_the_product_and_drops_the_white_around_it():
    piece = cut_out(packshot())
    assert piece.mode == "RGBA"
    # Cropped to the product (the erosion takes a pixel of halo off each side).
    assert 46 <= piece.width <= 50 and 46 <= piece.height <= 50
    alpha = np.asarray(piece.getchannel("A"))
    assert alpha[alpha.shape[0] // 2, alpha.shape[1] // 2] == 255
    assert np.asarray(piece)[..., 0][alpha > 250].min() > 150  # what is kept is the red product


def test_white_inside_a_product_stays_opaque():
    """Only white connected to the border is background: a white label on a product is the product's."""
    image = packshot()
    image.paste("white", (45, 35, 65, 55))
    alpha = np.asarray(cut_out(image).getchannel("A"))
    assert alpha[alpha.shape[0] // 2, alpha.shape[1] // 2] == 255


def test_an_all_white_product_is_kept_whole_rather_than_lost():
    assert cut_out(Image.new("RGB", (40, 30), "white")).size == (40, 30)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_others=st.integers(0, 3), width=st.integers(64, 300))
def test_every_scene_is_the_configured_size_and_a_seed_remakes_it(seed, n_others, width):
    config = SceneConfig(width=width, height=96)
    background = Image.fromarray(np.random.default_rng(seed).integers(0, 255, (80, 140, 3), dtype=np.uint8))
    product, others = cut_out(packshot()), [cut_out(packshot(colour=(20, 20, 200)))] * n_others
    first = compose_scene(product, background, others, config, np.random.default_rng(seed))
    again = compose_scene(product, background, others, config, np.random.default_rng(seed))
    assert first.size == (width, 96) and first.mode == "RGB"
    assert first.tobytes() == again.tobytes()


def test_the_product_is_in_the_scene():
    """The scene's red pixels (the product's colour, absent from a grey background) cover a good part of it."""
    config = SceneConfig(brightness=(1, 1), contrast=(1, 1), colour_cast=0, blur_probability=0)
    scene = compose_scene(
        cut_out(packshot()), Image.new("RGB", (640, 480), "grey"), [], config, np.random.default_rng(3)
    )
    pixels = np.asarray(scene).astype(int)
    red = (pixels[..., 0] > pixels[..., 1] + 60).mean()
    assert 0.05 < red < 0.6


def test_a_folder_of_scenes_is_listed_with_products_and_reproducible(tmp_path):
    products = [(f"p{i}", "thing", packshot(colour=(40 * i, 200 - 30 * i, 90))) for i in range(4)]
    backgrounds = background_photos(BACKGROUNDS / "test")
    first = write_scene_folder(products, backgrounds, tmp_path / "a", per_product=2, seed=5)
    write_scene_folder(products, backgrounds, tmp_path / "b", per_product=2, seed=5)
    assert [p.product_id for p in first] == ["p0", "p0", "p1", "p1", "p2", "p2", "p3", "p3"]
    assert is_street_folder(tmp_path / "a")
    for photo in first:
        assert (tmp_path / "a" / photo.file_name).read_bytes() == (tmp_path / "b" / photo.file_name).read_bytes()
    with (tmp_path / "a" / "metadata.csv").open() as handle:
        assert next(csv.reader(handle)) == ["file_name", "product_id", "label", "background"]


def test_backgrounds_of_training_and_of_the_benchmark_never_overlap():
    train = {p.read_bytes() for p in background_photos(BACKGROUNDS / "train")}
    test = {p.read_bytes() for p in background_photos(BACKGROUNDS / "test")}
    assert len(test) >= 10 and len(train) >= 10 and not train & test


@pytest.fixture(scope="module")
def scene_folder(small_catalog_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("street")
    assert scenes_main(["--source", str(small_catalog_dir), "--output", str(folder), "--per-product", "1"]) == 0
    return folder


def test_the_benchmark_scores_the_apps_search_against_a_plain_reference(small_index_dir, scene_folder):
    """R@K and mAP@K from the answers, recomputed here from each query's rank; ranks come from the
    served search itself (Recommender.search), so they are checked against its answers too."""
    recommender = Recommender.from_path(small_index_dir)
    queries = street_queries(scene_folder)
    assert len(queries) == 6 * len(SMALL_CATEGORIES)
    figures = evaluate_street(recommender, queries, ks=(1, 5))
    ranks = []
    for query, outcome in zip(queries, figures.outcomes, strict=True):
        answer = recommender.recommend(query.image, k=5)
        ids = [r.product_id or r.id for r in answer]
        assert list(outcome.top_ids) == ids
        ranks.append(ids.index(query.product_id) + 1 if query.product_id in ids else None)
    for k in (1, 5):
        assert figures.recall_at_k[str(k)] == pytest.approx(np.mean([r is not None and r <= k for r in ranks]))
        assert figures.map_at_k[str(k)] == pytest.approx(np.mean([1 / r if r and r <= k else 0 for r in ranks]))
    assert figures.recall_at_k["1"] <= figures.recall_at_k["5"]
    assert figures.recall_at_k["1"] > 0.3  # far above chance (1/24): the product is found, not guessed


def test_the_cli_reports_instance_and_category_figures_with_a_grid(small_index_dir, scene_folder, tmp_path, capsys):
    code = evaluate_main(
        [
            str(small_index_dir),
            "--queries",
            str(scene_folder),
            "--json",
            str(tmp_path / "f.json"),
            "--report",
            str(tmp_path),
        ]
    )
    assert code == 0
    figures = json.loads((tmp_path / "f.json").read_text())
    assert set(figures["recall_at_k"]) == {"1", "5", "10"} and figures["n_queries"] == 24
    assert 0 <= figures["precision_at_k"]["5"] <= 1
    assert "shoppers' photos" in capsys.readouterr().out
    with Image.open(tmp_path / "street-efficientnet-lite0.png") as grid:
        assert grid.width > 600


def test_queries_of_products_the_catalog_lacks_are_refused(small_index_dir, scene_folder):
    query = StreetQuery(scene_folder / "images" / "00000-0.jpg", "images/00000-0.jpg", "no-such-product", None)
    with pytest.raises(ValueError, match="not in the"):
        evaluate_street(Recommender.from_path(small_index_dir), [query])
