"""Catalogs: where products come from (bundled, image folder, product feed, Hub), their schema, the split."""

from lookalike.catalog.feed import is_feed, load_feed
from lookalike.catalog.hub_dataset import catalog_from_dataset, load_hub_dataset
from lookalike.catalog.image_folder import IMAGE_SUFFIXES, load_image_folder, load_image_folder_with_metadata
from lookalike.catalog.product import (
    GROUP_ID,
    PRODUCT_COLUMNS,
    PRODUCT_ID,
    Catalog,
    CatalogError,
    CatalogItem,
    RejectedRow,
    product_arrays,
    product_columns,
)
from lookalike.catalog.sources import (
    BUNDLED_CATALOG_DIR,
    EXAMPLES_DIR,
    REPO_ROOT,
    CatalogSource,
    load_catalog,
    stratified_split,
)

__all__ = [
    "BUNDLED_CATALOG_DIR",
    "EXAMPLES_DIR",
    "GROUP_ID",
    "IMAGE_SUFFIXES",
    "PRODUCT_COLUMNS",
    "PRODUCT_ID",
    "REPO_ROOT",
    "Catalog",
    "CatalogError",
    "CatalogItem",
    "CatalogSource",
    "RejectedRow",
    "catalog_from_dataset",
    "is_feed",
    "load_catalog",
    "load_feed",
    "load_hub_dataset",
    "load_image_folder",
    "load_image_folder_with_metadata",
    "product_arrays",
    "product_columns",
    "stratified_split",
]
