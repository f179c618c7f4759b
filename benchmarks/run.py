"""Embedding throughput and query latency of Lookalike on this machine, naive vs optimised, in one run.

    python benchmarks/run.py [--quick] [--json FILE]

--quick (under a minute): 24 images, catalogs of 10k and 50k, no app start-up. Full: 273 images, 10k, 100k
and 1M, and the app's cold start.
The CPU may be shared: compare figures from the same run, not across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # run as a script from anywhere, like build_index.py

from embedding_speed import EmbeddingFigures, measure_embedding  # noqa: E402
from query_speed import ClusteredEmbeddings, QueryFigures, measure_queries  # noqa: E402

from lookalike.index.search import ANN_MIN_ITEMS  # noqa: E402
from lookalike.runtime import reexec_with_fast_malloc  # noqa: E402

RECALL_TARGET = 0.95


@dataclass(frozen=True)
class BenchmarkPlan:
    """What one run measures. The defaults are the full run; `QUICK` is --quick."""

    n_images: int = 273
    sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    n_queries: int = 100
    # Warm the ONNX export cache with one start first, so the figure is a start-up, not an export.
    cold_start: str = "warm"  # "warm", "cold" (whatever the cache holds), or "skip"
    # The synthetic catalog's shape: 1000 categories x 50 product lines unless a test shrinks it.
    clusters: dict[str, int] = field(default_factory=dict)


# Sized to finish within a minute even on a shared machine: the naive one-image-at-a-time loop and
# the app's start-up dominated the earlier quick run (2 min 24 s at load average 8 on 2 cores).
QUICK = BenchmarkPlan(n_images=24, sizes=(10_000, 50_000), n_queries=20, cold_start="skip")


@dataclass(frozen=True)
class BenchmarkFigures:
    embedding: EmbeddingFigures
    embed_ms: list[float]
    queries: list[QueryFigures]
    cold_start_s: float | None


def app_cold_start_s(warm_cache: bool) -> float:
    """Seconds for a fresh interpreter to import app.py: load every bundled index and model, build the UI."""
    env = {**os.environ, "LOOKALIKE_EMBEDDINGS": str(REPO_ROOT / "embeddings")}
    command = [sys.executable, "-c", "import app"]
    if warm_cache:  # a first start exports each backbone to ONNX once (~1-2 s each)
        subprocess.run(command, cwd=REPO_ROOT, env=env, check=True, capture_output=True)
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO_ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def served_figures(figures) -> dict:
    """Per size, what the app would serve: exact below ANN_MIN_ITEMS, else the fastest ANN setting
    that reaches the recall target."""
    served = {}
    for n in sorted({f.n_items for f in figures}):
        exact = next(f for f in figures if f.n_items == n and f.method == "exact")
        good_ann = [f for f in figures if f.n_items == n and f.method != "exact" and f.recall_at_10 >= RECALL_TARGET]
        choice = min(good_ann, key=lambda f: f.query_p50_ms) if n >= ANN_MIN_ITEMS and good_ann else exact
        served[str(n)] = asdict(choice)
    return served


def measure(plan: BenchmarkPlan) -> BenchmarkFigures:
    embedding = measure_embedding(plan.n_images)
    embed_ms, figures = measure_queries(list(plan.sizes), plan.n_queries, ClusteredEmbeddings(**plan.clusters))
    cold_start = None if plan.cold_start == "skip" else app_cold_start_s(warm_cache=plan.cold_start == "warm")
    return BenchmarkFigures(embedding, [float(ms) for ms in embed_ms], figures, cold_start)


def as_json(figures: BenchmarkFigures, quick: bool) -> dict:
    embedding, embed_ms = figures.embedding, figures.embed_ms
    return {
        "embed_naive_img_s": embedding.naive_img_s,
        "embed_fast_img_s": embedding.fast_img_s,
        "embed_speedup": embedding.speedup,
        "flop_bound_img_s": embedding.flop_bound_img_s,
        "embedding": {**asdict(embedding), "speedup": embedding.speedup},
        "query_embed_p50_ms": float(sorted(embed_ms)[len(embed_ms) // 2]),
        "catalog_sizes": served_figures(figures.queries),
        "all_query_figures": [asdict(f) for f in figures.queries],
        "app_cold_start_s": figures.cold_start_s,
        "quick": quick,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    measured = measure(QUICK if args.quick else BenchmarkPlan())
    embedding, embed_ms, figures = measured.embedding, measured.embed_ms, measured.queries
    print(f"Embedding {embedding.n_images} JPEG files (500x500) with {embedding.backbone}, end to end:")
    print(f"  naive (decode -> transformers processor -> torch, 1 at a time): {embedding.naive_img_s:7.1f} images/s")
    print(f"  fast  ({embedding.fast_inference}): {embedding.fast_img_s:7.1f} images/s")
    print(
        f"  speed-up {embedding.speedup:.2f}x; FLOP-bound limit {embedding.flop_bound_img_s:.0f} images/s "
        f"({embedding.gflop_per_image:.3f} GFLOP/image at {embedding.matmul_gflop_s:.0f} GFLOP/s fp32 matmul)"
    )
    print(
        f"  P@5 naive {embedding.naive_precision_at_k:.4f} vs fast {embedding.fast_precision_at_k:.4f}; "
        f"max |difference| of unit embeddings {embedding.max_abs_difference:.1e}"
    )

    print(
        f"\nOne query = photo bytes -> preprocess -> forward pass (p50 {sorted(embed_ms)[len(embed_ms) // 2]:.1f} ms) "
        "-> top-10, on clustered synthetic 1280-d embeddings:"
    )
    print(
        f"  {'items':>9} {'method':<18} {'p50 ms':>7} {'p95 ms':>7} {'search p50':>10} {'recall@10':>9} "
        f"{'bytes/item':>10} {'build s':>7}"
    )
    for f in figures:
        print(
            f"  {f.n_items:>9,} {f.method:<18} {f.query_p50_ms:7.1f} {f.query_p95_ms:7.1f} {f.search_p50_ms:10.2f} "
            f"{f.recall_at_10:9.3f} {f.bytes_per_item:10.0f} {f.build_s:7.1f}"
        )

    if measured.cold_start_s is not None:
        print(f"\nApp cold start (import app.py: the bundled indexes, models, UI): {measured.cold_start_s:.1f} s")

    if args.json:
        args.json.write_text(json.dumps(as_json(measured, args.quick), indent=2))
        print(f"Wrote {args.json}")
    return 0


if __name__ == "__main__":
    reexec_with_fast_malloc()
    sys.exit(main())
