"""Decode any image a user or a dataset hands us into a plain RGB picture, or say why not."""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lookalike.runtime import release_freed_memory

# Pillow's own bomb guard is ~89 Mpx; we keep its order of magnitude but make the limit
# explicit so the message can name it.
MAX_IMAGE_PIXELS = 64_000_000
# The app's upload cap (AppConfig.max_file_size, "10mb" as Gradio counts it); files and data: URLs
# over it are refused before anything reads their pixels.
MAX_IMAGE_BYTES = 10 * 1024 * 1024
# Every consumer shrinks a picture to 320 px or less (the model's 224-256 px input, heat-maps,
# gallery thumbnails), while a 49-Mpx picture costs 150-600 MB per conversion step. Larger
# pictures are reduced by a whole factor right after decoding (JPEGs while decoding); the later
# antialiased resize makes the difference invisible to the model.
WORKING_PIXELS = 4_000_000
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
    large = image.width * image.height > WORKING_PIXELS
    try:
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)  # animated GIF/WebP: the first frame stands for the product
        image = ImageOps.exif_transpose(image)
        if large and image.mode not in _REDUCIBLE_MODES:
            image = to_rgb(image)  # palette, 1-bit and 16-bit pictures cannot be reduced as they are
        return to_rgb(_reduced(image))
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageError(f"The image data is damaged or incomplete ({error}).") from error
    finally:
        if large:
            del image  # the full-size picture: hand its pages back to the system, not just to malloc
            release_freed_memory()


_REDUCIBLE_MODES = frozenset({"L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "I", "F"})


def _reduction_factor(width: int, height: int) -> int:
    return max(1, math.ceil(math.sqrt(width * height / WORKING_PIXELS)))


def _reduced(image: Image.Image) -> Image.Image:
    factor = _reduction_factor(*image.size)
    return image.reduce(factor) if factor > 1 else image


def check_image_file(path: str | Path) -> None:
    """Refuse a file over the byte cap or whose header promises too many pixels, decoding nothing.

    The guard every upload passes before Gradio or we decode it. Raises ImageError.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"No image file at {path}.")
    _check_bytes(path.stat().st_size)
    with open(path, "rb") as file, _read_as_image_error(), Image.open(file) as image:
        _check_size(image)


def _check_bytes(size: int) -> None:
    if size == 0:
        raise ImageError("The file is empty (0 bytes).")
    if size > MAX_IMAGE_BYTES:
        raise ImageError(
            f"The file is {size / 1024**2:.1f} MB, over the {MAX_IMAGE_BYTES / 1024**2:.0f} MB limit. "
            "Please upload a smaller picture."
        )


def _decode(source: ImageSource, min_size: int | None = None) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        return Image.fromarray(np.ascontiguousarray(source))
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"No image file at {path}.")
        _check_bytes(path.stat().st_size)  # before reading: a file may have grown past the cap
        data = path.read_bytes()
    elif isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        raise ImageError(f"Cannot read an image from a {type(source).__name__}.")
    _check_bytes(len(data))
    with _read_as_image_error():
        image = Image.open(io.BytesIO(data))
        _check_size(image)  # from the header: nothing is decoded yet
        if image.format == "JPEG":
            _draft(image, min_size)
        image.load()
    return image


@contextlib.contextmanager
def _read_as_image_error() -> Iterator[None]:
    """Pillow's many failures while opening or decoding, as one ImageError with a readable reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except ImageError:
        raise  # already says what is wrong; it is a ValueError, so the clause below would reword it
    except UnidentifiedImageError as error:
        raise ImageError(_NOT_AN_IMAGE) from error
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(_TOO_LARGE) from error
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageError(f"The image data is damaged or incomplete ({error}).") from error


def _draft(image: Image.Image, min_size: int | None) -> None:
    """Have a JPEG decoded at 1/2, 1/4 or 1/8 scale (DCT scaling) where that loses nothing we use:
    down to `min_size` on both sides when the caller says what it needs (a build: twice the model's
    input), else down to about WORKING_PIXELS (every consumer shrinks further anyway)."""
    if min_size:
        # Both sides stay >= min_size, so any later rotation (EXIF) still leaves a shortest edge of
        # min_size; the tag itself is kept, and applied by the caller as for any image.
        image.draft(image.mode, (min_size, min_size))
    elif image.width * image.height > WORKING_PIXELS:
        factor = _reduction_factor(*image.size)
        image.draft(image.mode, (math.ceil(image.width / factor), math.ceil(image.height / factor)))


_NOT_AN_IMAGE = "This file is not an image Pillow can read (JPEG, PNG, WebP, GIF, ...)."
_TOO_LARGE = f"The image is too large to decode safely (more than {MAX_IMAGE_PIXELS:,} pixels)."


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
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        # 16-bit greyscale: scale to 8 bits by the image's own range instead of clipping, through a
        # 65,536-entry table, so a big picture costs one 16-bit and one 8-bit array, no float copy.
        low, high = image.getextrema()
        table = (np.arange(65536, dtype=np.float64) - low) / max(high - low, 1) * 255
        table = table.clip(0, 255).astype(np.uint8)
        return Image.fromarray(table[np.asarray(image)]).convert("RGB")
    if image.mode in ("I", "F"):
        # 32-bit integer or float greyscale: the same scaling, done by Pillow in the image's own mode.
        low, high = image.getextrema()
        scale = 255 / (high - low) if high > low else 0.0
        return image.point(lambda value: value * scale - low * scale).convert("L").convert("RGB")
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
