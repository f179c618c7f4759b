"""How close resized and re-encoded copies of catalog photos land to their original, and to other products.

    python benchmarks/own_photo.py                    # the figures behind SAME_PHOTO_SIMILARITY

For every bundled catalog photo, each copy below is embedded and compared with the photo's own
catalog embedding: the share of copies at or above a threshold is the share the app recognises as
the shopper's own photo (and never recommends back). The closest two different catalog products
bound the threshold from below: at or under it, a product would be hidden as another's copy.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

import numpy as np
from PIL import Image

from lookalike.catalog import BUNDLED_CATALOG_DIR, REPO_ROOT
from lookalike.images import open_image
from lookalike.recommend.duplicates import DUPLICATE_SIMILARITY
from lookalike.recommend.recommender import SAME_PHOTO_SIMILARITY, Recommender


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def scaled(image: Image.Image, factor: float) -> Image.Image:
    return image.resize((round(image.width * factor), round(image.height * factor)), Image.Resampling.LANCZOS)


COPIES: dict[str, Callable[[Image.Image], bytes]] = {
    "PNG (lossless)": lambda im: encoded(im, "PNG"),
    "2x upscaled, JPEG q90": lambda im: encoded(scaled(im, 2), "JPEG", quality=90),
    "0.9x, JPEG q90": lambda im: encoded(scaled(im, 0.9), "JPEG", quality=90),
    "WebP q90": lambda im: encoded(im, "WEBP", quality=90),
    "JPEG q80": lambda im: encoded(im, "JPEG", quality=80),
}


def copy_similarities(recommender: Recommender, make: Callable[[Image.Image], bytes]) -> np.ndarray:
    """Cosine of each catalog photo's copy to the photo's own embedding."""
    photos = [open_image(BUNDLED_CATALOG_DIR / item_id) for item_id in recommender.ids]
    vectors = recommender.embed([make(photo) for photo in photos])
    return (vectors * recommender.index.embeddings).sum(axis=1)


def closest_distinct_pair(embeddings: np.ndarray) -> float:
    similarities = embeddings @ embeddings.T
    np.fill_diagonal(similarities, -1)
    return float(similarities.max())


def main() -> int:
    recommender = Recommender.from_path(REPO_ROOT / "embeddings" / "efficientnet-lite0")
    print(f"{len(recommender.ids)} catalog photos, {recommender.name}; own-photo threshold {SAME_PHOTO_SIMILARITY}")
    print(f"{'copy':<24}{'min':>8}{'median':>8}{'>= 0.995':>10}{f'>= {DUPLICATE_SIMILARITY}':>10}")
    for name, make in COPIES.items():
        cosines = copy_similarities(recommender, make)
        print(
            f"{name:<24}{cosines.min():>8.3f}{np.median(cosines):>8.3f}"
            f"{(cosines >= 0.995).mean():>10.1%}{(cosines >= DUPLICATE_SIMILARITY).mean():>10.1%}"
        )
    print(f"closest two different products: {closest_distinct_pair(recommender.index.embeddings):.3f}")
    print(f"(load average {os.getloadavg()[0]:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
