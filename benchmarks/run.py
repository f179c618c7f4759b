"""Embedding throughput, query latency and the app's cold start on this machine, naive vs optimised, in one run.

    python benchmarks/run.py [--quick] [--json FILE]

--quick: 24 images, catalogs of 10k and 50k. Full: 273 images, 10k, 100k and 1M.
Both measure the fp32 and the bf16 fast paths against the naive loop, bf16's retrieval agreement with fp32 on
the bundled catalog, one query's forward pass, and the app's cold start through HTTP.
The CPU may be shared: compare figures from the same run, not across runs, and quote the load average printed.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
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
    # Start the app once first, so the figure is a start-up on warm caches, not an export.
    cold_start: str = "warm"  # "warm", "cold" (whatever the cache holds), or "skip"
    # The synthetic catalog's shape: 1000 categories x 50 product lines unless a test shrinks it.
    clusters: dict[str, int] = field(default_factory=dict)


# Small sizes; the naive one-image-at-a-time loop and the app's two starts dominate it.
QUICK = BenchmarkPlan(n_images=24, sizes=(10_000, 50_000), n_queries=20)
COLD_START_TIMEOUT_S = 300
PER_IMAGE_KEYS = (
    "decode_ms",
    "resize_ms",
    "normalise_ms",
    "model_ms",
    "model_bf16_ms",
    "large_decode_ms",
    "large_draft_decode_ms",
)


@dataclass(frozen=True)
class BenchmarkFigures:
    embedding: EmbeddingFigures
    embed_ms: list[float]
    queries: list[QueryFigures]
    cold_start_s: float | None
    load_average: tuple[float, float, float]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def app_start_s(scratch: Path) -> float:
    """Seconds from `python app.py` to the first HTTP 200 of its page (serving the bundled indexes)."""
    port = _free_port()
    env = {
        **os.environ,
        "LOOKALIKE_EMBEDDINGS": str(REPO_ROOT / "embeddings"),
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_TEMP_DIR": str(scratch),
    }
    env.pop("GLIBC_TUNABLES", None)  # app.py sets it itself, with a restart: part of what is measured
    start = time.perf_counter()
    app = subprocess.Popen(
        [sys.executable, "app.py"], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        while not _answers(f"http://127.0.0.1:{port}/"):
            if app.poll() is not None:
                raise RuntimeError(f"app.py exited with {app.returncode}: {app.stderr.read().decode()[-2000:]}")
            if time.perf_counter() - start > COLD_START_TIMEOUT_S:
                raise RuntimeError(f"app.py did not answer within {COLD_START_TIMEOUT_S} s")
            time.sleep(0.02)
        return time.perf_counter() - start
    finally:
        app.terminate()
        app.wait(timeout=30)


def app_cold_start_s(warm_cache: bool) -> float:
    """`app_start_s`, after one untimed start when `warm_cache` (which exports and compiles each backbone)."""
    with tempfile.TemporaryDirectory() as scratch:
        if warm_cache:
            app_start_s(Path(scratch))
        return app_start_s(Path(scratch))


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
    return BenchmarkFigures(embedding, [float(ms) for ms in embed_ms], figures, cold_start, os.getloadavg())


def as_json(figures: BenchmarkFigures, quick: bool) -> dict:
    embedding, embed_ms = figures.embedding, figures.embed_ms
    return {
        "embed_naive_img_s": embedding.naive_img_s,
        "embed_fast_img_s": embedding.fast_img_s,
        "embed_speedup": embedding.speedup,
        "embed_fast_equals_naive": embedding.fast_equals_naive,
        "embed_bf16_img_s": embedding.bf16_img_s,
        "embed_bf16_speedup": embedding.bf16_speedup,
        "bf16_top10_overlap": embedding.bf16_top10_overlap,
        "bf16_p5_delta": embedding.bf16_p5_delta,
        "flop_bound_img_s": embedding.flop_bound_img_s,
        "bf16_flop_bound_img_s": embedding.bf16_flop_bound_img_s,
        "forward_p50_ms": embedding.forward_p50_ms,
        "cold_start_s": figures.cold_start_s,
        "per_image_ms": {key: getattr(embedding, key) for key in PER_IMAGE_KEYS},
        "embedding": {
            **asdict(embedding),
            "speedup": embedding.speedup,
            "bf16_speedup": embedding.bf16_speedup,
            "bf16_p5_delta": embedding.bf16_p5_delta,
        },
        "query_embed_p50_ms": float(sorted(embed_ms)[len(embed_ms) // 2]),
        "catalog_sizes": served_figures(figures.queries),
        "all_query_figures": [asdict(f) for f in figures.queries],
        "load_average": list(figures.load_average),
        "quick": quick,
    }


def print_embedding(e: EmbeddingFigures) -> None:
    print(f"Embedding {e.n_images} JPEG files (500x500) with {e.backbone}, end to end:")
    print(f"  naive (decode -> transformers processor -> torch, 1 at a time): {e.naive_img_s:7.1f} images/s")
    print(f"  fast fp32 ({e.fast_inference}): {e.fast_img_s:7.1f} images/s = {e.speedup:.2f}x")
    print(f"  fast bf16 ({e.bf16_inference}): {e.bf16_img_s:7.1f} images/s = {e.bf16_speedup:.2f}x")
    print(
        f"  FLOP-bound limits (model only, no decoding; depthwise convolutions run below peak): "
        f"fp32 {e.flop_bound_img_s:.0f}, bf16 {e.bf16_flop_bound_img_s:.0f} images/s "
        f"({e.gflop_per_image:.3f} GFLOP/image at {e.matmul_gflop_s:.0f} / {e.bf16_matmul_gflop_s:.0f} GFLOP/s matmul)"
    )
    equal = "equal to" if e.fast_equals_naive else "NOT equal to"
    print(
        f"  fp32 embeddings {equal} the naive loop's to 1e-5 (max |difference| {e.max_abs_difference:.1e}); "
        f"P@5 naive {e.naive_precision_at_k:.4f} vs fast {e.fast_precision_at_k:.4f}"
    )
    print(
        f"  bf16 vs fp32 on the bundled catalog ({e.agreement_n_items} items, leave-one-out): "
        f"P@5 {e.fp32_catalog_precision_at_k:.4f} -> {e.bf16_catalog_precision_at_k:.4f} "
        f"(delta {e.bf16_p5_delta:+.4f}), top-10 overlap {e.bf16_top10_overlap:.3f}"
    )
    print(
        f"  per image: decode {e.decode_ms:.2f} ms, resize {e.resize_ms:.2f} ms, normalise {e.normalise_ms:.2f} ms "
        f"(one thread each; the normalising runs in the model's graph on OpenVINO); "
        f"model {e.model_ms:.2f} ms fp32, {e.model_bf16_ms:.2f} ms bf16 (batch 32, all threads)"
    )
    print(
        f"  a 4000x3000 JPEG: decode {e.large_decode_ms:.1f} ms in full, {e.large_draft_decode_ms:.1f} ms draft-decoded"
    )
    print(f"  one query's batch-1 forward pass ({e.serving_inference}): p50 {e.forward_p50_ms:.2f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="24 images, catalogs of 10k and 50k")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    measured = measure(QUICK if args.quick else BenchmarkPlan())
    embed_ms, figures = measured.embed_ms, measured.queries
    print_embedding(measured.embedding)

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
        print(f"\nApp cold start, warm caches (python app.py -> first HTTP 200): {measured.cold_start_s:.1f} s")
    print("Load average (1, 5, 15 min) at the end of this run: " + ", ".join(f"{v:.2f}" for v in measured.load_average))

    if args.json:
        args.json.write_text(json.dumps(as_json(measured, args.quick), indent=2), encoding="utf-8")
        print(f"Wrote {args.json}")
    return 0


if __name__ == "__main__":
    reexec_with_fast_malloc()
    sys.exit(main())
