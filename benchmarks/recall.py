"""Recall@10 of the served approximate index on a build's real embeddings, against exact search.

    python benchmarks/recall.py DIR [--queries 2000] [--json FILE]

DIR is any build folder (e.g. all 70,000 Fashion-MNIST images: `make recall-fashion-mnist`). The
IVF-SQ8 index is trained as a build trains it (sqrt(N) cells, the served AnnConfig) whatever the
folder's own search, and each n_probe is measured on catalog products as queries (never returned
to themselves), unfiltered and with a one-category filter. The served n_probe is marked.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from lookalike.index.ann import AnnConfig, AnnIndex, lists_for
from lookalike.index.exact import RowFilter, top_k
from lookalike.index.store import load_index
from lookalike.recommend.filters import CategoryColumn, CategoryFilter

K = 10
N_PROBES = (4, 8, 16, 32, 64)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of the true top-K that the approximate top-K holds, over all queries."""
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, truth, strict=True)]))


def measure(vectors: np.ndarray, labels, n_queries: int, seed: int = 0) -> dict[str, object]:
    served = AnnConfig()
    config = dataclasses.replace(served, n_lists=lists_for(len(vectors)))
    started = time.perf_counter()
    ann = AnnIndex.build(vectors, config)
    build_s = time.perf_counter() - started
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(vectors), min(n_queries, len(vectors)), replace=False))
    queries = np.asarray(vectors[rows], dtype=np.float32)
    itself = RowFilter(exclude=[[row] for row in rows])
    exact = top_k(vectors, queries, K, rows=itself)
    truth = exact.indices
    categories = CategoryColumn.of(labels)
    # Each query restricted to its own category (the app's "only these categories"), its truth found
    # category by category so the catalog is read once, not once per query.
    filtered_truth = [np.empty(0, dtype=np.int64)] * len(rows)
    filters: list[RowFilter | None] = [None] * len(rows)
    query_codes = categories.codes[rows]
    for code in np.unique(query_codes):
        positions = np.flatnonzero(query_codes == code)
        members = np.flatnonzero(categories.codes == code)
        k = min(K, len(members) - 1)
        if k < 1:
            continue
        own = [[int(np.searchsorted(members, rows[p]))] for p in positions]
        found = top_k(
            np.asarray(vectors[members], dtype=np.float32), queries[positions], k, rows=RowFilter(exclude=own)
        )
        allowed = CategoryFilter(only=(categories.names[code],)).allowed(categories)
        for position, truth_rows in zip(positions, found.indices, strict=True):
            filtered_truth[position] = members[truth_rows]
            filters[position] = RowFilter(allowed, [[int(rows[position])]])
    measured = [p for p, f in enumerate(filters) if f is not None]
    figures = []
    for n_probe in N_PROBES:
        ann.index.nprobe = min(n_probe, ann.index.nlist)
        started = time.perf_counter()
        found = ann.top_k(queries, K, rows=itself).indices
        per_query_ms = (time.perf_counter() - started) * 1000 / len(queries)
        filtered = [ann.top_k(queries[p], len(filtered_truth[p]), rows=filters[p]).indices[0] for p in measured]
        figures.append(
            {
                "n_probe": n_probe,
                "served": n_probe == served.n_probe,
                "recall_at_10": round(recall(found, truth), 4),
                "filtered_recall_at_10": round(recall(filtered, [filtered_truth[p] for p in measured]), 4),
                "search_ms_per_query": round(per_query_ms, 3),
            }
        )
    return {
        "n_items": len(vectors),
        "n_lists": int(ann.index.nlist),
        "n_queries": len(rows),
        "n_categories": len(categories.names),
        "mean_pair_cosine": round(float((queries @ np.asarray(vectors[rng.choice(len(vectors), 2000)]).T).mean()), 4),
        # How crowded the space is: IVF loses recall where the 10th neighbour is nearly as close as the 1st.
        "median_tenth_neighbour_cosine": round(float(np.median(exact.scores[:, K - 1])), 4),
        "ann_build_s": round(build_s, 1),
        "by_n_probe": figures,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("embeddings", type=Path, help="a build folder written by build_index.py or benchmarks/scale.py")
    parser.add_argument("--queries", type=int, default=2000, help="catalog products used as queries")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    index = load_index(args.embeddings)
    figures = {"embeddings": args.embeddings.name, "model": index.metadata.model_id}
    figures.update(measure(index.embeddings, index.labels, args.queries))
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
