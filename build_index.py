"""Embed a catalog of product images and write the embeddings dataset the app serves.

    python build_index.py [SOURCE] --model efficientnet-lite0 --output embeddings/efficientnet-lite0

SOURCE is an image folder (one sub-folder per category), a Hub dataset id, or omitted for the
bundled catalog.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lookalike.backbones.inference import InferenceKind, Precision
from lookalike.backbones.registry import DEFAULT_BACKBONE, available_backbones
from lookalike.build.builder import BuildConfig, Engine, build_index
from lookalike.build.ray_engine import RayConfig
from lookalike.catalog import CatalogSource
from lookalike.index.ann import ANN_MIN_ITEMS, AnnMode
from lookalike.runtime import reexec_with_fast_malloc


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", nargs="?", help="image folder or Hub dataset id (default: bundled catalog)")
    parser.add_argument(
        "--model",
        default=DEFAULT_BACKBONE,
        help=f"backbone: {', '.join(available_backbones())}, a Hub id or a saved model folder",
    )
    parser.add_argument("--output", type=Path, help="output folder (default: embeddings/<model>)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=BuildConfig.chunk_size,
        help="images per checkpoint: a build that is killed and rerun redoes at most this many",
    )
    parser.add_argument(
        "--inference",
        choices=[kind.value for kind in InferenceKind],
        default=InferenceKind.AUTO.value,
        help="what runs the model: auto = the fastest installed runtime with PyTorch's embeddings "
        "(OpenVINO, then ONNX Runtime, then PyTorch)",
    )
    parser.add_argument(
        "--precision",
        choices=[precision.value for precision in Precision],
        default=Precision.FP32.value,
        help="bf16 about doubles the model's speed on CPUs with native bfloat16 (AVX-512 BF16, AMX); its "
        "neighbours differ slightly from fp32's (benchmarks/run.py prints by how much). Recorded in the metadata",
    )
    parser.add_argument(
        "--decode-workers",
        type=int,
        default=BuildConfig().decode_workers,
        help="threads decoding images during inference (default: one per core)",
    )
    parser.add_argument("--image-column", default="image", help="image column of a Hub dataset")
    parser.add_argument("--label-column", default="label", help="category column of a Hub dataset")
    parser.add_argument("--id-column", help="id column of a Hub dataset (default: row number)")
    parser.add_argument("--hub-split", default="train", help="which split of a Hub dataset to read")
    parser.add_argument("--split-column", help="column holding an official 'train'/'test' split to keep")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="share of each category kept for test")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/test split")
    parser.add_argument(
        "--ann",
        choices=[mode.value for mode in AnnMode],
        default=AnnMode.AUTO.value,
        help=f"approximate index (FAISS IVF-SQ8) beside the embeddings: auto = from {ANN_MIN_ITEMS:,} items up",
    )
    parser.add_argument(
        "--from-scratch",
        action="store_true",
        help="embed every image again instead of reusing unchanged rows of the index already at --output",
    )
    parser.add_argument(
        "--engine",
        choices=[engine.value for engine in Engine],
        default=Engine.LOCAL.value,
        help="where images are embedded: this process, or Ray Data actors (pip install -r requirements-scale.txt; "
        "a cluster through RAY_ADDRESS, else a local Ray instance)",
    )
    parser.add_argument("--ray-concurrency", type=int, default=RayConfig.concurrency, help="Ray actors, one model each")
    parser.add_argument("--ray-cpus-per-actor", type=int, default=RayConfig.cpus_per_actor)
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="also publish the embeddings as a Hub dataset")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    output = args.output or Path("embeddings") / Path(args.model).name
    config = BuildConfig(
        source=CatalogSource(
            args.source, args.image_column, args.label_column, args.id_column, args.hub_split, args.split_column
        ),
        model=args.model,
        output=output,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        inference=args.inference,
        precision=args.precision,
        decode_workers=args.decode_workers,
        test_fraction=args.test_fraction,
        split_seed=args.seed,
        ann=args.ann,
        incremental=not args.from_scratch,
        engine=args.engine,
        ray=RayConfig(concurrency=args.ray_concurrency, cpus_per_actor=args.ray_cpus_per_actor),
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
