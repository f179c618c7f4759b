"""Turn Debian's Fashion-MNIST (`apt-get install dataset-fashion-mnist`) into a `datasets` dataset.

    python scripts/prepare_fashion_mnist.py --output data/fashion-mnist [--train-per-class N --test-per-class M]

The result keeps the official split in a `split` column; build it with
`python build_index.py data/fashion-mnist --split-column split`. The per-class options take a
seeded stratified subset, so that a full evaluation fits a 2-core CPU's time budget.
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np

DEFAULT_SOURCE = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format): big-endian header with dimensions, then uint8 data."""
    data = gzip.decompress(path.read_bytes())
    n_dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(n_dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * n_dims).reshape(shape)


def stratified_subset(labels: np.ndarray, per_class: int | None, rng: np.random.Generator) -> np.ndarray:
    if per_class is None:
        return np.arange(len(labels))
    chosen = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in np.unique(labels)]
    return np.sort(np.concatenate(chosen))


def build_dataset(source: Path, train_per_class: int | None, test_per_class: int | None, seed: int):
    import datasets

    rng = np.random.default_rng(seed)
    columns: dict[str, list] = {"id": [], "image": [], "label": [], "split": []}
    for split, prefix, per_class in [("train", "train", train_per_class), ("test", "t10k", test_per_class)]:
        images = read_idx(source / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(source / f"{prefix}-labels-idx1-ubyte.gz")
        for index in stratified_subset(labels, per_class, rng):
            columns["id"].append(f"{split}-{index}")
            columns["image"].append(images[index])
            columns["label"].append(int(labels[index]))
            columns["split"].append(split)
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=CLASS_NAMES),
            "split": datasets.Value("string"),
        }
    )
    return datasets.Dataset.from_dict(columns, features=features)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--output", type=Path, default=Path("data/fashion-mnist"))
    parser.add_argument("--train-per-class", type=int, help="keep N train images per class (default: all 6,000)")
    parser.add_argument("--test-per-class", type=int, help="keep M test images per class (default: all 1,000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.source.is_dir():
        raise SystemExit(f"No Fashion-MNIST at {args.source}: apt-get install dataset-fashion-mnist")
    dataset = build_dataset(args.source, args.train_per_class, args.test_per_class, args.seed)
    dataset.save_to_disk(str(args.output))
    print(f"Wrote {len(dataset):,} images to {args.output}")


if __name__ == "__main__":
    main()
