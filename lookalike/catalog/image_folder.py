"""Image folders: `root/<category>/<photo>`, or photos with a `metadata.csv` / `metadata.jsonl` beside them
(the `file_name` column of `datasets`' imagefolder, so `load_dataset("imagefolder", data_dir=root)` reads
the same folder with the same columns)."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from lookalike.catalog.product import PRODUCT_ID, Catalog, CatalogError, CatalogItem, RejectedRow, product_values

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
METADATA_FILES = ("metadata.csv", "metadata.jsonl")
FILE_NAME = "file_name"
OTHER_LABEL = "other"


def is_image_folder(path: Path) -> bool:
    return any(
        child.is_dir() and any(f.suffix.lower() in IMAGE_SUFFIXES for f in child.iterdir())
        for child in path.iterdir()
        if not child.name.startswith(".")
    )


def metadata_file(root: Path) -> Path | None:
    """The folder's metadata file (datasets' imagefolder convention), if it has one."""
    return next((root / name for name in METADATA_FILES if (root / name).is_file()), None)


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


def load_image_folder_with_metadata(
    root: str | Path,
    label_column: str | None = None,
    id_column: str | None = None,
    keep_columns: Sequence[str] | None = None,
) -> Catalog:
    """Photos listed in `metadata.csv` / `metadata.jsonl` by `file_name` (relative to the folder), each
    row's other columns its product's attributes (`product_id` ties several photos to one product).

    The label is `label_column` (default `label`) where the file has it, else the photo's sub-folder.
    A row whose file is missing or outside the folder is listed in `rejected`.
    """
    root = Path(root).resolve()
    path = metadata_file(root)
    if path is None:
        raise CatalogError(f"{root} has no {' or '.join(METADATA_FILES)}.")
    rows = _read_rows(path)
    columns = list(dict.fromkeys(name for row in rows for name in row))
    label_column = label_column or "label"
    for name, what in (
        (FILE_NAME, "file_name"),
        (id_column, "--id-column"),
        *((c, "--keep-columns") for c in keep_columns or ()),
    ):
        if name and name not in columns:
            raise CatalogError(f"{path.name} has no column {name!r} ({what}); its columns are {columns}.")
    own = {FILE_NAME, label_column, id_column}
    kept = list(keep_columns) if keep_columns is not None else [c for c in columns if c not in own]
    items, rejected, seen = [], [], set()
    for line, row in enumerate(rows, start=2):
        name = str(row.get(FILE_NAME) or "").strip()
        file = (root / name).resolve()
        if not name or not file.is_file() or not file.is_relative_to(root):
            rejected.append(RejectedRow(f"line {line}", f"no image file {name!r} in the folder"))
            continue
        item_id = str(row.get(id_column) or "").strip() if id_column else Path(name).as_posix()
        if not item_id or item_id in seen:
            rejected.append(RejectedRow(f"line {line}", f"missing or duplicate id {item_id!r}"))
            continue
        seen.add(item_id)
        label = str(row.get(label_column) or "").strip() or (file.parent.name if file.parent != root else OTHER_LABEL)
        product = product_values({c: row.get(c) for c in kept if c != PRODUCT_ID or row.get(c)})
        items.append(CatalogItem(item_id, label, file, product))
    if not items:
        raise CatalogError(f"{path} lists no readable image file (first problems: {rejected[:3]}).")
    return Catalog(source=str(root), items=items, rejected=rejected)


def _read_rows(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix == ".csv":
        return list(csv.DictReader(text.splitlines()))
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise CatalogError(f"{path.name} line {number} is not JSON: {error}.") from None
    return rows
