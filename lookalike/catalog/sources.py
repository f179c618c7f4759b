"""Where a catalog comes from (bundled, image folder, product feed, Hub dataset) and the seeded split."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lookalike.catalog.feed import is_feed, load_feed
from lookalike.catalog.hub_dataset import load_hub_dataset
from lookalike.catalog.image_folder import (  # noqa: F401 (IMAGE_SUFFIXES: re-exported)
    IMAGE_SUFFIXES,
    is_image_folder,
    load_image_folder,
    load_image_folder_with_metadata,
    metadata_file,
)
from lookalike.catalog.product import Catalog

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLED_CATALOG_DIR = REPO_ROOT / "catalog"
EXAMPLES_DIR = REPO_ROOT / "examples"


@dataclass(frozen=True)
class CatalogSource:
    """Where a catalog comes from. `location` None means the bundled catalog."""

    location: str | None = None
    image_column: str = field(default="image", metadata={"help": "image column of a Hub dataset"})
    label_column: str | None = field(
        default=None,
        metadata={
            "help": "the category column: a feed's attribute (default product_type; e.g. google_product_category, "
            "brand), a dataset's column (default label), a folder's metadata.csv column (default: the sub-folder)"
        },
    )
    id_column: str | None = field(
        default=None, metadata={"help": "id column of a dataset or metadata.csv (default: row number, file name)"}
    )
    keep_columns: str | None = field(
        default=None,
        metadata={
            "help": "comma-separated columns of a dataset or metadata.csv to keep as product attributes (default: all)"
        },
    )
    hub_split: str = field(default="train", metadata={"help": "which split of a Hub dataset to read"})
    # A column that already says "train"/"test" (an official split) replaces the seeded one.
    split_column: str | None = field(
        default=None, metadata={"help": "column holding an official 'train'/'test' split to keep"}
    )

    @property
    def kept_columns(self) -> tuple[str, ...] | None:
        """The product attributes to keep, None for all."""
        if self.keep_columns is None:
            return None
        return tuple(name.strip() for name in self.keep_columns.split(",") if name.strip())


def load_catalog(source: CatalogSource) -> Catalog:
    """Read a catalog: bundled (no location), a product feed, an image folder (with or without a
    metadata file), or a dataset through `load_dataset`."""
    if source.location is None:
        return load_image_folder(BUNDLED_CATALOG_DIR)
    path = Path(source.location)
    if is_feed(path):
        return load_feed(path, source.label_column)
    if path.is_dir() and metadata_file(path) is not None:
        return load_image_folder_with_metadata(path, source.label_column, source.id_column, source.kept_columns)
    if path.is_dir() and is_image_folder(path):
        return load_image_folder(path)
    return load_hub_dataset(source)


def stratified_split(labels: Sequence[str], test_fraction: float = 0.2, seed: int = 0) -> list[str]:
    """'train' or 'test' per item; each category keeps `test_fraction` of its items for test.

    Categories with a single item stay in train, so every test query has a correct answer.
    """
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    by_label: dict[str, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        by_label[label].append(index)
    rng = random.Random(seed)
    splits = ["train"] * len(labels)
    for label in sorted(by_label):
        members = by_label[label]
        n_test = min(len(members) - 1, round(len(members) * test_fraction))
        for index in rng.sample(members, n_test):
            splits[index] = "test"
    return splits
