"""What a fresh clone serves: every bundled build answers an upload, one default backbone everywhere,
catalogs with variants answer K distinct products, and no message shows the server's folders."""

from __future__ import annotations

import shutil

import gradio as gr
import pytest
from PIL import Image

from lookalike.app.handlers import Handlers
from lookalike.app.layout import AppConfig, build_demo, example_images
from lookalike.app.service import SERVED_DEFAULTS, LookalikeService, Query, RequestError, SearchRequest
from lookalike.backbones.registry import DEFAULT_BACKBONE
from lookalike.catalog import BUNDLED_CATALOG_DIR, EXAMPLES_DIR, REPO_ROOT, CatalogSource
from lookalike.indexing.builder import BuildConfig, build_index


@pytest.fixture(scope="module")
def bundled_service() -> LookalikeService:
    """The builds committed in embeddings/, as `make app` serves them."""
    return LookalikeService.from_embeddings_dir(REPO_ROOT / "embeddings", models_root=REPO_ROOT)


def test_every_bundled_backbone_answers_example_and_catalog_photos(bundled_service):
    """The held-out examples, and a third of the catalog's own photos (whose own product must be left out)."""
    assert len(bundled_service.recommenders) >= 4 and not bundled_service.load_problems
    photos = example_images(EXAMPLES_DIR) + example_images(BUNDLED_CATALOG_DIR)[::3]
    assert len(photos) >= 100
    for name in bundled_service.recommenders:
        for photo in photos:
            answer = bundled_service.search(Query(images=(photo,)), SearchRequest(k=8, backbone=name))
            ids = [result["id"] for result in answer.results]
            assert len(ids) == 8 and len(set(ids)) == 8, (name, photo)


def test_one_default_backbone_for_the_service_the_page_and_the_api(bundled_service):
    """The instance fine-tuned build (street-to-shop's winner) wherever a search names no backbone."""
    default = SERVED_DEFAULTS[0]
    assert next(iter(bundled_service.recommenders)) != default  # folder order would pick another
    assert bundled_service.recommender_for(None) is bundled_service.recommenders[default]
    demo = build_demo(bundled_service, AppConfig())
    dropdowns = [c["props"] for c in demo.config["components"] if c["props"].get("label", "").startswith("Backbone")]
    assert dropdowns and all(d["value"] == default for d in dropdowns)
    recommend = demo.get_api_info()["named_endpoints"]["/recommend"]["parameters"]
    assert next(p for p in recommend if p["parameter_name"] == "backbone")["parameter_default"] == default


def test_messages_to_the_public_name_no_server_folder(bundled_service, tmp_path):
    with pytest.raises(RequestError) as unknown:
        bundled_service.search(Query(item_ids=("no/such-product.jpg",)), SearchRequest())
    assert "no/such-product.jpg" in str(unknown.value) and str(REPO_ROOT) not in str(unknown.value)
    gone = tmp_path / "uploads" / "photo.jpg"  # an upload deleted by the temp-file clean-up
    with pytest.raises(gr.Error) as missing:
        Handlers(bundled_service).recommend(str(gone), 5, "cosine", None)
    assert "photo.jpg" in missing.value.message and str(tmp_path) not in missing.value.message


@pytest.fixture(scope="module")
def catalog_with_variants(small_catalog_dir, tmp_path_factory):
    """The small catalog plus 8 variants of 2 products: the same photo re-encoded and resized under other ids,
    as a shop lists one product in several sizes with one picture. Most score above the own-photo
    threshold against each other, so an upload of one leaves its siblings out too and the search must
    go deeper than its first pass to find K."""
    root = tmp_path_factory.mktemp("variants") / "catalog"
    shutil.copytree(small_catalog_dir, root)
    originals = [sorted((root / "fruit").glob("*.jpg"))[0], sorted((root / "vehicle").glob("*.jpg"))[0]]
    variants = []
    for original in originals:
        picture = Image.open(original).convert("RGB")
        for size in range(8):
            variant = original.with_name(f"{original.stem}-size-{size}.jpg")
            scale = 1 - 0.02 * size
            resized = picture.resize((round(picture.width * scale), round(picture.height * scale)))
            resized.save(variant, quality=95 - 4 * size)
            variants.append(variant)
    output = root.parent / "build" / DEFAULT_BACKBONE
    build_index(BuildConfig(source=CatalogSource(str(root)), output=output), show_progress=False)
    return LookalikeService.from_embeddings_dir(output.parent), originals, variants


def test_an_upload_of_a_variant_answers_k_distinct_other_products(catalog_with_variants):
    service, originals, variants = catalog_with_variants
    for photo in [*originals, *variants]:
        answer = service.search(Query(images=(str(photo),)), SearchRequest(k=8))
        ids = [result["id"] for result in answer.results]
        assert len(ids) == 8 and len(set(ids)) == 8, photo.name
        assert f"{photo.parent.name}/{photo.name}" not in ids, f"{photo.name}: its own product came back"
