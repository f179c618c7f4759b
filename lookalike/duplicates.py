"""Near-identical products in a catalog: find and report them, and collapse them in recommendations.

    python -m lookalike.duplicates catalog/ --threshold 0.96
    python -m lookalike.duplicates embeddings/efficientnet-lite0

DIR is an image folder (embedded with --model first) or an embeddings folder from build_index.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Measured on the bundled catalog (efficientnet-lite0): the closest two different products are
# coins of two denominations at 0.944, while a re-encoded or resized copy of a photo scores above
# 0.99 and two crops of one photo 0.93-0.99. 0.96 flags copies without merging distinct products.
DUPLICATE_SIMILARITY = 0.96


@dataclass(frozen=True)
class DuplicateGroup:
    """Products whose photos are near-identical; `similarity` is the closest pair's cosine."""

    ids: tuple[str, ...]
    labels: tuple[str, ...]
    similarity: float


def find_duplicate_groups(
    embeddings: np.ndarray, ids: Sequence[str], labels: Sequence[str], threshold: float = DUPLICATE_SIMILARITY
) -> list[DuplicateGroup]:
    """Groups of products linked by pairs at cosine >= threshold (transitively), most similar first."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    similarities = embeddings @ embeddings.T
    first, second = np.nonzero(np.triu(similarities >= threshold, k=1))
    parent = list(range(len(ids)))

    def root(row: int) -> int:
        while parent[row] != row:
            parent[row] = parent[parent[row]]
            row = parent[row]
        return row

    for a, b in zip(first.tolist(), second.tolist(), strict=True):
        parent[root(a)] = root(b)
    members: dict[int, list[int]] = {}
    for row in sorted(set(first.tolist()) | set(second.tolist())):
        members.setdefault(root(row), []).append(row)
    groups = [
        DuplicateGroup(
            ids=tuple(ids[row] for row in rows),
            labels=tuple(labels[row] for row in rows),
            similarity=float(similarities[np.ix_(rows, rows)][np.triu_indices(len(rows), k=1)].max()),
        )
        for rows in members.values()
    ]
    return sorted(groups, key=lambda group: -group.similarity)


def collapse_near_duplicates(
    embeddings: np.ndarray, ranked_rows: Sequence[int], threshold: float = DUPLICATE_SIMILARITY
) -> list[tuple[int, list[int]]]:
    """Walk a ranking best first; a row near-identical to one already kept is folded into it.

    Returns (kept row, rows folded into it) in ranking order.

    >>> unit = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> collapse_near_duplicates(unit, [0, 1, 2])
    [(0, [1]), (2, [])]
    """
    kept: list[tuple[int, list[int]]] = []
    for row in ranked_rows:
        if kept:
            similarities = embeddings[[k for k, _ in kept]] @ embeddings[row]
            closest = int(np.argmax(similarities))
            if similarities[closest] >= threshold:
                kept[closest][1].append(int(row))
                continue
        kept.append((int(row), []))
    return kept


def catalog_embeddings(directory: Path, model: str) -> tuple[np.ndarray, list[str], list[str]]:
    """Embeddings, ids and labels of an embeddings folder, or of an image folder embedded now."""
    from .embedding_store import METADATA_FILE, load_index

    if (directory / METADATA_FILE).is_file():
        index = load_index(directory)
        return index.embeddings, index.ids, index.labels
    from .backbones import load_backbone
    from .catalog import load_image_folder
    from .embedding import embed_images
    from .images import open_image

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
