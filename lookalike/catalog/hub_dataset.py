"""Hub datasets and local `datasets` folders as catalogs, read with `datasets.load_dataset`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lookalike.catalog.product import Catalog, CatalogError, CatalogItem, product_values

if TYPE_CHECKING:
    from lookalike.catalog.sources import CatalogSource


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
    """A `datasets.Dataset` as a catalog: its image, label, id and split columns, the rest as product attributes."""
    import datasets

    label_column = source.label_column or "label"
    wanted = [source.image_column, label_column, source.id_column, source.split_column, *(source.kept_columns or ())]
    missing = [column for column in wanted if column and column not in dataset.column_names]
    if missing:
        raise CatalogError(
            f"The dataset has no column {missing[0]!r}; its columns are {dataset.column_names}. "
            "Name them with --image-column, --label-column, --id-column, --split-column and --keep-columns."
        )
    # Decode ourselves so that one broken image is skipped, not fatal for the whole build.
    dataset = dataset.cast_column(source.image_column, datasets.Image(decode=False))
    label_feature = dataset.features[label_column]
    names = getattr(label_feature, "names", None)
    ids = dataset[source.id_column] if source.id_column else range(len(dataset))
    own = {source.image_column, label_column, source.id_column, source.split_column}
    kept = list(source.kept_columns or [name for name in dataset.column_names if name not in own])
    # The other columns travel with each product (title, price, ...), read a column at a time.
    attributes = list(zip(*(dataset[name] for name in kept), strict=True)) if kept else None
    items = []
    rows = zip(ids, dataset[source.image_column], dataset[label_column], strict=True)
    for position, (row_id, image, label) in enumerate(rows):
        data = image.get("bytes") or image.get("path")
        product = product_values(dict(zip(kept, attributes[position], strict=True))) if attributes else {}
        items.append(CatalogItem(str(row_id), names[label] if names else str(label), data, product))
    given_splits = [str(s) for s in dataset[source.split_column]] if source.split_column else None
    if given_splits and not set(given_splits) <= {"train", "test"}:
        raise CatalogError(f"Column {source.split_column!r} must hold 'train' or 'test', found {set(given_splits)}")
    return Catalog(source=str(source.location), items=items, given_splits=given_splits)
