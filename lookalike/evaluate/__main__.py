"""Measure retrieval quality of embeddings folders: Precision@K and its companions, optionally a report.

python -m lookalike.evaluate DIR [DIR ...] [--queries FOLDER] [--k 1 5 10] [--json FILE] [--report DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from lookalike.evaluate.scoring import Protocol, embed_query_folder, evaluate_query_set, query_set
from lookalike.index.store import load_index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lookalike.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
            from lookalike.evaluate.report import write_report

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
        args.json.write_text(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2), encoding="utf-8")
    if args.report:
        print(f"Report written to {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
