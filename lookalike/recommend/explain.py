"""Why two pictures look alike to the model: occlusion heat-maps of the regions that drive their similarity.

Occlusion (Zeiler & Fergus, 2014) needs no gradients, so it works the same with ONNX Runtime, any
backbone and the colour-histogram baseline: cover one patch of a picture, embed it again, and see
how much its cosine similarity to the other picture drops. Patches whose loss costs the most
similarity are the regions the match rests on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from lookalike.images import ImageSource, open_image, thumbnail

Embed = Callable[[Sequence[Image.Image]], np.ndarray]


@dataclass(frozen=True)
class Occlusion:
    """How pictures are covered: a grid x grid lattice of patches two cells wide, overlapping by one."""

    grid: int = 8  # 7 x 7 = 49 patches: about 2 s per picture on a shared 2-core CPU
    fill: tuple[int, int, int] = (255, 255, 255)  # white, like a packshot's background: "remove this part"
    max_side: int = 320  # the backbone crops to 224 px anyway; smaller pictures embed faster

    def __post_init__(self) -> None:
        if self.grid < 2:
            raise ValueError(f"grid must be at least 2, got {self.grid}")

    def boxes(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        """(left, top, right, bottom) of every patch; together they cover the whole picture."""
        xs = np.linspace(0, width, self.grid + 1).round().astype(int)
        ys = np.linspace(0, height, self.grid + 1).round().astype(int)
        return [
            (int(xs[col]), int(ys[row]), int(xs[col + 2]), int(ys[row + 2]))
            for row in range(self.grid - 1)
            for col in range(self.grid - 1)
        ]


@dataclass(frozen=True)
class SimilarityHeatmap:
    """Per pixel of `image`, the mean similarity lost when a patch covering it is hidden."""

    image: Image.Image  # the picture as analysed (shrunk to Occlusion.max_side)
    heat: np.ndarray  # (height, width) float32; > 0 where the region supports the match
    similarity: float  # cosine similarity of the uncovered picture to the reference

    def overlay(self, opacity: float = 0.65) -> Image.Image:
        """The picture with the supporting regions painted hot; unimportant regions stay visible."""
        import matplotlib

        support = np.clip(self.heat, 0, None)
        # The heat is constant over each lattice cell; blurring by half a cell hides the blocks.
        cell = max(self.image.size) / 16
        if support.max() > 0:  # Pillow blurs 8-bit pictures only: blur the 0-255 scaled map
            scaled = Image.fromarray((support / support.max() * 255).astype(np.uint8))
            support = np.asarray(scaled.filter(ImageFilter.GaussianBlur(cell)), dtype=np.float32)
        strength = support / support.max() if support.max() > 0 else support
        colours = matplotlib.colormaps["inferno"](strength)[..., :3]
        alpha = (opacity * strength)[..., None]
        pixels = np.asarray(self.image, dtype=np.float32) / 255
        blended = (1 - alpha) * pixels + alpha * colours
        return Image.fromarray((blended.clip(0, 1) * 255).astype(np.uint8))


def similarity_heatmap(
    embed: Embed, image: ImageSource, reference: np.ndarray, occlusion: Occlusion = Occlusion()
) -> SimilarityHeatmap:
    """The occlusion heat-map of `image` against a unit-norm `reference` embedding."""
    picture = thumbnail(open_image(image), occlusion.max_side)
    boxes = occlusion.boxes(*picture.size)
    covered = []
    for box in boxes:
        copy = picture.copy()
        ImageDraw.Draw(copy).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=occlusion.fill)
        covered.append(copy)
    vectors = embed([picture, *covered])
    similarities = vectors @ reference
    drops = similarities[0] - similarities[1:]
    heat = np.zeros((picture.height, picture.width), dtype=np.float64)
    counts = np.zeros_like(heat)
    for (left, top, right, bottom), drop in zip(boxes, drops, strict=True):
        heat[top:bottom, left:right] += drop
        counts[top:bottom, left:right] += 1
    return SimilarityHeatmap(picture, (heat / counts).astype(np.float32), float(similarities[0]))


def explain_similarity(
    embed: Embed, image_a: ImageSource, image_b: ImageSource, occlusion: Occlusion = Occlusion()
) -> tuple[SimilarityHeatmap, SimilarityHeatmap]:
    """Heat-maps of both pictures: which parts of A match B, and which parts of B match A."""
    a, b = (open_image(image) for image in (image_a, image_b))
    embedding_a, embedding_b = embed([a, b])
    return similarity_heatmap(embed, a, embedding_b, occlusion), similarity_heatmap(embed, b, embedding_a, occlusion)
