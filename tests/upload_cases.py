"""The uploads of docs/robustness.md, made from a real photo, each with what the app must answer.

`expected_message` None means the app must recommend; otherwise its error must contain that text.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image

from lookalike.catalog import EXAMPLES_DIR
from lookalike.images import MAX_IMAGE_PIXELS


@dataclass(frozen=True)
class UploadCase:
    name: str
    filename: str
    make: Callable[[], bytes]
    expected_message: str | None = None


@cache
def photo() -> Image.Image:
    """A real product photo that is not in the catalog."""
    return Image.open(sorted((EXAMPLES_DIR / "fruit").glob("*.jpg"))[0]).convert("RGB")


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def truncated_jpeg() -> bytes:
    data = encoded(photo(), "JPEG")
    return data[: len(data) // 3]


def very_large_jpeg() -> bytes:
    """24 Mpx: a big camera photo, inside the pixel limit."""
    return encoded(photo().resize((6000, 4000)), "JPEG", quality=80)


def over_pixel_limit_png() -> bytes:
    """A small file that decodes to more pixels than we accept, though Pillow alone would open it."""
    side = int(MAX_IMAGE_PIXELS**0.5) + 100
    return encoded(Image.new("1", (side, side)), "PNG")


def decompression_bomb_png() -> bytes:
    """48 kB of PNG that would decode to 400 Mpx: past Pillow's own DecompressionBombError limit."""
    return encoded(Image.new("1", (20_000, 20_000)), "PNG")


def sixteen_bit_png() -> bytes:
    grey = np.asarray(photo().convert("L"), dtype=np.uint16) * 257
    return encoded(Image.fromarray(grey), "PNG")


def transparent_png() -> bytes:
    """The photo on a fully transparent border, as product cut-outs come."""
    rgba = photo().convert("RGBA")
    alpha = Image.new("L", rgba.size, 0)
    width, height = rgba.size
    alpha.paste(255, (width // 8, height // 8, width - width // 8, height - height // 8))
    rgba.putalpha(alpha)
    return encoded(rgba, "PNG")


def animated_gif() -> bytes:
    frames = [photo(), photo().rotate(90), Image.new("RGB", photo().size, "black")]
    return encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def exif_rotated_jpeg() -> bytes:
    """The photo stored sideways, with EXIF orientation 6 saying 'turn 90° clockwise to display'."""
    sideways = photo().transpose(Image.Transpose.ROTATE_90)
    exif = sideways.getexif()
    exif[0x0112] = 6
    return encoded(sideways, "JPEG", quality=95, exif=exif)


UPLOAD_CASES = [
    UploadCase("bytes that are not an image", "notes.jpg", lambda: b"<html>404 Not Found</html>", "not an image"),
    UploadCase("truncated JPEG", "cut.jpg", truncated_jpeg, "damaged or incomplete"),
    UploadCase("zero-byte file", "empty.png", lambda: b"", "empty"),
    UploadCase("1x1 image", "dot.png", lambda: encoded(photo().resize((1, 1)), "PNG")),
    UploadCase("very large image (6000x4000)", "large.jpg", very_large_jpeg),
    UploadCase("more pixels than the limit (64 Mpx)", "huge.png", over_pixel_limit_png, "pixels we decode safely"),
    UploadCase("decompression bomb (400 Mpx)", "bomb.png", decompression_bomb_png, "too large to decode safely"),
    UploadCase("CMYK JPEG", "cmyk.jpg", lambda: encoded(photo().convert("CMYK"), "JPEG")),
    UploadCase("16-bit greyscale PNG", "deep.png", sixteen_bit_png),
    UploadCase(
        "palette PNG", "palette.png", lambda: encoded(photo().convert("P", palette=Image.Palette.ADAPTIVE), "PNG")
    ),
    UploadCase("RGBA with transparency", "cutout.png", transparent_png),
    UploadCase("greyscale JPEG", "grey.jpg", lambda: encoded(photo().convert("L"), "JPEG")),
    UploadCase("animated GIF", "spin.gif", animated_gif),
    UploadCase("EXIF orientation 'rotated'", "sideways.jpg", exif_rotated_jpeg),
]


def oversized_png() -> bytes:
    """A valid 12 MB picture: over the app's 10 MB upload limit though it would decode fine."""
    noise = np.random.default_rng(0).integers(0, 256, (2000, 2000, 3), dtype=np.uint8)
    return encoded(Image.fromarray(noise), "PNG", compress_level=0)
