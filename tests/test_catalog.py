"""Catalogs load from the bundled folder, any image folder, and datasets; the split is stratified."""

from __future__ import annotations

import hashlib
from collections import Counter

import datasets
import pytest

from lookalike.catalog import (
    BUNDLED_CATALOG_DIR,
    EXAMPLES_DIR,
    CatalogError,
    CatalogSource,
    load_catalog,
    load_image_folder,
    stratified_split,
)
from tests.conftest import SMALL_CATEGORIES


def test_bundled_catalog_is_the_default():
    catalog = load_catalog(CatalogSource())
    counts = Counter(catalog.labels)
    assert catalog.source == str(BUNDLED_CATALOG_DIR)
    assert len(counts) >= 12 and min(counts.values()) >= 5
    assert len({item.id for item in catalog.items}) == len(catalog.items)


def test_examples_are_not_in_the_catalog():
    digest = lambda path: hashlib.sha256(path.read_bytes()).hexdigest()  # noqa: E731
    catalog_hashes = {digest(p) for p in BUNDLED_CATALOG_DIR.rglob("*.jpg")}
    examples = load_image_folder(EXAMPLES_DIR)
    assert examples.items and not {digest(item.image) for item in examples.items} & catalog_hashes
    assert set(examples.labels) <= set(load_catalog(CatalogSource()).labels)


def test_image_folder_labels_come_from_sub_folders(small_catalog_dir):
    catalog = load_catalog(CatalogSource(str(small_catalog_dir)))
    assert Counter(catalog.labels) == dict.fromkeys(SMALL_CATEGORIES, 6)
    assert all(item.id.startswith(item.label + "/") for item in catalog.items)


def test_folder_without_categories_is_explained(tmp_path):
    with pytest.raises(CatalogError, match="imagefolder layout"):
        load_image_folder(tmp_path)


def _local_dataset(small_catalog_dir):
    """A datasets dataset with a ClassLabel column, standing in for a Hub dataset."""
    paths = sorted(str(p) for p in small_catalog_dir.rglob("*.jpg"))
    names = sorted(SMALL_CATEGORIES)
    features = datasets.Features(
        {"sku": datasets.Value("string"), "photo": datasets.Image(), "category": datasets.ClassLabel(names=names)}
    )
    rows = {
        "sku": [f"sku-{i}" for i in range(len(paths))],
        "photo": paths,
        "category": [names.index(p.split("/")[-2]) for p in paths],
    }
    return datasets.Dataset.from_dict(rows, features=features)


@pytest.mark.parametrize("layout", ["parquet", "save_to_disk"])
def test_datasets_load_with_named_columns(small_catalog_dir, tmp_path, layout):
    dataset = _local_dataset(small_catalog_dir)
    if layout == "parquet":  # the layout of a Hub dataset repo, read by load_dataset
        (tmp_path / "data").mkdir()
        dataset.to_parquet(str(tmp_path / "data" / "train-00000-of-00001.parquet"))
    else:
        dataset.save_to_disk(str(tmp_path))
    source = CatalogSource(str(tmp_path), image_column="photo", label_column="category", id_column="sku")
    catalog = load_catalog(source)
    assert len(catalog.items) == 24
    assert Counter(catalog.labels) == dict.fromkeys(SMALL_CATEGORIES, 6)
    assert catalog.items[0].id == "sku-0"


def test_dataset_with_wrong_column_names_says_which(small_catalog_dir, tmp_path):
    _local_dataset(small_catalog_dir).save_to_disk(str(tmp_path))
    with pytest.raises(CatalogError, match="--image-column"):
        load_catalog(CatalogSource(str(tmp_path)))


def test_unreachable_hub_dataset_is_explained():
    with pytest.raises(CatalogError, match="Could not load the dataset"):
        load_catalog(CatalogSource("ashraq/fashion-product-images-small"))


def test_split_is_stratified_and_seeded():
    labels = ["a"] * 50 + ["b"] * 10 + ["c"] * 1
    split = stratified_split(labels, test_fraction=0.2, seed=3)
    assert split == stratified_split(labels, test_fraction=0.2, seed=3)
    assert split != stratified_split(labels, test_fraction=0.2, seed=4)
    test_counts = Counter(label for label, s in zip(labels, split, strict=True) if s == "test")
    assert test_counts == {"a": 10, "b": 2}  # the single "c" stays in train


def test_bad_test_fraction_is_refused():
    with pytest.raises(ValueError, match="test_fraction"):
        stratified_split(["a", "b"], test_fraction=1.5)
