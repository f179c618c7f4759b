"""Every backbone, registered or loaded through transformers, yields unit-norm finite embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from transformers import ConvNextConfig, ConvNextImageProcessor, ConvNextModel, ResNetConfig, ResNetModel

from lookalike.backbones.embedding import embed_images
from lookalike.backbones.registry import BACKBONES, UnknownBackboneError, available_backbones, load_backbone
from lookalike.catalog import EXAMPLES_DIR
from lookalike.images import open_image


@pytest.fixture(scope="module")
def tiny_hub_models(tmp_path_factory) -> dict[str, str]:
    """Randomly initialised ResNet and ConvNeXt saved like Hub repos, loaded by the same from_pretrained."""
    root = tmp_path_factory.mktemp("hub_models")
    processor = ConvNextImageProcessor(size={"shortest_edge": 224}, crop_pct=0.875)
    models = {
        "resnet": ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")),
        "convnext": ConvNextModel(ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)),
    }
    for name, model in models.items():
        model.save_pretrained(root / name)
        processor.save_pretrained(root / name)
    return {name: str(root / name) for name in models}


def photos() -> tuple[Image.Image, Image.Image]:
    fruit = sorted((EXAMPLES_DIR / "fruit").glob("*.jpg"))[0]
    vehicle = sorted((EXAMPLES_DIR / "vehicle").glob("*.jpg"))[0]
    return open_image(fruit), open_image(vehicle)


def two_crops(image: Image.Image) -> tuple[Image.Image, Image.Image]:
    width, height = image.size
    return image.crop((0, 0, int(width * 0.85), int(height * 0.85))), image.crop(
        (int(width * 0.15), int(height * 0.15), width, height)
    )


def check_embeddings(vectors: np.ndarray, count: int, dim: int) -> None:
    assert vectors.shape == (count, dim) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", available_backbones())
def test_registered_backbone_embeds_photos_meaningfully(name):
    backbone = load_backbone(name)
    fruit, vehicle = photos()
    crop_a, crop_b = two_crops(fruit)
    vectors = embed_images(backbone, [crop_a, crop_b, vehicle])
    check_embeddings(vectors, 3, backbone.embedding_dim)
    same_photo, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert same_photo > unrelated + 0.05, (same_photo, unrelated)


def test_pretrained_backbones_are_1280_d():
    assert load_backbone("efficientnet-lite0").embedding_dim == 1280
    assert load_backbone("mobilenet-v2").embedding_dim == 1280
    assert BACKBONES["efficientnet-lite0"].preprocessing.crop_size == 224


@pytest.mark.parametrize("kind", ["resnet", "convnext"])
def test_hub_models_load_through_from_pretrained(tiny_hub_models, kind):
    backbone = load_backbone(tiny_hub_models[kind])
    assert backbone.preprocessing.crop_size == 224 and backbone.preprocessing.resize_shortest_edge == 256
    vectors = embed_images(backbone, list(photos()))
    check_embeddings(vectors, 2, 16)


def test_model_folder_without_processor_falls_back_to_imagenet(tmp_path):
    ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8], depths=[1], layer_type="basic")).save_pretrained(
        tmp_path
    )
    backbone = load_backbone(str(tmp_path))
    assert backbone.preprocessing.mean == (0.485, 0.456, 0.406)
    assert backbone.embedding_dim == 8


def test_unknown_name_lists_the_valid_ones_and_the_hub_route():
    with pytest.raises(UnknownBackboneError) as error:
        load_backbone("efficientnet-b9")
    message = str(error.value)
    assert all(name in message for name in available_backbones())
    assert "microsoft/resnet-50" in message


def test_unreachable_hub_id_fails_with_a_clear_message():
    # HF_HUB_OFFLINE=1 (conftest): the real from_pretrained path runs and must explain itself.
    with pytest.raises(UnknownBackboneError, match="Could not load backbone 'microsoft/resnet-50'"):
        load_backbone("microsoft/resnet-50")


def test_fingerprint_tells_weights_apart(tiny_hub_models):
    resnet = load_backbone(tiny_hub_models["resnet"])
    assert resnet.fingerprint == load_backbone(tiny_hub_models["resnet"]).fingerprint
    assert resnet.fingerprint != load_backbone(tiny_hub_models["convnext"]).fingerprint


def test_relative_model_folder_is_found_under_root_and_keeps_its_name(tiny_hub_models, tmp_path, monkeypatch):
    root = Path(tiny_hub_models["resnet"]).parent
    monkeypatch.chdir(tmp_path)  # somewhere the relative name does not exist
    backbone = load_backbone("resnet", root=root)
    assert backbone.name == "resnet" and backbone.embedding_dim == 16
    with pytest.raises(UnknownBackboneError):
        load_backbone("resnet")
