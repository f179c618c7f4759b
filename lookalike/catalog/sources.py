"""Where a catalog comes from (bundled, image folder, product feed, Hub dataset) and the seeded split."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lookalike.catalog.product import Catalog, CatalogError, CatalogItem

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLED_CATALOG_DIR = REPO_ROOT / "catalog"
EXAMPLES_DIR = REPO_ROOT / "examples"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


@dataclass(frozen=True)
class CatalogSource:
    """Where a catalog comes from. `location` None means the bundled catalog."""

    location: str | None = None
    image_column: str = field(default="image", metadata={"help": "image column of a Hub dataset"})
    label_column: str = field(default="label", metadata={"help": "category column of a Hub dataset"})
    id_column: str | None = field(default=None, metadata={"help": "id column of a Hub dataset (default: row number)"})
    hub_split: str = field(default="train", metadata={"help": "which split of a Hub dataset to read"})
    # A column that already says "train"/"test" (an official split) replaces the seeded one.
    split_column: str | None = field(
        default=None, metadata={"help": "column holding an official 'train'/'test' split to keep"}
    )


def load_catalog(source: CatalogSource) -> Catalog:
    """Read a catalog: bundled (no location), an image folder, or a dataset through `load_dataset`."""
    if source.location is None:
        return load_image_folder(BUNDLED_CATALOG_DIR)
    path = Path(source.location)
    if path.is_dir() and _is_image_folder(path):
        return load_image_folder(path)
    return load_hub_dataset(source)


def _is_image_folder(path: Path) -> bool:
    return any(
        child.is_dir() and any(f.suffix.lower() in IMAGE_SUFFIXES for f in child.iterdir())
        for child in path.iterdir()
        if not child.name.startswith(".")
    )


def load_image_folder(root: str | Path) -> Catalog:
    """An `imagefolder` layout: root/<category>/<image>; the id is the path below root."""
    root = Path(root)
    if not root.is_dir():
        raise CatalogError(f"No catalog folder at {root}.")
    items = [
        CatalogItem(id=file.relative_to(root).as_posix(), label=category.name, image=file)
        for category in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        for file in sorted(category.rglob("*"))
        if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not items:
        raise CatalogError(
            f"{root} holds no images in the imagefolder layout (one sub-folder per category, "
            "e.g. shoes/red-sneaker.jpg)."
        )
    return Catalog(source=str(root), items=items)


def load_hub_dataset(source: CatalogSource) -> Catalog:
    """A Hub dataset id (or a local dataset folder) read with `datasets.load_dataset`."""
    import datasets

    try:
        if Path(source.location, "state.json").is_file() or Path(source.location, "dataset_dict.json").is_file():
            dataset = datasets.load_from_disk(source.location)
            if isinstance(dataset, datasets.DatasetDict):
                dataset = dataset[source.hub_split]
        else:
            dataset = datasets.load_dataset(source.location, split=source.hub_split)
    except Exception as error:  # datasets raises many types: connection, missing, bad config
        raise CatalogError(
            f"Could not load the dataset {source.location!r}: {error}. Pass an image folder "
            "(one sub-folder per category), a Hub dataset id, or nothing for the bundled catalog."
        ) from error
    return catalog_from_dataset(dataset, source)


def catalog_from_dataset(dataset: Any, source: CatalogSource) -> Catalog:
    import datasets

    wanted = [source.image_column, source.label_column, source.id_column, source.split_column]
    missing = [column for column in wanted if column and column not in dataset.column_names]
    if missing:
        raise CatalogError(
            f"The dataset has no column {missing[0]!r}; its columns are {dataset.column_names}. "
            "Name them with --image-column, --label-column, --id-column and --split-column."
        )
    # Decode ourselves so that one broken image is skipped, not fatal for the whole build.
    dataset = dataset.cast_column(source.image_column, datasets.Image(decode=False))
    label_feature = dataset.features[source.label_column]
    names = getattr(label_feature, "names", None)
    ids = dataset[source.id_column] if source.id_column else range(len(dataset))
    items = []
    for row_id, image, label in zip(ids, dataset[source.image_column], dataset[source.label_column], strict=True):
        data = image.get("bytes") or image.get("path")
        items.append(CatalogItem(id=str(row_id), label=names[label] if names else str(label), image=data))
    given_splits = [str(s) for s in dataset[source.split_column]] if source.split_column else None
    if given_splits and not set(given_splits) <= {"train", "test"}:
        raise CatalogError(f"Column {source.split_column!r} must hold 'train' or 'test', found {set(given_splits)}")
    return Catalog(source=str(source.location), items=items, given_splits=given_splits)


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
