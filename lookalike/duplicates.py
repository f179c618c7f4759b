"""Report near-identical products of a catalog, from an image folder or an embeddings folder.

    python -m lookalike.duplicates catalog/ --threshold 0.96
    python -m lookalike.duplicates embeddings/efficientnet-lite0

DIR is an image folder (embedded with --model first) or an embeddings folder from build_index.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from lookalike.recommend.duplicates import DUPLICATE_SIMILARITY, DuplicateGroup, find_duplicate_groups


def catalog_embeddings(directory: Path, model: str) -> tuple[np.ndarray, list[str], list[str]]:
    """Embeddings, ids and labels of an embeddings folder, or of an image folder embedded now."""
    from lookalike.index.store import METADATA_FILE, load_index

    if (directory / METADATA_FILE).is_file():
        index = load_index(directory)
        return index.embeddings, index.ids, index.labels
    from lookalike.backbones.embedding import embed_images
    from lookalike.backbones.registry import load_backbone
    from lookalike.catalog import load_image_folder
    from lookalike.images import open_image

    catalog = load_image_folder(directory)
    backbone = load_backbone(model)
    embeddings = embed_images(backbone, [open_image(item.image) for item in catalog.items])
    return embeddings, [item.id for item in catalog.items], catalog.labels


def format_report(groups: list[DuplicateGroup], n_products: int, threshold: float) -> str:
    lines = [f"{len(groups)} group(s) of near-identical products among {n_products} (cosine >= {threshold}):"]
    for group in groups:
        members = ", ".join(f"{item_id} ({label})" for item_id, label in zip(group.ids, group.labels, strict=True))
        lines.append(f"  {group.similarity:.4f}  {members}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lookalike.duplicates", description=__doc__.split("\n")[0])
    parser.add_argument("directory", type=Path, help="an image folder (one sub-folder per category) or embeddings")
    parser.add_argument("--threshold", type=float, default=DUPLICATE_SIMILARITY, help="cosine similarity")
    parser.add_argument("--model", default="efficientnet-lite0", help="backbone for an image folder")
    args = parser.parse_args(argv)
    if not args.directory.is_dir():
        parser.error(f"{args.directory} is not a folder")
    try:
        embeddings, ids, labels = catalog_embeddings(args.directory, args.model)
        groups = find_duplicate_groups(embeddings, ids, labels, args.threshold)
    except ValueError as error:
        parser.error(str(error))
    print(format_report(groups, len(ids), args.threshold))
    return 0


if __name__ == "__main__":
    sys.exit(main())
