"""Measure retrieval quality of embeddings folders: Precision@K and its companions, optionally a report.

python -m lookalike.evaluate DIR [DIR ...] [--queries FOLDER] [--label-column brand] [--k 1 5 10]
                             [--json FILE] [--report DIR]

A hit is a result of the query's category: its value in --label-column (default: label). Rows without
a value there neither query nor count as hits. A query never gets back its own product group (its other
photos, its variants). Where products have several photos, instance Recall@K is reported too: does a
photo find its own product's other photos among the first K?

A query folder whose metadata.csv names each photo's product (file_name, product_id, as
`python -m lookalike.evaluate.street_scenes` writes one) is a street-to-shop benchmark: every photo is
searched as the app searches an upload, and the very product is its target (see `street`).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from lookalike.evaluate.scoring import Evaluation, Protocol, embed_query_folder, evaluate_query_set, query_set
from lookalike.evaluate.street import StreetFigures, evaluate_street, is_street_folder, street_queries
from lookalike.index.store import load_index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lookalike.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("indexes", type=Path, nargs="+", help="embeddings folder(s) written by build_index.py")
    parser.add_argument("--queries", type=Path, help="image folder whose images query the whole index")
    parser.add_argument("--protocol", choices=[p.value for p in Protocol], default=Protocol.SPLIT.value)
    parser.add_argument(
        "--label-column",
        default="label",
        help="the column whose value a hit shares with its query: label (default), brand, color, ...",
    )
    parser.add_argument("--k", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file (a list for several DIRs)")
    parser.add_argument("--report", type=Path, help="write comparison figures and a Markdown summary here")
    args = parser.parse_args(argv)
    if args.queries and args.label_column != "label":
        parser.error("--label-column needs the build's own rows as queries: a query folder's images have only a label")
    if args.queries and is_street_folder(args.queries):
        return street_main(args.indexes, args.queries, args.k, args.json, args.report)
    try:
        runs = []
        for path in args.indexes:
            index = load_index(path)
            if args.queries:
                queries = embed_query_folder(index, args.queries)
            else:
                queries = query_set(index, Protocol(args.protocol), label_column=args.label_column)
            runs.append((index, queries))
        if args.report:
            from lookalike.evaluate.report import write_report

            evaluations = write_report(runs, args.report, args.k)
        else:
            evaluations = [evaluate_query_set(index, queries, args.k) for index, queries in runs]
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for evaluation, (index, _) in zip(evaluations, runs, strict=True):
        print_evaluation(evaluation, index.search_method, args.k)
    if args.json:
        payload = [asdict(e) for e in evaluations]
        args.json.write_text(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2), encoding="utf-8")
    if args.report:
        print(f"Report written to {args.report}")
    return 0


def print_evaluation(evaluation: Evaluation, search_method: str, ks: list[int]) -> None:
    """The figures of one build, as the command prints them."""
    by = "" if evaluation.label_column == "label" else f", a hit sharing the query's {evaluation.label_column}"
    print(
        f"{evaluation.model}: {evaluation.n_queries} queries against {evaluation.n_catalog} catalog rows "
        f"({search_method} search{by})"
    )
    if evaluation.n_without_label:
        rows = "row" if evaluation.n_without_label == 1 else "rows"
        print(f"  {evaluation.n_without_label} {rows} without a {evaluation.label_column} left out of the queries")
    for k in map(str, ks):
        print(
            f"  K={k:>3}  P@K {evaluation.precision_at_k[k]:.3f}  R@K {evaluation.recall_at_k[k]:.3f}  "
            f"mAP@K {evaluation.map_at_k[k]:.3f}  mean similarity {evaluation.mean_similarity_at_k[k]:.3f}"
        )
    if evaluation.instance_recall_at_k is not None:
        print(f"  instance: {evaluation.n_instance_queries} photos query their product's other photos")
        for k in map(str, ks):
            print(
                f"  K={k:>3}  instance R@K {evaluation.instance_recall_at_k[k]:.3f}  "
                f"instance mAP@K {evaluation.instance_map_at_k[k]:.3f}"
            )


def street_main(indexes: list[Path], folder: Path, ks: list[int], json_path: Path | None, report: Path | None) -> int:
    """Each build's served search against the street-to-shop photos of `folder`."""
    from lookalike.recommend.recommender import Recommender

    try:
        queries = street_queries(folder)
        figures = []
        for path in indexes:
            recommender = Recommender.from_path(path)
            street = evaluate_street(recommender, queries, ks)
            figures.append({"model": recommender.name, **asdict(street)})
            print_street(recommender.name, street, ks)
            if report:
                from lookalike.evaluate.plots import street_grid

                report.mkdir(parents=True, exist_ok=True)
                name = recommender.name.replace("/", "_")

                def thumbnail_of(product_id: str, recommender=recommender):
                    return recommender.index.dataset[recommender.row_of(product_id)]["image"]

                grid = street_grid(street.outcomes, folder, thumbnail_of, report / f"street-{name}.png")
                print(f"  hit/miss grid: {grid}")
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if json_path:
        for entry in figures:
            entry.pop("outcomes")
        json_path.write_text(json.dumps(figures[0] if len(figures) == 1 else figures, indent=2), encoding="utf-8")
    return 0


def print_street(model: str, street: StreetFigures, ks: list[int]) -> None:
    unreadable = f", {street.n_unreadable} unreadable left out" if street.n_unreadable else ""
    print(f"{model}: {street.n_queries} shoppers' photos, each searched for its very product{unreadable}")
    for k in map(str, ks):
        category = f"  category P@K {street.precision_at_k[k]:.3f}" if street.precision_at_k else ""
        print(f"  K={k:>3}  R@K {street.recall_at_k[k]:.3f}  mAP@K {street.map_at_k[k]:.3f}{category}")


if __name__ == "__main__":
    sys.exit(main())
