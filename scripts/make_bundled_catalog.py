"""Build the bundled offline catalog (and its held-out query photos) from Tux Paint's stamps.

    python scripts/make_bundled_catalog.py --deb tuxpaint-stamps-default_2022.06.04-1_all.deb
    python scripts/make_bundled_catalog.py --stamps-dir /tmp/tuxpaint/usr/share/tuxpaint/stamps

The Debian package `tuxpaint-stamps-default` (GPL-2.0-or-later) holds a few hundred photos of
single objects cut out on transparency. This script picks the stamp folders listed in
`FOLDER_CATEGORIES`, drops the curated `EXCLUDE` list (drawings, duplicates, mislabelled items),
puts every photo on white in a 224x224 square, and writes JPEGs as an image folder:
`<catalog-out>/<category>/<name>.jpg`. Two photos per category, picked by a seeded RNG, go to
`<examples-out>/<category>/` instead: query photos that are not in the catalog.

Reruns are clean: every category folder below both outputs is deleted and rewritten. Files lying
directly in the output folders (NOTICE.md, COPYING) are kept, since they are maintained by hand.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

STAMPS_IN_DEB = Path("usr/share/tuxpaint/stamps")
IMAGE_SIZE = 224
MARGIN = 8
JPEG_QUALITY = 90
HELD_OUT_PER_CATEGORY = 2
# The app and tests rely on every bundled category having at least this many catalog photos.
MIN_CATALOG_PER_CATEGORY = 5

# Stamp folder (relative to the stamps dir) -> category. The first matching prefix wins, so the
# sub-folders that get their own category come before their parent ("household" takes the rest).
FOLDER_CATEGORIES: list[tuple[str, str]] = [
    ("animals/mammals", "mammal"),
    ("animals/birds", "bird"),
    ("animals/fish", "fish"),
    ("animals/insects", "insect"),
    ("food/fruit", "fruit"),
    ("food/nuts", "fruit"),
    ("food/vegetables", "vegetable"),
    ("plants/flowers", "flower"),
    ("plants/trees", "plant"),
    ("plants/mushrooms", "plant"),
    ("household/tools", "tool"),
    ("household/arttools", "tool"),
    ("household", "household"),
    ("clothes", "clothing"),
    ("vehicles", "vehicle"),
    ("military/vehicles", "vehicle"),
    ("hobbies/music", "musical-instrument"),
    ("sports", "sports"),
    ("symbols/money", "money"),
    ("space/planets", "planet"),
    ("space/moon", "planet"),
    ("seasonal/christmas", "christmas"),
]

# Folders named "cartoon" hold drawings only; they are skipped wholesale.
SKIPPED_FOLDER_NAME = "cartoon"

DRAWING = "drawing / clip art, not a photo"
MIRRORED = "mirrored copy of a stamp that is already in the catalog"

# Stamps left out after looking at every candidate on contact sheets, keyed by their path below
# the stamps dir without ".png". Each entry says why. The script fails if an entry matches no
# stamp, so the list cannot silently go stale when the package changes.
EXCLUDE: dict[str, str] = {
    # mammal
    "animals/mammals/bears/toys/edward_bear": "teddy bear: a toy, not an animal",
    "animals/mammals/echidna": "black silhouette, not a photo",
    "animals/mammals/hedgehog": DRAWING,
    # fish: keep real fish only
    "animals/fish/lobster": "crustacean, not a fish; looks nothing like the rest",
    "animals/fish/shrimp": "crustacean, not a fish; washed out, nearly invisible on white",
    # insect: the woodlouse stays although a crustacean; it looks like a beetle, the slug does not
    "animals/insects/bee": "black-and-white line drawing",
    "animals/insects/Brown_slug": "a mollusc, not an insect; a legless blob",
    # fruit
    "food/nuts/walnut_shelled": "25x22 px source: an unrecognisable blur at 224 px",
    # plant
    "plants/trees/rambutan": "a bunch of fruit, not a plant",
    # tool
    "household/tools/measuring_tape_mirror": MIRRORED,
    # clothing: every stamp is a drawing or not clothing, so the category ends up empty
    "clothes/button": "crayon drawing",
    "clothes/clothespin_new": "a clothes peg, not clothing",
    "clothes/clothespin_old": "a clothes peg, not clothing",
    "clothes/hats/blue_fedora": DRAWING,
    "clothes/hats/feathered_hat": DRAWING,
    "clothes/hats/green_fedora": DRAWING,
    "clothes/hats/propeller_hat": DRAWING,
    "clothes/hats/sombrero": DRAWING,
    "clothes/hats/tophat": DRAWING,
    "clothes/t_baseballcap": "grey line drawing (a template for tinting)",
    "clothes/t_glove": "grey line drawing (a template for tinting)",
    "clothes/t_jacket": "grey line drawing (a template for tinting)",
    "clothes/t_pants": "grey line drawing (a template for tinting)",
    "clothes/t_poloshirt": "grey line drawing (a template for tinting)",
    "clothes/t_scarf": "grey line drawing (a template for tinting)",
    "clothes/t_shirt": "grey line drawing (a template for tinting)",
    "clothes/t_sock": "grey line drawing (a template for tinting)",
    "clothes/t_tshirt": "grey line drawing (a template for tinting)",
    # vehicle
    "vehicles/7spoke256": "a wheel rim, not a vehicle; flat graphic",
    "vehicles/wheel_tractor": "a tyre, not a vehicle",
    "vehicles/ship/chineseJunk": "painted illustration, not a photo",
    "vehicles/emergency/sedan_police": "only the police emblems to overlay on the sedan stamp",
    "vehicles/emergency/sedan_police_mirror": MIRRORED,
    "vehicles/construction/dumper_mirror": MIRRORED,
    "military/vehicles/bradley_mirror": MIRRORED,
    # sports: keep the equipment you play with (six balls and a tennis racket)
    "sports/rugby_goal_posts": "goalposts: a pitch structure, not equipment",
    "sports/trophy_cup": "a trophy: an award, not equipment",
    # money: keep the coin photos, drop the currency glyphs
    "symbols/money/00_symbols/dollars_1_dollar": "typeset currency symbol, not a photo",
    "symbols/money/00_symbols/dollars_2_cent": "typeset currency symbol, not a photo",
    "symbols/money/00_symbols/euro_1_euro": "typeset currency symbol, not a photo",
    "symbols/money/00_symbols/euro_2_cent": "typeset currency symbol, not a photo",
    "symbols/money/00_symbols/gbp_1_pound": "typeset currency symbol, not a photo",
    "symbols/money/00_symbols/gbp_2_penny": "typeset currency symbol, not a photo",
    "symbols/money/00_symbols/yen_1_yen": "typeset currency symbol, not a photo",
    # planet
    "space/planets/0_sun": "a soft yellow glow, not a planet photo",
    # christmas: keep the photos of things sold for Christmas that look it: decorations (candy
    # canes, tree, wreath, bauble, smoker figurine) and the holly-topped pudding
    "seasonal/christmas/Santa": DRAWING,
    "seasonal/christmas/bow": DRAWING,
    "seasonal/christmas/candy_cane": DRAWING,
    "seasonal/christmas/hard_candy": DRAWING,
    "seasonal/christmas/santahat": DRAWING,
    "seasonal/christmas/star": DRAWING,
    "seasonal/christmas/stocking": DRAWING,
    "seasonal/christmas/tree": DRAWING,
    "seasonal/christmas/lamp": "a red glow, not an object",
    "seasonal/christmas/Mince_Pie": "a plain pastry: nothing in the photo says Christmas",
    "seasonal/christmas/Roast_turkey": "a cooked dish; clashes with bird/turkey",
}


@dataclass(frozen=True)
class Stamp:
    """One stamp photo: its path below the stamps dir (no suffix), category and output name."""

    key: str
    category: str
    name: str
    source: Path


def category_of(key: str) -> str | None:
    """The category of the first folder in FOLDER_CATEGORIES that holds the stamp, if any."""
    for folder, category in FOLDER_CATEGORIES:
        if key.startswith(folder + "/"):
            return category
    return None


def mapped_folder_of(key: str) -> str:
    """The FOLDER_CATEGORIES folder that gave the stamp its category."""
    return next(folder for folder, _ in FOLDER_CATEGORIES if key.startswith(folder + "/"))


def slugify(text: str) -> str:
    """A lowercase, filesystem-safe name: runs of anything but letters and digits become '-'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def find_stamps(stamps_dir: Path) -> dict[str, Path]:
    """Every PNG stamp outside 'cartoon' folders, keyed by its path without suffix."""
    found = {}
    for png in sorted(stamps_dir.rglob("*.png")):
        relative = png.relative_to(stamps_dir).with_suffix("")
        if SKIPPED_FOLDER_NAME not in relative.parts[:-1]:
            found[relative.as_posix()] = png
    return found


def select_stamps(stamps: dict[str, Path]) -> list[Stamp]:
    """The mapped, not excluded stamps, each with a category-unique output name."""
    stale = sorted(key for key in EXCLUDE if key not in stamps)
    if stale:
        raise SystemExit(f"EXCLUDE names stamps that are not in the package: {stale}")
    by_category: dict[str, list[str]] = defaultdict(list)
    for key in sorted(stamps):
        category = category_of(key)
        if category is not None and key not in EXCLUDE:
            by_category[category].append(key)
    selected = []
    for category, keys in sorted(by_category.items()):
        for key, name in unique_names(keys).items():
            selected.append(Stamp(key=key, category=category, name=name, source=stamps[key]))
    return selected


def unique_names(keys: list[str]) -> dict[str, str]:
    """Slug of each stamp's file stem; stems shared within a category (e.g. 001penny in both
    canadian/ and us/) get the folders below their mapped folder as a prefix instead."""
    stem_counts: dict[str, int] = defaultdict(int)
    for key in keys:
        stem_counts[slugify(Path(key).name)] += 1
    names = {}
    for key in keys:
        name = slugify(Path(key).name)
        if stem_counts[name] > 1:
            name = slugify(key.removeprefix(mapped_folder_of(key) + "/"))
        names[key] = name
    if len(set(names.values())) != len(names):
        raise SystemExit(f"Could not give these stamps distinct names: {sorted(keys)}")
    return names


def held_out_names(stamps: list[Stamp], seed: int) -> set[tuple[str, str]]:
    """(category, name) of the query photos: HELD_OUT_PER_CATEGORY per category.

    Each category gets its own RNG seeded from (seed, category), so curating one category never
    changes which photos another category holds out.
    """
    names_by_category: dict[str, list[str]] = defaultdict(list)
    for stamp in stamps:
        names_by_category[stamp.category].append(stamp.name)
    held_out = set()
    for category, names in names_by_category.items():
        if len(names) < HELD_OUT_PER_CATEGORY + MIN_CATALOG_PER_CATEGORY:
            raise SystemExit(
                f"{category} has {len(names)} photos; it needs {HELD_OUT_PER_CATEGORY} to hold "
                f"out plus {MIN_CATALOG_PER_CATEGORY} for the catalog"
            )
        rng = random.Random(f"{seed}:{category}")
        for name in rng.sample(sorted(names), HELD_OUT_PER_CATEGORY):
            held_out.add((category, name))
    return held_out


def product_shot(source: Path) -> Image.Image:
    """The stamp on white, scaled (up or down) to fit a MARGIN-padded IMAGE_SIZE square."""
    with Image.open(source) as image:
        rgba = image.convert("RGBA")
    # Crop to the visible object, so transparent borders do not shrink it in the frame.
    bbox = rgba.getchannel("A").getbbox()
    if bbox is not None:
        rgba = rgba.crop(bbox)
    on_white = Image.new("RGBA", rgba.size, "white")
    on_white.alpha_composite(rgba)
    # Resize after compositing: resampling straight alpha would bleed dark halos into edges.
    rgb = on_white.convert("RGB")
    box = IMAGE_SIZE - 2 * MARGIN
    scale = min(box / rgb.width, box / rgb.height)
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    resized = rgb.resize(size, Image.LANCZOS)
    canvas = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), "white")
    canvas.paste(resized, ((IMAGE_SIZE - size[0]) // 2, (IMAGE_SIZE - size[1]) // 2))
    return canvas


def clear_category_folders(root: Path) -> None:
    """Delete the category folders below root; top-level files (NOTICE.md, COPYING) stay."""
    root.mkdir(parents=True, exist_ok=True)
    for child in root.iterdir():
        if child.is_dir():
            shutil.rmtree(child)


def write_outputs(
    stamps: list[Stamp], held_out: set[tuple[str, str]], catalog_out: Path, examples_out: Path
) -> dict[str, list[int]]:
    """Write every stamp as a JPEG product shot; return {category: [n_catalog, n_examples]}."""
    clear_category_folders(catalog_out)
    clear_category_folders(examples_out)
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for stamp in stamps:
        is_query = (stamp.category, stamp.name) in held_out
        folder = (examples_out if is_query else catalog_out) / stamp.category
        folder.mkdir(exist_ok=True)
        product_shot(stamp.source).save(folder / f"{stamp.name}.jpg", quality=JPEG_QUALITY)
        counts[stamp.category][int(is_query)] += 1
    return counts


def print_counts(counts: dict[str, list[int]]) -> None:
    print(f"{'category':<20} {'catalog':>7} {'examples':>8}")
    for category in dict.fromkeys(category for _, category in FOLDER_CATEGORIES):
        n_catalog, n_examples = counts.get(category, (0, 0))
        note = "  (every stamp excluded)" if category not in counts else ""
        print(f"{category:<20} {n_catalog:>7} {n_examples:>8}{note}")
    total_catalog = sum(c for c, _ in counts.values())
    total_examples = sum(e for _, e in counts.values())
    print(f"{'total':<20} {total_catalog:>7} {total_examples:>8}   ({len(counts)} categories)")


@contextmanager
def stamps_dir_from(args: argparse.Namespace) -> Iterator[Path]:
    """The stamps dir: given, or extracted from the .deb into a temporary folder."""
    if args.stamps_dir is not None:
        yield args.stamps_dir
        return
    with tempfile.TemporaryDirectory(prefix="tuxpaint-stamps-") as tmp:
        subprocess.run(["dpkg-deb", "-x", str(args.deb), tmp], check=True)
        yield Path(tmp) / STAMPS_IN_DEB


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--deb", type=Path, help="tuxpaint-stamps-default_*.deb to extract")
    source.add_argument("--stamps-dir", type=Path, help="an extracted usr/share/tuxpaint/stamps")
    parser.add_argument("--catalog-out", type=Path, default=Path("catalog"))
    parser.add_argument("--examples-out", type=Path, default=Path("examples"))
    parser.add_argument("--seed", type=int, default=0, help="picks the held-out query photos")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with stamps_dir_from(args) as stamps_dir:
        if not stamps_dir.is_dir():
            raise SystemExit(f"No stamps folder at {stamps_dir}")
        stamps = select_stamps(find_stamps(stamps_dir))
        held_out = held_out_names(stamps, args.seed)
        counts = write_outputs(stamps, held_out, args.catalog_out, args.examples_out)
    print_counts(counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
