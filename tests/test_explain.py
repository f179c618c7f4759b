"""Occlusion heat-maps: shape and finite values, and on a constructed scene the matching object lights up."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lookalike.backbones.embedding import embed_images
from lookalike.backbones.registry import load_backbone
from lookalike.catalog import BUNDLED_CATALOG_DIR
from lookalike.recommend.explain import Occlusion, explain_similarity, similarity_heatmap


@pytest.fixture(scope="module")
def embed():
    backbone = load_backbone("efficientnet-lite0")
    return lambda images: embed_images(backbone, list(images))


def product(category: str) -> Image.Image:
    with Image.open(sorted((BUNDLED_CATALOG_DIR / category).glob("*.jpg"))[0]) as photo:
        return photo.convert("RGB").resize((200, 200))


def test_patches_cover_the_whole_picture():
    boxes = Occlusion(grid=4).boxes(100, 60)
    assert len(boxes) == 9 and boxes[0] == (0, 0, 50, 30) and boxes[-1] == (50, 30, 100, 60)
    with pytest.raises(ValueError, match="grid"):
        Occlusion(grid=1)


def test_the_region_showing_the_matching_product_drives_the_similarity(embed):
    """A fruit top-left and a vehicle bottom-right on white, explained against the fruit alone."""
    scene = Image.new("RGB", (448, 448), "white")
    scene.paste(product("fruit"), (12, 12))
    scene.paste(product("vehicle"), (236, 236))
    reference = embed([product("fruit")])[0]
    heatmap = similarity_heatmap(embed, scene, reference)
    assert heatmap.heat.shape == (320, 320) and np.isfinite(heatmap.heat).all()
    quadrants = {
        "fruit": heatmap.heat[:160, :160].mean(),
        "vehicle": heatmap.heat[160:, 160:].mean(),
        "empty top-right": heatmap.heat[:160, 160:].mean(),
        "empty bottom-left": heatmap.heat[160:, :160].mean(),
    }
    assert max(quadrants, key=quadrants.get) == "fruit", quadrants
    assert quadrants["fruit"] > 2 * max(abs(v) for name, v in quadrants.items() if name != "fruit"), quadrants
    overlay = heatmap.overlay()
    assert overlay.size == (320, 320) and overlay.mode == "RGB"


def test_explaining_a_pair_gives_one_map_per_picture(embed):
    fruit, vehicle = product("fruit"), product("vehicle")
    for_fruit, for_vehicle = explain_similarity(embed, fruit, vehicle, Occlusion(grid=3))
    assert for_fruit.heat.shape == (200, 200) and for_vehicle.heat.shape == (200, 200)
    assert for_fruit.similarity == pytest.approx(for_vehicle.similarity, abs=1e-5)
