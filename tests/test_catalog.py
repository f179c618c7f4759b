"""Catalogs load from the bundled folder, any image folder, and datasets; the split is stratified."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import shutil
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


def test_a_dataset_keeps_its_other_columns_as_product_attributes(small_catalog_dir, tmp_path):
    dataset = _local_dataset(small_catalog_dir)
    dataset = dataset.add_column("brand", [f"brand-{i % 3}" for i in range(len(dataset))])
    dataset = dataset.add_column("price", [str(1.5 * i) for i in range(len(dataset))])
    dataset.save_to_disk(str(tmp_path))
    source = CatalogSource(str(tmp_path), image_column="photo", label_column="category", id_column="sku")
    item = load_catalog(source).items[2]
    assert item.product == {"brand": "brand-2", "price": 3.0}  # typed by the product schema
    only_brand = load_catalog(dataclasses.replace(source, keep_columns="brand"))
    assert only_brand.items[2].product == {"brand": "brand-2"}
    with pytest.raises(CatalogError, match="--keep-columns"):
        load_catalog(dataclasses.replace(source, keep_columns="colour"))


def test_an_image_folder_with_metadata_reads_like_datasets_imagefolder(small_catalog_dir, tmp_path):
    photos = sorted(small_catalog_dir.rglob("*.jpg"))[:6]
    for photo in photos:
        shutil.copy(photo, tmp_path / f"{photo.parent.name}-{photo.name}")
    rows = [
        {
            "file_name": f"{p.parent.name}-{p.name}",
            "product_id": f"P{n // 2}",
            "label": p.parent.name,
            "title": f"Product {n // 2}",
            "price": f"{10 + n}",
            "link": "javascript:alert(1)" if n == 0 else f"https://shop.example/p/{n // 2}",
        }
        for n, p in enumerate(photos)
    ]
    rows.append({**rows[0], "file_name": "missing.jpg", "product_id": "P9"})
    with open(tmp_path / "metadata.csv", "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    catalog = load_catalog(CatalogSource(str(tmp_path)))
    assert len(catalog.items) == 6 and [r.reason for r in catalog.rejected] == [
        "no image file 'missing.jpg' in the folder"
    ]
    assert [item.product_id for item in catalog.items] == ["P0", "P0", "P1", "P1", "P2", "P2"]
    assert "link" not in catalog.items[0].product and catalog.items[1].product["link"] == "https://shop.example/p/0"
    assert catalog.items[3].product["price"] == 13.0 and catalog.items[3].label == photos[3].parent.name
    # The same folder through datasets: the same attributes as columns.
    dataset = datasets.load_dataset("imagefolder", data_dir=str(tmp_path), split="train")
    assert set(dataset.column_names) == {"image", "product_id", "label", "title", "price", "link"}
