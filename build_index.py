"""Embed a catalog of product images and write the build folder the app serves.

    python build_index.py [SOURCE] --model efficientnet-lite0 --output embeddings/efficientnet-lite0

SOURCE is a shop's product feed (Merchant Center .tsv/.csv/.txt or RSS/Atom .xml, images fetched from
their URLs into a download cache), an image folder (one sub-folder per category, or photos listed in a
metadata.csv), a Hub dataset id, or omitted for the bundled catalog. The output folder is a Hub
dataset repository as it will be pushed: README.md (the dataset card), data/*.parquet (id, label,
split, thumbnail, embedding, content hash, the products' columns: title, price, link, ...),
lookalike.json and, for large catalogs, ann.faiss. `--push-to-hub USER/name` uploads it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lookalike.backbones.registry import available_backbones
from lookalike.catalog.download import DownloadConfig
from lookalike.cli import add_catalog_options, add_options, catalog_source, option_values
from lookalike.indexing.builder import BuildConfig, build_index
from lookalike.indexing.ray_engine import RayConfig
from lookalike.runtime import reexec_with_fast_malloc

# BuildConfig fields that are options as they are; their defaults and help live in the dataclass.
BUILD_OPTIONS = (
    "batch_size",
    "chunk_size",
    "inference",
    "precision",
    "decode_workers",
    "test_fraction",
    "split_seed",
    "ann",
    "engine",
    "licence",
    "neighbours",
)
RAY_OPTIONS = ("concurrency", "cpus_per_actor")
DOWNLOAD_OPTIONS = ("cache_dir", "workers", "read_timeout", "deadline", "max_bytes", "retries")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_catalog_options(parser, positional=True)
    parser.add_argument(
        "--model",
        default=BuildConfig.model,
        help=f"backbone: {', '.join(available_backbones())}, a Hub id or a saved model folder",
    )
    parser.add_argument("--output", type=Path, help="output folder (default: embeddings/<model>)")
    add_options(parser, BuildConfig, BUILD_OPTIONS)
    parser.add_argument(
        "--from-scratch",
        action="store_true",
        help="embed every image again instead of reusing unchanged rows of the index already at --output",
    )
    add_options(parser, RayConfig, RAY_OPTIONS, prefix="ray-")
    add_options(parser, DownloadConfig, DOWNLOAD_OPTIONS, prefix="download-")
    parser.add_argument(
        "--push-to-hub",
        metavar="REPO_ID",
        help="then upload the output folder as the Hub dataset REPO_ID "
        "(the same as: hf upload REPO_ID DIR --repo-type dataset)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = BuildConfig(
        source=catalog_source(args),
        model=args.model,
        output=args.output or Path("embeddings") / Path(args.model).name,
        incremental=not args.from_scratch,
        ray=RayConfig(**option_values(args, RAY_OPTIONS, prefix="ray-")),
        download=DownloadConfig(**option_values(args, DOWNLOAD_OPTIONS, prefix="download-")),
        **option_values(args, BUILD_OPTIONS),
    )
    try:
        report = build_index(config)
    except (ValueError, OSError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Indexed {report.n_indexed} images into {report.output}", end="")
    print(f" ({report.n_resumed} resumed from an interrupted run)" if report.n_resumed else "")
    reused = f", reused {report.n_reused} unchanged from the previous build" if report.n_reused else ""
    print(f"Embedded {report.n_embedded} images{reused}; search: {report.search}")
    counts = report.downloads
    if counts.downloaded or counts.revalidated or counts.failed or counts.stale:
        print(
            f"Images by URL: {counts.downloaded} downloaded, {counts.revalidated} unchanged since the last build "
            f"(not downloaded again), {counts.stale} from the cache (server unreachable), {counts.failed} failed"
        )
    if report.rejected:
        print(f"Left out {len(report.rejected)} rows of the source:")
        for row in report.rejected:
            print(f"  {row.row}: {row.reason}")
    if report.skipped:
        print(f"Skipped {len(report.skipped)} unreadable images:")
        for skipped in report.skipped:
            print(f"  {skipped.id}: {skipped.reason}")
    if args.push_to_hub:
        from lookalike.hub import push_exit_code
        from lookalike.index.store import push_index_to_hub

        return push_exit_code(lambda: push_index_to_hub(report.output, args.push_to_hub))
    return 0


if __name__ == "__main__":
    reexec_with_fast_malloc()
    sys.exit(main())
