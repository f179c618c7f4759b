"""The offline weights are really ImageNet-trained: with their classifier they name the fruit."""

from __future__ import annotations

import pytest
import torch

from lookalike.backbones.offline_weights import (
    efficientnet_lite0_weights_path,
    load_efficientnet_lite0,
    load_mobilenet_v2,
    mobilenet_v2_weights_path,
)
from lookalike.backbones.registry import BACKBONES
from lookalike.catalog import BUNDLED_CATALOG_DIR, EXAMPLES_DIR
from lookalike.images import open_image

GRANNY_SMITH = 948  # ImageNet-1k class index


def granny_smith_photo():
    matches = sorted(BUNDLED_CATALOG_DIR.glob("fruit/*granny*")) + sorted(EXAMPLES_DIR.glob("fruit/*granny*"))
    return open_image(matches[0])


@pytest.mark.parametrize(
    ("name", "load", "weights_path", "classifier"),
    [
        ("efficientnet-lite0", load_efficientnet_lite0, efficientnet_lite0_weights_path, "_fc"),
        ("mobilenet-v2", load_mobilenet_v2, mobilenet_v2_weights_path, "classifier.1"),
    ],
)
def test_pooled_features_plus_the_dropped_classifier_recognise_an_apple(name, load, weights_path, classifier):
    # If a key mapping or padding were wrong, the ImageNet head on top of our features would not
    # find the right class among 1,000.
    source = torch.load(weights_path(), map_location="cpu", weights_only=True)
    features = load()(BACKBONES[name].preprocessing([granny_smith_photo()])).pooler_output
    logits = features @ source[f"{classifier}.weight"].T + source[f"{classifier}.bias"]
    assert int(logits.argmax()) == GRANNY_SMITH
