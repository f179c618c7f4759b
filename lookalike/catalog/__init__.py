"""Catalogs: where products come from (bundled, image folder, product feed, Hub), their schema, the split."""

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
    IMAGE_SUFFIXES,
    REPO_ROOT,
    CatalogSource,
    catalog_from_dataset,
    load_catalog,
    load_hub_dataset,
    load_image_folder,
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
    "load_catalog",
    "load_hub_dataset",
    "load_image_folder",
    "product_arrays",
    "product_columns",
    "stratified_split",
]
