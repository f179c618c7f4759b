"""Street-to-shop: every way of finding the product in a shopper's photo, measured side by side.

    python benchmarks/street_to_shop.py [--scratch DIR] [--json benchmarks/street-to-shop.json]
                                        [--held-out-model DIR]

One run: the benchmark's query photos are written (`lookalike.evaluate.street_scenes`, test
backgrounds, 2 per product, seed 0), the bundled catalog is built with each backbone, and every
method is scored through the app's own search (`Recommender.search`, as `/recommend` runs it):

| method | what changes |
|---|---|
| whole photo | the baseline: the photo embedded as the catalog's packshots were |
| regions | the photo and a 3x3 grid of regions, a product scored by its best (`recommend.regions`) |
| Lite1, Lite2 | the bigger offline backbones |
| instance fine-tuned | `models/efficientnet-lite0-instance` (`lookalike.finetune.instances`, catalog protocol) |

Each gets R@1/5/10 and mAP@10 of the very product, category P@5 of the catalog's own leave-one-out
(the figure the app's category search lives by), and the median in-process time of one search.
Pooling made for instance retrieval (GeM, whitening learned on the catalog) is measured beside them
on the backbone's feature maps with exact search (`pooling_experiment`): it changes the catalog's
embeddings, so it would need its own builds, and it did not help.

`--held-out-model DIR` adds the held-out protocol (SOP's): a model trained with
`--protocol held-out` on half the products, scored on the photos of the other half only, against
the pre-trained backbone on the same photos.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from benchmarks.street_pooling import pooling_experiment
from lookalike.catalog import BUNDLED_CATALOG_DIR, REPO_ROOT, CatalogSource
from lookalike.evaluate.scoring import Protocol, evaluate_query_set, query_set
from lookalike.evaluate.street import evaluate_street, street_queries
from lookalike.evaluate.street_scenes import main as write_scenes
from lookalike.images import open_image
from lookalike.index.store import load_index
from lookalike.indexing.builder import BuildConfig, build_index
from lookalike.recommend.recommender import RecommendationRequest, Recommender
from lookalike.recommend.regions import QueryRegions

INSTANCE_MODEL = REPO_ROOT / "models" / "efficientnet-lite0-instance"
KS = (1, 5, 10)


def build(model: str, scratch: Path) -> Path:
    output = scratch / "builds" / Path(model).name
    if not (output / "lookalike.json").is_file():
        build_index(BuildConfig(source=CatalogSource(str(BUNDLED_CATALOG_DIR)), model=model, output=output), False)
    return output


def search_ms(recommender: Recommender, photos: list[Path], n: int = 40) -> float:
    """Median time of one search of a photo, in-process (decode, views, forward passes, search, fields)."""
    times = []
    for photo in photos[:n]:
        image = open_image(photo)
        started = time.perf_counter()
        recommender.search(RecommendationRequest(k=8), images=[image])
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times[2:])


def measure(name: str, build_dir: Path, queries, regions: QueryRegions | None) -> dict[str, object]:
    recommender = Recommender.from_path(build_dir, regions=regions)
    street = evaluate_street(recommender, queries, KS)
    index = load_index(build_dir)
    category = evaluate_query_set(index, query_set(index, Protocol.LEAVE_ONE_OUT), (5,))
    row = {
        "method": name,
        "backbone": Path(recommender.name).name,  # a model folder's name, not where this machine keeps it
        "regions": None if regions is None else {"scale": regions.scale, "grid": regions.grid},
        "n_queries": street.n_queries,
        "recall_at_k": street.recall_at_k,
        "map_at_10": street.map_at_k["10"],
        "street_category_p_at_5": street.precision_at_k["5"],
        "catalog_loo_p_at_5": category.precision_at_k["5"],
        "search_p50_ms_in_process": round(search_ms(recommender, [q.image for q in queries]), 1),
    }
    print(json.dumps(row), flush=True)
    return row


def held_out(model_dir: Path, scratch: Path, queries) -> list[dict[str, object]]:
    """The held-out protocol: photos of the products the model never trained on, baseline beside it."""
    record = json.loads((model_dir / "lookalike_training.json").read_text(encoding="utf-8"))
    trained = set(record["trained_products"])
    unseen = [q for q in queries if q.product_id not in trained]
    rows = []
    builds = [
        ("whole photo, pre-trained", build("efficientnet-lite0", scratch)),
        ("whole photo, instance fine-tuned on the other half", build(str(model_dir), scratch)),
    ]
    for name, build_dir in builds:
        street = evaluate_street(Recommender.from_path(build_dir), unseen, KS)
        rows.append(
            {"method": name, "protocol": "held-out", "n_queries": street.n_queries, "recall_at_k": street.recall_at_k}
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def recommend_through_http(scratch: Path, n: int = 50) -> dict[str, object]:
    """`python app.py` serving the bundled builds as a clean clone does: `/recommend` with the default
    build (no backbone named), p50/p95 of upload, answer and thumbnails, as benchmarks/scale_app.py
    measures a million products."""
    from benchmarks.hostile import started_app
    from benchmarks.scale_app import HttpClient, percentile
    from lookalike.app.service import SERVED_DEFAULTS
    from lookalike.catalog import EXAMPLES_DIR

    photos = sorted(EXAMPLES_DIR.glob("*/*.jpg"))
    scratch.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="app-", dir=scratch))
    with started_app(REPO_ROOT / "embeddings", folder, {}) as (url, _, _):
        client = HttpClient(url, SERVED_DEFAULTS[0])  # the default build, what the page starts with
        for photo in photos[:5]:
            client.search("recommend", photo)
        latencies = [client.search("recommend", photos[i % len(photos)])[0] for i in range(n)]
        client.close()
    return {
        "recommend_p50_ms": round(1000 * statistics.median(latencies)),
        "recommend_p95_ms": round(1000 * percentile(latencies, 0.95)),
        "n": n,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--scratch", type=Path, help="folder for the query photos and builds (default: a temporary one)"
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--held-out-model", type=Path, help="a model trained with --protocol held-out")
    parser.add_argument("--http-only", action="store_true", help="measure only /recommend through HTTP (273 products)")
    args = parser.parse_args(argv)
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="street-to-shop-"))
    if args.http_only:
        figures = recommend_through_http(scratch)
        print(json.dumps(figures))
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
        return 0
    folder = scratch / "queries"
    if not (folder / "metadata.csv").is_file():
        write_scenes(["--output", str(folder)])
    queries = street_queries(folder)
    regions = QueryRegions()
    methods = [
        ("whole photo (baseline)", "efficientnet-lite0", None),
        ("regions", "efficientnet-lite0", regions),
        ("whole photo", "efficientnet-lite1", None),
        ("whole photo", "efficientnet-lite2", None),
        ("regions", "efficientnet-lite2", regions),
    ]
    if (INSTANCE_MODEL / "config.json").is_file():
        methods += [
            ("instance fine-tuned", str(INSTANCE_MODEL), None),
            ("instance fine-tuned + regions", str(INSTANCE_MODEL), regions),
        ]
    rows = [measure(name, build(model, scratch), queries, method_regions) for name, model, method_regions in methods]
    pooling = pooling_experiment(build("efficientnet-lite0", scratch), queries)
    extra = held_out(args.held_out_model, scratch, queries) if args.held_out_model else []
    result = {
        "queries": {
            "folder": "python -m lookalike.evaluate.street_scenes (test backgrounds, 2 per product, seed 0)",
            "n": len(queries),
        },
        "methods": rows,
        "pooling_experiment": pooling,
        "held_out_protocol": extra,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
