"""Training-time views of a product photo: random crop, flip and mild colour change.

Mild on purpose: a retrieval embedding must stay sensitive to colour and shape, which strong
colour jitter or grayscale would teach it to ignore.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from lookalike.backbones.preprocessing import Preprocessing


@dataclass(frozen=True)
class Augmentation:
    """RandomResizedCrop-style crop, horizontal flip and brightness/contrast/saturation jitter."""

    min_area: float = 0.5
    max_aspect_change: float = 4 / 3
    flip_probability: float = 0.5
    colour_jitter: float = 0.2

    def __post_init__(self) -> None:
        if not 0 < self.min_area <= 1 or self.max_aspect_change < 1 or not 0 <= self.colour_jitter < 1:
            raise ValueError(f"invalid augmentation {self}")

    def view(self, image: Image.Image, preprocessing: Preprocessing, rng: np.random.Generator) -> np.ndarray:
        """One random view, normalised like `preprocessing` (CHW float32 of its crop size)."""
        width, height = image.size
        area = width * height * rng.uniform(self.min_area, 1.0)
        aspect = math.exp(rng.uniform(-math.log(self.max_aspect_change), math.log(self.max_aspect_change)))
        crop_w = min(width, max(1, round(math.sqrt(area * aspect))))
        crop_h = min(height, max(1, round(math.sqrt(area / aspect))))
        left = int(rng.integers(0, width - crop_w + 1))
        top = int(rng.integers(0, height - crop_h + 1))
        # Resized to the square `preprocessing` centre-crops from, so its crop and normalisation apply as is.
        side = preprocessing.resize_shortest_edge
        view = image.resize((side, side), Image.Resampling.BICUBIC, box=(left, top, left + crop_w, top + crop_h))
        if rng.random() < self.flip_probability:
            view = ImageOps.mirror(view)
        for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            view = enhancer(view).enhance(rng.uniform(1 - self.colour_jitter, 1 + self.colour_jitter))
        return preprocessing.to_array(view)
