"""The uploads of benchmarks/hostile.py: real pictures, their fuzzed mutations, bombs, and over-cap payloads."""

from __future__ import annotations

import base64
import io
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache

import numpy as np
from PIL import Image

from lookalike.catalog import EXAMPLES_DIR
from lookalike.images import MAX_IMAGE_BYTES

MIME = {"jpg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp", "bmp": "image/bmp"}


@dataclass(frozen=True)
class Upload:
    name: str  # how it was made, for the report
    filename: str
    data: bytes
    mime: str = "application/octet-stream"
    data_url: str | None = None  # sent in place of an upload, as {"url": "data:...", "meta": ...}


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@cache
def photo() -> Image.Image:
    return Image.open(sorted((EXAMPLES_DIR / "fruit").glob("*.jpg"))[0]).convert("RGB")


@cache
def seed_files() -> tuple[Upload, ...]:
    """Valid pictures in the formats and modes people upload; the first is a plain JPEG."""
    rgb = photo()
    grey16 = Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.new("L", rgb.size, 128))
    made = [
        ("jpeg", "jpg", encoded(rgb, "JPEG", quality=90)),
        ("png", "png", encoded(rgb, "PNG")),
        ("gif", "gif", encoded(rgb, "GIF")),
        ("webp", "webp", encoded(rgb, "WEBP")),
        ("bmp", "bmp", encoded(rgb, "BMP")),
        ("16-bit png", "png", encoded(grey16, "PNG")),
        ("rgba png", "png", encoded(rgba, "PNG")),
        ("cmyk jpeg", "jpg", encoded(rgb.convert("CMYK"), "JPEG")),
        ("palette png", "png", encoded(rgb.convert("P", palette=Image.Palette.ADAPTIVE), "PNG")),
        ("progressive jpeg", "jpg", encoded(rgb, "JPEG", progressive=True)),
    ]
    return tuple(Upload(name, f"photo.{ext}", data, MIME[ext]) for name, ext, data in made)


def png_with_size(data: bytes, width: int, height: int) -> bytes:
    """A PNG whose header (IHDR, CRC fixed) claims another size than its pixel data holds."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return data
    ihdr = bytearray(data[16:29])
    ihdr[0:8] = struct.pack(">II", width, height)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)) & 0xFFFFFFFF)
    return data[:16] + bytes(ihdr) + crc + data[33:]


def jpeg_with_size(data: bytes, width: int, height: int) -> bytes:
    """A JPEG whose frame header (SOF0/SOF2) claims another size."""
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        at = data.find(marker)
        if at >= 0:
            return data[: at + 5] + struct.pack(">HH", min(height, 65535), min(width, 65535)) + data[at + 9 :]
    return data


def _flip_bits(data: bytes, rng: random.Random, count: int, within: int | None = None) -> bytes:
    mutable = bytearray(data)
    for _ in range(count):
        at = rng.randrange(min(len(mutable), within or len(mutable)))
        mutable[at] ^= 1 << rng.randrange(8)
    return bytes(mutable)


def _mutations() -> list[tuple[str, Callable[[Upload, Upload, random.Random], Upload]]]:
    def bit_flips(seed, other, rng):
        return replace(seed, data=_flip_bits(seed.data, rng, rng.randint(1, 40)))

    def header_bit_flips(seed, other, rng):
        return replace(seed, data=_flip_bits(seed.data, rng, rng.randint(1, 8), within=64))

    def truncated(seed, other, rng):
        return replace(seed, data=seed.data[: rng.randrange(len(seed.data))])

    def spliced(seed, other, rng):
        return replace(seed, data=seed.data[: rng.randrange(1, 200)] + other.data[rng.randrange(len(other.data)) :])

    def mislabelled(seed, other, rng):
        filename, mime = rng.choice([("photo.png", "image/png"), ("notes.txt", "text/plain"), ("x", "text/html")])
        return replace(seed, filename=filename, mime=mime)

    def wrong_magic(seed, other, rng):
        return replace(seed, data=other.data[:8] + seed.data[8:])

    def lying_size(seed, other, rng):
        width, height = rng.choice([(65_000, 65_000), (9_000, 9_000), (1, 1_000_000), (300, 300), (0, 5)])
        data = png_with_size(seed.data, width, height) if seed.filename.endswith("png") else seed.data
        return replace(seed, data=jpeg_with_size(data, width, height))

    def data_url(seed, other, rng):
        data = _flip_bits(seed.data, rng, rng.randint(0, 3))
        url = f"data:{seed.mime};base64," + base64.b64encode(data).decode()
        if rng.random() < 0.2:
            url = url[: rng.randrange(len(url))]  # cut mid-base64
        return replace(seed, data_url=url)

    def junk(seed, other, rng):
        return replace(seed, data=rng.choice([b"", b"\x00" * 100, rng.randbytes(rng.randrange(1, 5000))]))

    return [
        ("bit flips", bit_flips),
        ("header bit flips", header_bit_flips),
        ("truncated", truncated),
        ("spliced headers", spliced),
        ("mislabelled", mislabelled),
        ("wrong magic", wrong_magic),
        ("lying size", lying_size),
        ("data: URL", data_url),
        ("junk", junk),
    ]


def fuzzed_uploads(seeds: tuple[Upload, ...], count: int, rng: random.Random) -> list[Upload]:
    """`count` mutated uploads, every mutation in turn on random seeds; one in ten is a bomb."""
    mutations = _mutations()
    uploads = []
    for number in range(count):
        if number % 10 == 9:
            uploads.append(pixel_bomb())
            continue
        name, mutate = mutations[number % len(mutations)]
        seed, other = rng.choice(seeds), rng.choice(seeds)
        mutated = mutate(seed, other, rng)
        uploads.append(replace(mutated, name=f"{name} of {seed.name}"))
    return uploads


@cache
def pixel_bomb() -> Upload:
    """A 20 kB PNG that would decode to 400 Mpx (1.2 GB as RGB)."""
    data = encoded(Image.new("1", (20_000, 20_000)), "PNG")
    return Upload("pixel bomb (20000x20000 PNG)", "bomb.png", data, MIME["png"])


@cache
def data_url_over_cap() -> Upload:
    """A JPEG of noise just over the upload cap, as a base64 data: URL (≈ 14 MB of JSON)."""
    side = 1700
    while True:
        noise = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
        data = encoded(Image.fromarray(noise), "JPEG", quality=98)
        if len(data) > MAX_IMAGE_BYTES * 1.02:
            break
        side += 50
    url = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    return Upload(f"data: URL of a {len(data) / 1024**2:.1f} MB JPEG", "big.jpg", data, MIME["jpg"], data_url=url)


@cache
def big_picture() -> Upload:
    """A real photo blown up to 7000x7000 (49 Mpx): a PNG under the byte cap, inside the pixel cap."""
    data = encoded(photo().resize((7000, 7000), Image.Resampling.NEAREST), "PNG", compress_level=9)
    return Upload("49-Mpx PNG", "big.png", data, MIME["png"])
