"""Instance fine-tuning: a tiny run on real photos learns, saves a folder any build can use, keeps protocols apart."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lookalike.backbones.embedding import embed_images
from lookalike.backbones.registry import load_backbone
from lookalike.catalog import BUNDLED_CATALOG_DIR, CatalogSource
from lookalike.finetune.__main__ import main
from lookalike.finetune.instances import InstanceConfig, InstanceProtocol, training_products
from lookalike.images import open_image

BACKGROUNDS = BUNDLED_CATALOG_DIR.parent / "backgrounds" / "train"


@pytest.fixture(scope="module")
def tuned(small_catalog_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("instance") / "model"
    code = main(
        ["--objective", "instance", "--source", str(small_catalog_dir), "--output", str(output),
         "--epochs", "3", "--scenes-per-product", "2", "--trainable-blocks", "2", "--backgrounds", str(BACKGROUNDS)]
    )  # fmt: skip
    assert code == 0
    return output


def test_a_tiny_run_learns_and_records_its_recipe(tuned):
    record = json.loads((tuned / "lookalike_training.json").read_text())
    assert record["objective"] == "instance" and record["recipe"]["epochs"] == 3  # the option, not the category default
    losses = [epoch["loss"] for epoch in record["history"][1:]]
    assert losses[-1] < losses[0]
    # Validation scenes are drawn apart from the trained ones: finding the product there is learnt, not seen.
    recalls = [epoch["recall_at_k"] for epoch in record["history"]]
    assert recalls[-1] >= recalls[0] and len(record["trained_products"]) == 24
    assert (tuned / "training_curves.png").stat().st_size > 10_000


def test_the_saved_folder_is_a_backbone_with_unit_embeddings(tuned, small_catalog_dir):
    backbone = load_backbone(str(tuned))
    photos = [open_image(p) for p in sorted(small_catalog_dir.rglob("*.jpg"))[:3]]
    vectors = embed_images(backbone, photos)
    assert vectors.shape == (3, 1280) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    base = embed_images(load_backbone("efficientnet-lite0"), photos)
    assert not np.allclose(vectors, base, atol=1e-3)  # the trained blocks changed


def test_the_held_out_protocol_trains_on_a_stratified_half_only():
    labels = ["a"] * 6 + ["b"] * 4
    ids = [f"p{i}" for i in range(10)]
    half = training_products(ids, labels, InstanceProtocol.HELD_OUT, seed=0)
    assert len(half) == 5 and {labels[i] for i in half} == {"a", "b"}
    assert training_products(ids, labels, InstanceProtocol.CATALOG, seed=0).tolist() == list(range(10))


def test_bad_recipes_are_refused_by_name():
    with pytest.raises(ValueError, match="scenes_per_product"):
        InstanceConfig(source=CatalogSource(), scenes_per_product=0)
    with pytest.raises(ValueError, match="category_weight"):
        InstanceConfig(category_weight=-1)
    with pytest.raises(ValueError, match="not a valid InstanceProtocol"):
        InstanceConfig(protocol="half")
    assert InstanceConfig(protocol="held-out").protocol is InstanceProtocol.HELD_OUT
