"""Write the street-to-shop benchmark's background photographs from Debian's `opencv-doc` package.

    python scripts/fetch_backgrounds.py                     # apt-get download, then extract
    python scripts/fetch_backgrounds.py --deb opencv-doc_4.6.0+dfsg-12_all.deb

OpenCV's sample data holds real colour photographs of rooms, tables, shelves, streets and outdoor
places (Apache-2.0 AND BSD-3-Clause, as Debian's copyright file states for the whole source). The
photos named in `BACKGROUNDS` are scaled to at most 640 px and written as JPEGs into
`backgrounds/train/` and `backgrounds/test/`: the benchmark's query scenes use only the test ones,
fine-tuning composites only the train ones, so no scene a model trained on is ever measured.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

EXAMPLES_IN_DEB = Path("usr/share/doc/opencv-doc/examples")
MAX_SIDE = 640
JPEG_QUALITY = 90

# (path under the package's examples folder, split). Indoor and outdoor scenes on both sides;
# greyscale photos (the calibration shots, basketball1, box_in_scene) are left out: shoppers' are in colour.
BACKGROUNDS: list[tuple[str, str]] = [
    ("alphamat/input_images/plant.jpg", "test"),  # a plant on a shelf
    ("data/fruits.jpg", "test"),  # fruit on a table
    ("data/rubberwhale1.png", "test"),  # toys on a table, a lattice behind
    ("data/left.jpg", "test"),  # books on a desk
    ("text/scenetext01.jpg", "test"),  # a street corner
    ("text/scenetext04.jpg", "test"),  # a pub front
    ("text/scenetext06.jpg", "test"),  # a shop front
    ("data/leuvenA.jpg", "test"),  # an old street
    ("data/building.jpg", "test"),  # an office building
    ("hfs/data/001.jpg", "test"),  # a lake
    ("data/squirrel_cls.jpg", "test"),  # a tree in a garden
    ("data/licenseplate_motion.jpg", "test"),  # a car park
    ("data/messi5.jpg", "test"),  # a football pitch
    ("data/graf1.png", "test"),  # a painted wall
    ("data/stuff.jpg", "train"),  # objects on a desk
    ("data/rubberwhale2.png", "train"),
    ("data/right.jpg", "train"),
    ("data/aloeL.jpg", "train"),  # a plant on a table
    ("text/scenetext02.jpg", "train"),
    ("text/scenetext03.jpg", "train"),
    ("text/scenetext05.jpg", "train"),
    ("text/scenetext_segmented_word01.jpg", "train"),
    ("text/scenetext_segmented_word02.jpg", "train"),
    ("reg/home.png", "train"),
    ("data/leuvenB.jpg", "train"),
    ("data/aero1.jpg", "train"),
    ("data/aero3.jpg", "train"),
    ("hfs/data/000.jpg", "train"),
    ("hfs/data/002.jpg", "train"),
    ("data/butterfly.jpg", "train"),
]


def write_backgrounds(examples: Path, output: Path) -> int:
    for split in ("train", "test"):
        (output / split).mkdir(parents=True, exist_ok=True)
    for relative, split in BACKGROUNDS:
        image = Image.open(examples / relative).convert("RGB")
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        name = relative.replace("/", "-").rsplit(".", 1)[0] + ".jpg"
        image.save(output / split / name, quality=JPEG_QUALITY)
    return len(BACKGROUNDS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deb", type=Path, help="a downloaded opencv-doc .deb (default: apt-get download it)")
    parser.add_argument("--output", type=Path, default=Path("backgrounds"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        deb = args.deb
        if deb is None:
            subprocess.run(["apt-get", "download", "opencv-doc"], cwd=scratch, check=True)
            deb = next(Path(scratch).glob("opencv-doc_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), scratch], check=True)
        count = write_backgrounds(Path(scratch) / EXAMPLES_IN_DEB, args.output)
    print(f"{count} backgrounds written to {args.output}/train and {args.output}/test")
    return 0


if __name__ == "__main__":
    sys.exit(main())
