"""Shoppers' photos of catalog products: each packshot cut out and placed into a real photograph.

Street-to-shop retrieval (DeepFashion's consumer-to-shop, SOP's phone photos) asks for the very
product in a photo where it is a third of the frame, among other things, in other light. Offline
there are no such photos of this catalog, so they are made: the packshot's white background is cut
away (everything white that is connected to the border), and the product is placed into a
background photograph at a random scale, position and rotation with a soft shadow, one to three other
catalog products around it (smaller, partly behind it), then the whole scene gets another light
(brightness, contrast, a colour cast, a light falloff), sometimes a little blur, and JPEG at a
random quality. Everything is drawn from one seeded generator per scene, so a folder is remade
byte for byte from its seed.

`write_scene_folder` writes an image folder with a `metadata.csv` (`file_name, product_id, label,
background`) that `python -m lookalike.evaluate DIR --queries FOLDER` scores:

    python -m lookalike.evaluate.street_scenes --output data/street-to-shop   # bundled catalog, test backgrounds
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter
from scipy import ndimage

from lookalike.catalog import IMAGE_SUFFIXES

WHITE_LEVEL = 232  # a pixel at least this bright in every channel may be the packshot's background


@dataclass(frozen=True)
class SceneConfig:
    """How a scene is drawn. Scales are of the product's longer side to the scene's shorter side."""

    width: int = 640
    height: int = 480
    product_scale: tuple[float, float] = (0.5, 0.8)  # its box is a fifth to a half of the frame, a third typically
    max_rotation: float = 25.0  # degrees, either way
    distractors: tuple[int, int] = (1, 3)  # other catalog products in the scene, at least and at most
    distractor_scale: tuple[float, float] = (0.18, 0.35)
    brightness: tuple[float, float] = (0.6, 1.25)
    contrast: tuple[float, float] = (0.7, 1.15)
    colour_cast: float = 0.12  # each channel scaled by 1 +- this
    blur_probability: float = 0.3
    jpeg_quality: tuple[int, int] = (40, 90)

    def __post_init__(self) -> None:
        if min(self.width, self.height) < 64:
            raise ValueError(f"a scene needs at least 64 px a side, not {self.width}x{self.height}")
        if not 0 < self.product_scale[0] <= self.product_scale[1] <= 1:
            raise ValueError(f"product_scale must be within (0, 1], not {self.product_scale}")


def cut_out(packshot: Image.Image) -> Image.Image:
    """The product of a packshot on white, as RGBA cropped to it: white connected to the border is transparent."""
    rgb = np.asarray(packshot.convert("RGB"))
    whiteish = (rgb >= WHITE_LEVEL).all(axis=2)
    regions, _ = ndimage.label(whiteish)
    border = np.unique(np.concatenate([regions[0], regions[-1], regions[:, 0], regions[:, -1]]))
    background = np.isin(regions, border[border > 0])
    # A pixel's width of JPEG halo goes with the background; the edge is then softened.
    product = ndimage.binary_erosion(~background, iterations=1)
    if not product.any():  # a white product on white: keep the whole picture rather than nothing
        product = np.ones_like(product)
    alpha = Image.fromarray((product * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.8))
    rgba = packshot.convert("RGB").copy()
    rgba.putalpha(alpha)
    return rgba.crop(Image.fromarray(product.astype(np.uint8) * 255).getbbox())


def _scaled(cutout: Image.Image, longer_side: int, angle: float) -> Image.Image:
    ratio = longer_side / max(cutout.size)
    size = (max(1, round(cutout.width * ratio)), max(1, round(cutout.height * ratio)))
    return cutout.resize(size, Image.Resampling.LANCZOS).rotate(angle, Image.Resampling.BICUBIC, expand=True)


def _place(scene: Image.Image, piece: Image.Image, centre: tuple[float, float], shadow: bool) -> tuple[int, ...]:
    x, y = round(centre[0] - piece.width / 2), round(centre[1] - piece.height / 2)
    if shadow:  # a soft contact shadow below and to the side, as a lamp or window would cast
        alpha = piece.getchannel("A").filter(ImageFilter.GaussianBlur(max(2, piece.width // 25)))
        dark = Image.new("RGBA", piece.size, (0, 0, 0, 0))
        dark.putalpha(alpha.point(lambda a: a * 0.45))
        offset = max(2, piece.width // 30)
        _paste(scene, dark, x + offset, y + offset)
    _paste(scene, piece, x, y)
    return x, y, x + piece.width, y + piece.height


def _paste(scene: Image.Image, piece: Image.Image, x: int, y: int) -> None:
    # alpha_composite refuses a piece that sticks out of the scene: only the part inside is pasted.
    left, top = max(0, -x), max(0, -y)
    right, bottom = min(piece.width, scene.width - x), min(piece.height, scene.height - y)
    if right > left and bottom > top:
        scene.alpha_composite(piece.crop((left, top, right, bottom)), (x + left, y + top))


def _background(photo: Image.Image, config: SceneConfig, rng: np.random.Generator) -> Image.Image:
    """A random crop of the photograph at the scene's aspect, a random part of it, mirrored or not."""
    aspect = config.width / config.height
    width = min(photo.width, photo.height * aspect)
    width *= rng.uniform(0.6, 1.0)
    height = width / aspect
    left, top = rng.uniform(0, photo.width - width), rng.uniform(0, photo.height - height)
    crop = photo.crop((round(left), round(top), round(left + width), round(top + height)))
    crop = crop.resize((config.width, config.height), Image.Resampling.BICUBIC)
    return crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop


def _light(scene: Image.Image, config: SceneConfig, rng: np.random.Generator) -> Image.Image:
    scene = ImageEnhance.Brightness(scene).enhance(rng.uniform(*config.brightness))
    scene = ImageEnhance.Contrast(scene).enhance(rng.uniform(*config.contrast))
    pixels = np.asarray(scene, dtype=np.float32)
    cast = 1 + rng.uniform(-config.colour_cast, config.colour_cast, 3)
    # Light falls off away from a random point, as from a window or a lamp.
    yy, xx = np.mgrid[0 : scene.height, 0 : scene.width]
    cx, cy = rng.uniform(0, scene.width), rng.uniform(0, scene.height)
    distance = np.hypot(xx - cx, yy - cy) / np.hypot(scene.width, scene.height)
    falloff = 1 - rng.uniform(0.1, 0.45) * distance
    pixels = pixels * cast * falloff[..., None]
    scene = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if rng.random() < config.blur_probability:
        scene = scene.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.6)))
    return scene


def compose_scene(
    product: Image.Image,
    background: Image.Image,
    others: Sequence[Image.Image],
    config: SceneConfig,
    rng: np.random.Generator,
) -> Image.Image:
    """One shopper's photo of `product` (a cut-out, RGBA) in `background`, `others` (cut-outs) around it."""
    scene = _background(background.convert("RGB"), config, rng).convert("RGBA")
    short = min(config.width, config.height)
    side = round(short * rng.uniform(*config.product_scale))
    piece = _scaled(product, side, rng.uniform(-config.max_rotation, config.max_rotation))
    # The product's centre: anywhere that keeps most of it in the frame.
    margin_x, margin_y = piece.width * 0.4, piece.height * 0.4
    centre = (
        rng.uniform(min(margin_x, config.width / 2), max(config.width - margin_x, config.width / 2)),
        rng.uniform(min(margin_y, config.height / 2), max(config.height - margin_y, config.height / 2)),
    )
    for other in others:
        small = _scaled(other, round(short * rng.uniform(*config.distractor_scale)), rng.uniform(-40, 40))
        # Beside the product rather than on it: a random direction, at least half its size away.
        angle = rng.uniform(0, 2 * np.pi)
        reach = rng.uniform(0.55, 1.0) * (piece.width + small.width) / 2
        spot = (centre[0] + reach * np.cos(angle), centre[1] + reach * np.sin(angle))
        _place(scene, small, spot, shadow=True)
    _place(scene, piece, centre, shadow=True)
    return _light(scene.convert("RGB"), config, rng)


@dataclass(frozen=True)
class ScenePhoto:
    file_name: str
    product_id: str
    label: str
    background: str


def background_photos(folder: Path) -> list[Path]:
    photos = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not photos:
        raise ValueError(f"{folder} holds no background photographs ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return photos


def write_scene_folder(
    products: Sequence[tuple[str, str, Image.Image]],
    backgrounds: Sequence[Path],
    output: Path,
    per_product: int = 2,
    seed: int = 0,
    config: SceneConfig | None = None,
) -> list[ScenePhoto]:
    """`per_product` scenes of each (product_id, label, packshot), written under `output/images/`,
    listed in `output/metadata.csv`. Other products in a scene are drawn from the same list."""
    config = config or SceneConfig()
    if len(products) < 2:
        raise ValueError("scenes need at least two products: the product and another around it")
    output = Path(output)
    (output / "images").mkdir(parents=True, exist_ok=True)
    cutouts = [cut_out(image) for _, _, image in products]
    photos: list[ScenePhoto] = []
    for index, (product_id, label, _) in enumerate(products):
        for view in range(per_product):
            rng = np.random.default_rng([seed, index, view])
            background = backgrounds[int(rng.integers(len(backgrounds)))]
            n_others = int(rng.integers(config.distractors[0], config.distractors[1] + 1))
            pool = np.delete(np.arange(len(products)), index)
            others = [cutouts[i] for i in rng.choice(pool, size=min(n_others, len(pool)), replace=False)]
            with Image.open(background) as photo:
                scene = compose_scene(cutouts[index], photo, others, config, rng)
            name = f"images/{index:05d}-{view}.jpg"
            scene.save(output / name, quality=int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1)))
            photos.append(ScenePhoto(name, product_id, label, background.name))
    with (output / "metadata.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file_name", "product_id", "label", "background"])
        writer.writeheader()
        writer.writerows(photo.__dict__ for photo in photos)
    return photos


def main(argv: list[str] | None = None) -> int:
    from lookalike.catalog import load_catalog
    from lookalike.cli import add_catalog_options, catalog_source
    from lookalike.images import ImageError, open_image

    parser = argparse.ArgumentParser(
        prog="python -m lookalike.evaluate.street_scenes", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    add_catalog_options(parser, positional=False)
    parser.add_argument("--backgrounds", type=Path, default=Path("backgrounds") / "test")
    parser.add_argument("--output", type=Path, required=True, help="query folder to write")
    parser.add_argument("--per-product", type=int, default=2, help="scenes of each product")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        catalog = load_catalog(catalog_source(args))
        products = []
        for item in catalog.items:
            try:
                products.append((item.product_id or item.id, item.label, open_image(item.image)))
            except ImageError as error:
                print(f"skipping {item.id}: {error}", file=sys.stderr)
        photos = write_scene_folder(
            products, background_photos(args.backgrounds), args.output, args.per_product, args.seed
        )
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{len(photos)} shoppers' photos of {len(products)} products written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
