"""Measure retrieval quality of an embeddings dataset: Precision@K and its companions.

python -m lookalike.evaluate DIR [--queries FOLDER] [--k 1 5 10] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np

from .embedding_store import EmbeddingIndex, load_index
from .metrics import map_at_k, mean_similarity_at_k, precision_at_k, recall_at_k
from .search import SearchResults, top_k


class Protocol(StrEnum):
    SPLIT = "split"  # the test split queries the train split
    LEAVE_ONE_OUT = "leave-one-out"  # every item queries all the others


@dataclass(frozen=True)
class Evaluation:
    """Retrieval figures of one model on one query set; K dicts are keyed by str(K)."""

    model: str
    n_catalog: int
    n_queries: int
    precision_at_k: dict[str, float]
    mean_similarity_at_k: dict[str, float]
    recall_at_k: dict[str, float]
    map_at_k: dict[str, float]
    per_category: dict[str, dict[str, dict[str, float]]]


def evaluate_embeddings(
    model: str,
    catalog: np.ndarray,
    catalog_labels: Sequence[str],
    queries: np.ndarray,
    query_labels: Sequence[str],
    ks: Sequence[int] = (1, 5, 10),
    exclude_same_row: bool = False,
) -> Evaluation:
    """Score each query's top-K catalog results. With `exclude_same_row`, query i is catalog row i
    (leave-one-out) and is never retrieved for itself."""
    if not len(queries):
        raise ValueError("no queries to evaluate")
    exclude = [[row] for row in range(len(queries))] if exclude_same_row else None
    results = top_k(catalog, queries, max(ks), exclude=exclude)
    return score_results(model, results, catalog_labels, catalog_labels, query_labels, ks, exclude_same_row)


def score_results(
    model: str,
    results: SearchResults,
    row_labels: Sequence[str],
    catalog_labels: Sequence[str],
    query_labels: Sequence[str],
    ks: Sequence[int] = (1, 5, 10),
    exclude_same_row: bool = False,
) -> Evaluation:
    """The figures of search results already made: `row_labels` names the rows `results` point at,
    `catalog_labels` is the searched catalog (it decides how many relevant items each query has)."""
    catalog_labels, query_labels = np.asarray(catalog_labels), np.asarray(query_labels)
    retrieved = np.asarray(row_labels)[results.indices]
    counts = {label: int((catalog_labels == label).sum()) for label in set(query_labels)}
    n_relevant = np.array([counts[label] - int(exclude_same_row) for label in query_labels])

    def figures(rows: np.ndarray) -> dict[str, dict[str, float]]:
        return {
            "precision_at_k": {str(k): precision_at_k(retrieved[rows], query_labels[rows], k) for k in ks},
            "mean_similarity_at_k": {str(k): mean_similarity_at_k(results.scores[rows], k) for k in ks},
            "recall_at_k": {str(k): recall_at_k(retrieved[rows], query_labels[rows], k) for k in ks},
            "map_at_k": {str(k): map_at_k(retrieved[rows], query_labels[rows], k, n_relevant[rows]) for k in ks},
        }

    overall = figures(np.arange(len(query_labels)))
    per_category = {label: figures(np.flatnonzero(query_labels == label)) for label in sorted(set(query_labels))}
    return Evaluation(
        model=model, n_catalog=len(catalog_labels), n_queries=len(query_labels), per_category=per_category, **overall
    )


@dataclass(frozen=True)
class QuerySet:
    """Which index rows form the catalog, and the queries (embeddings, labels) that search it."""

    catalog_rows: np.ndarray
    embeddings: np.ndarray
    labels: np.ndarray
    query_rows: np.ndarray | None  # index rows of the queries, when they come from the index
    leave_one_out: bool = False


def query_set(index: EmbeddingIndex, protocol: Protocol = Protocol.SPLIT) -> QuerySet:
    """The split stored in the index (test queries train), or every item against all others."""
    labels = np.asarray(index.labels)
    if protocol is Protocol.LEAVE_ONE_OUT:
        rows = np.arange(len(index))
        return QuerySet(rows, index.embeddings, labels, rows, leave_one_out=True)
    splits = np.asarray(index.splits)
    train, test = np.flatnonzero(splits == "train"), np.flatnonzero(splits == "test")
    if not len(test):
        raise ValueError(f"{index.path} has no test split; use --protocol leave-one-out or --queries FOLDER")
    return QuerySet(train, index.embeddings[test], labels[test], test)


def embed_query_folder(index: EmbeddingIndex, queries_dir: Path) -> QuerySet:
    """Images of an image folder, embedded with the index's own backbone, to query the whole index."""
    from .backbones import load_backbone
    from .catalog import load_image_folder
    from .embedding import embed_images
    from .images import open_image

    backbone = load_backbone(index.metadata.model_id)
    index.metadata.check_matches(backbone.name, backbone.embedding_dim, backbone.preprocessing, backbone.fingerprint)
    folder = load_image_folder(queries_dir)
    embeddings = embed_images(backbone, [open_image(item.image) for item in folder.items])
    return QuerySet(np.arange(len(index)), embeddings, np.asarray(folder.labels), None)


def evaluate_query_set(index: EmbeddingIndex, queries: QuerySet, ks: Sequence[int] = (1, 5, 10)) -> Evaluation:
    """Search the index as the app does (its approximate index when it has one), then score."""
    if not len(queries.embeddings):
        raise ValueError("no queries to evaluate")
    labels = np.asarray(index.labels)
    allowed = np.zeros(len(index), dtype=bool)
    allowed[queries.catalog_rows] = True
    exclude = [[row] for row in queries.query_rows] if queries.leave_one_out else None
    results = index.top_k(queries.embeddings, max(ks), exclude=exclude, allowed=allowed)
    return score_results(
        index.metadata.model_id,
        results,
        labels,
        labels[queries.catalog_rows],
        queries.labels,
        ks,
        exclude_same_row=queries.leave_one_out,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("indexes", type=Path, nargs="+", help="embeddings folder(s) written by build_index.py")
    parser.add_argument("--queries", type=Path, help="image folder whose images query the whole index")
    parser.add_argument("--protocol", choices=[p.value for p in Protocol], default=Protocol.SPLIT.value)
    parser.add_argument("--k", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file (a list for several DIRs)")
    parser.add_argument("--report", type=Path, help="write comparison figures and a Markdown summary here")
    args = parser.parse_args(argv)
    try:
        runs = []
        for path in args.indexes:
            index = load_index(path)
            queries = (
                embed_query_folder(index, args.queries) if args.queries else query_set(index, Protocol(args.protocol))
            )
            runs.append((index, queries))
        if args.report:
            from .report import write_report

            evaluations = write_report(runs, args.report, args.k)
        else:
            evaluations = [evaluate_query_set(index, queries, args.k) for index, queries in runs]
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for evaluation, (index, _) in zip(evaluations, runs, strict=True):
        print(
            f"{evaluation.model}: {evaluation.n_queries} queries against {evaluation.n_catalog} products "
            f"({index.search_method} search)"
        )
        for k in map(str, args.k):
            print(
                f"  K={k:>3}  P@K {evaluation.precision_at_k[k]:.3f}  R@K {evaluation.recall_at_k[k]:.3f}  "
                f"mAP@K {evaluation.map_at_k[k]:.3f}  mean similarity {evaluation.mean_similarity_at_k[k]:.3f}"
            )
    if args.json:
        payload = [asdict(e) for e in evaluations]
        args.json.write_text(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
    if args.report:
        print(f"Report written to {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
