"""Preprocessing gives the backbone the tensor it was trained on."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from transformers import ConvNextImageProcessor

from lookalike.backbones.preprocessing import Preprocessing, preprocessing_from_image_processor


def test_batch_shape_and_normalisation():
    preprocessing = Preprocessing(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    batch = preprocessing([Image.new("RGB", (640, 480), (255, 0, 128)), Image.new("RGB", (50, 90), "white")])
    assert batch.shape == (2, 3, 224, 224)
    assert np.allclose(batch[0, :, 100, 100].numpy(), [1.0, -1.0, 128 / 255 * 2 - 1], atol=1e-6)


def test_centre_crop_keeps_the_middle():
    image = Image.new("RGB", (600, 200), "black")
    image.paste((255, 255, 255), (250, 0, 350, 200))  # a white band in the middle
    crop = np.asarray(Preprocessing(resample="nearest").crop(image))
    assert crop.shape == (224, 224, 3)
    assert crop[:, 112].min() == 255 and crop[:, 0].max() == 0


def test_matches_the_transformers_processor_of_a_convnext():
    processor = ConvNextImageProcessor(size={"shortest_edge": 224}, crop_pct=0.875)
    ours = preprocessing_from_image_processor(processor)
    assert (ours.resize_shortest_edge, ours.crop_size) == (256, 224)
    image = Image.effect_noise((300, 260), 60).convert("RGB")
    theirs = processor(image, return_tensors="pt")["pixel_values"][0].numpy()
    assert np.abs(ours([image])[0].numpy() - theirs).mean() < 0.02


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="resample"):
        Preprocessing(resample="magic")
    with pytest.raises(ValueError, match="crop_size"):
        Preprocessing(resize_shortest_edge=100, crop_size=224)
