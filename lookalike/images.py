"""Decode any image a user or a dataset hands us into a plain RGB picture, or say why not."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow's own bomb guard is ~89 Mpx; we keep its order of magnitude but make the limit
# explicit so the message can name it.
MAX_IMAGE_PIXELS = 64_000_000
THUMBNAIL_SIZE = 256

ImageSource = str | Path | bytes | Image.Image | np.ndarray


class ImageError(ValueError):
    """An input that cannot be read as a picture; the message is meant for the user."""


def open_image(source: ImageSource, min_size: int | None = None) -> Image.Image:
    """Return `source` as an RGB image, upright, with transparency composited onto white.

    Accepts a path, raw bytes, a PIL image or an HxW / HxWxC uint8 array. Raises ImageError
    with a readable reason for anything that is not a decodable image. With `min_size`, a JPEG
    at least twice that on both sides is decoded at 1/2, 1/4 or 1/8 scale (`Image.draft`), never
    below `min_size`: a 12-megapixel photo then decodes several times faster, for a model that
    reads 224 px anyway.
    """
    image = _decode(source, min_size)
    try:
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)  # animated GIF/WebP: the first frame stands for the product
        image = ImageOps.exif_transpose(image)
        return to_rgb(image)
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageError(f"The image data is damaged or incomplete ({error}).") from error


def _decode(source: ImageSource, min_size: int | None = None) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        return Image.fromarray(np.ascontiguousarray(source))
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"No image file at {path}.")
        data = path.read_bytes()
    elif isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        raise ImageError(f"Cannot read an image from a {type(source).__name__}.")
    if not data:
        raise ImageError("The file is empty (0 bytes).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            _check_size(image)
            if min_size and image.format == "JPEG":
                # Both sides stay >= min_size, so any later rotation (EXIF) still leaves a shortest
                # edge of min_size; the tag itself is kept, and applied by the caller as for any image.
                image.draft(None, (min_size, min_size))
            image.load()
    except ImageError:
        raise  # already says what is wrong; it is a ValueError, so the clause below would reword it
    except UnidentifiedImageError as error:
        raise ImageError("This file is not an image Pillow can read (JPEG, PNG, WebP, GIF, ...).") from error
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"The image is too large to decode safely (more than {MAX_IMAGE_PIXELS:,} pixels).") from error
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageError(f"The image data is damaged or incomplete ({error}).") from error
    return image


def _check_size(image: Image.Image) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError("The image has no pixels.")
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(
            f"The image is {width}x{height} pixels, more than the {MAX_IMAGE_PIXELS:,} pixels "
            "we decode safely. Please upload a smaller picture."
        )


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB; transparent areas become white, like a packshot."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float greyscale: scale to 8 bits by the image's own range instead of clipping.
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) / (high - low) * 255 if high > low else np.zeros_like(array)
        return Image.fromarray(scaled.astype(np.uint8)).convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def thumbnail(image: Image.Image, size: int = THUMBNAIL_SIZE) -> Image.Image:
    """A copy no larger than size x size, for galleries and the stored `image` column."""
    copy = image.copy()
    copy.thumbnail((size, size), Image.Resampling.LANCZOS)
    return copy


def encode_jpeg(image: Image.Image, quality: int = 88) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
