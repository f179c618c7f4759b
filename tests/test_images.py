"""Every kind of picture decodes to upright RGB; anything else raises a readable ImageError."""

from __future__ import annotations

import io
import sys
import time
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from lookalike.images import (
    MAX_IMAGE_BYTES,
    MAX_IMAGE_PIXELS,
    WORKING_PIXELS,
    ImageError,
    check_image_file,
    open_image,
    thumbnail,
    to_rgb,
)
from lookalike.runtime import release_freed_memory


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_transparent_png_is_composited_on_white():
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    image = open_image(encoded(rgba, "PNG"))
    assert image.mode == "RGB"
    assert image.getpixel((5, 5)) == (255, 255, 255)
    assert image.getpixel((0, 0)) == (255, 0, 0)


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "LA", "1"])
def test_modes_become_rgb(mode):
    source = Image.new("RGB", (10, 6), (40, 120, 200)).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    image = open_image(encoded(source, fmt))
    assert image.mode == "RGB" and image.size == (10, 6)


def test_sixteen_bit_png_keeps_its_contrast():
    ramp = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    image = open_image(encoded(Image.fromarray(ramp), "PNG"))
    pixels = np.asarray(image)
    assert image.mode == "RGB" and pixels.min() == 0 and pixels.max() == 255


def test_exif_orientation_is_applied():
    wide = Image.new("RGB", (40, 20), "blue")
    exif = wide.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    image = open_image(encoded(wide, "JPEG", exif=exif))
    assert image.size == (20, 40)


def test_large_jpeg_is_draft_decoded_upright_and_never_below_min_size():
    # Left half red, right half blue, 1600x800, tagged "rotate 90 degrees clockwise to display".
    wide = Image.new("RGB", (1600, 800), "red")
    wide.paste("blue", (800, 0, 1600, 800))
    exif = wide.getexif()
    exif[0x0112] = 6
    data = encoded(wide, "JPEG", exif=exif, quality=95)
    full, draft = open_image(data), open_image(data, min_size=300)
    assert full.size == (800, 1600) and draft.size == (200 * 2, 400 * 2)  # 1/2 scale: 1/4 would give 200 < 300
    # Upright the same way: red on top after the rotation, as in the full decode.
    assert draft.getpixel((200, 100))[0] > 200 and draft.getpixel((200, 700))[2] > 200
    assert full.getpixel((400, 200))[0] > 200 and full.getpixel((400, 1400))[2] > 200
    assert open_image(encoded(wide, "PNG"), min_size=300).size == (1600, 800)  # only JPEG has drafts


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (8, 8), color) for color in ("red", "blue")]
    data = io.BytesIO()
    frames[0].save(data, format="GIF", save_all=True, append_images=frames[1:])
    image = open_image(data.getvalue())
    assert image.getpixel((4, 4))[0] > 200


def test_arrays_and_paths_are_accepted(tmp_path):
    array = np.zeros((5, 7, 3), dtype=np.uint8)
    assert open_image(array).size == (7, 5)
    path = tmp_path / "a.png"
    Image.fromarray(array).save(path)
    assert open_image(path).size == (7, 5)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"%PDF-1.4 this is not a picture", "not an image"),
    ],
)
def test_unreadable_bytes_raise_a_readable_error(data, message):
    with pytest.raises(ImageError, match=message):
        open_image(data)


def test_truncated_jpeg_raises_a_readable_error():
    data = encoded(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG")
    with pytest.raises(ImageError, match="damaged or incomplete"):
        open_image(data[: len(data) // 2])


def test_decompression_bomb_is_refused_before_decoding():
    side = int(MAX_IMAGE_PIXELS**0.5) + 100
    data = encoded(Image.new("1", (side, side)), "PNG")  # tiny file, huge picture
    with pytest.raises(ImageError, match="pixels"):
        open_image(data)


def test_picture_over_our_pixel_limit_names_its_size():
    side = int(MAX_IMAGE_PIXELS**0.5) + 100  # over our limit, under Pillow's own
    with pytest.raises(ImageError, match=rf"^The image is {side}x{side} pixels, more than the 64,000,000"):
        open_image(encoded(Image.new("1", (side, side)), "PNG"))


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(ImageError, match="No image file"):
        open_image(tmp_path / "nope.jpg")


def test_thumbnail_bounds_the_size():
    assert max(thumbnail(Image.new("RGB", (1000, 500)), 100).size) == 100


def test_files_over_the_byte_cap_are_refused_unread(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(encoded(Image.new("RGB", (8, 8)), "PNG") + b"\0" * MAX_IMAGE_BYTES)  # valid, padded
    for check in (check_image_file, open_image):
        with pytest.raises(ImageError, match=r"^The file is 10.0 MB, over the 10 MB limit"):
            check(path)


def test_header_check_refuses_a_bomb_without_decoding_it(tmp_path):
    """20000x20000 would be 1.2 GB as RGB; the check reads the header only."""
    path = tmp_path / "bomb.png"
    path.write_bytes(encoded(Image.new("1", (20_000, 20_000)), "PNG"))
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(ImageError, match="too large to decode safely"):
        check_image_file(path)
    assert time.perf_counter() - started < 0.5
    assert tracemalloc.get_traced_memory()[1] < 5 * 1024**2
    tracemalloc.stop()
    good = tmp_path / "good.png"
    good.write_bytes(encoded(Image.new("RGB", (30, 20)), "PNG"))
    check_image_file(good)  # passes


def test_sixteen_bit_picture_is_converted_without_float_copies():
    """A 16-bit picture is scaled through a table: ~4 bytes a pixel, where float64 copies took 18."""
    ramp = np.tile(np.arange(2000, dtype=np.uint16) * 30, (2000, 1))
    picture = Image.fromarray(ramp)
    tracemalloc.start()
    image = to_rgb(picture)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 6 * ramp.size
    pixels = np.asarray(image)[0]
    assert pixels[0, 0] == 0 and pixels[-1, 0] == 255 and np.all(np.diff(pixels[:, 0].astype(int)) >= 0)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_big_pictures_are_reduced_after_decoding_and_match_the_full_size(fmt):
    """A 25-Mpx picture comes back at most WORKING_PIXELS large, the same picture once shrunk."""
    small = Image.effect_mandelbrot((350, 350), (-2, -1.5, 1, 1.5), 60).convert("RGB")
    big = small.resize((5000, 5000), Image.Resampling.BICUBIC)
    image = open_image(encoded(big, fmt, quality=90) if fmt == "JPEG" else encoded(big, fmt))
    assert image.width * image.height <= WORKING_PIXELS and image.size[0] == image.size[1] >= 1000
    ours = np.asarray(thumbnail(image, 224), dtype=np.float32)
    full = np.asarray(thumbnail(big, 224), dtype=np.float32)
    assert np.abs(ours - full).mean() < 4  # of 255: the model sees the same picture


def test_freed_memory_can_be_handed_back():
    assert release_freed_memory() is sys.platform.startswith("linux")
