"""Convert build folders of the old layout (`save_to_disk` Arrow files) to the Hub layout, vectors unchanged.

    python -m lookalike.index.legacy embeddings/efficientnet-lite0 [more folders...] [--license gpl-2.0]

Each folder is rewritten in place (atomically): the same rows, the same float32 vectors, the same
metadata; nothing is embedded again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pyarrow as pa

from lookalike.index.neighbours import PRECOMPUTED
from lookalike.index.store import BLOCK_ROWS, METADATA_FILE, IndexMetadata, LegacyLayoutError, is_legacy_layout
from lookalike.index.writer import IndexWriter


def convert_legacy(path: str | Path, output: str | Path | None = None, licence: str = "other") -> Path:
    """Rewrite an old-layout folder into the Hub layout at `output` (default: in place)."""
    import datasets

    path = Path(path)
    if not is_legacy_layout(path):
        raise LegacyLayoutError(f"{path} is not a build folder of the old layout (no state.json, or data/ exists)")
    metadata = IndexMetadata.from_json((path / METADATA_FILE).read_text(encoding="utf-8"))
    table = datasets.load_from_disk(str(path)).data.table  # memory-mapped Arrow: read block by block
    if "content_hash" not in table.column_names:  # built before hashes were stored: never reused, still served
        table = table.append_column("content_hash", pa.nulls(table.num_rows, pa.string()))
    writer = IndexWriter(Path(output or path), table.num_rows, metadata.embedding_dim)
    for batch in table.to_batches(max_chunksize=BLOCK_ROWS):
        writer.write(pa.Table.from_batches([batch]))
    return writer.finish(metadata, licence, neighbours=PRECOMPUTED)  # what a build of today writes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--license", default="other", help="the catalog photos' licence, for the dataset card")
    args = parser.parse_args(argv)
    for folder in args.folders:
        try:
            print(f"Converted {convert_legacy(folder, licence=args.license)}")
        except (LegacyLayoutError, OSError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
