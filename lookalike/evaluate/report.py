"""A comparison report over several embeddings datasets: figures, a Markdown table, JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from lookalike.evaluate import plots
from lookalike.evaluate.groups import label_values
from lookalike.evaluate.metrics import has_label
from lookalike.evaluate.saved_reports import RESULTS_FILE, SUMMARY_FILE
from lookalike.evaluate.scoring import Evaluation, QuerySet, evaluate_query_set, search_query_set
from lookalike.index.store import EmbeddingIndex


def summary_table(evaluations: Sequence[Evaluation]) -> str:
    """A Markdown table with one row per model, best Precision@K first; instance columns when some build
    has products with several photos."""
    ks = sorted(evaluations[0].precision_at_k, key=int)
    with_instances = any(e.instance_recall_at_k is not None for e in evaluations)
    header = ["model", "catalog", "queries"] + [f"P@{k}" for k in ks] + [f"R@{k}" for k in ks]
    header += [f"mAP@{ks[-1]}", f"mean sim@{ks[-1]}"]
    if with_instances:
        header += ["instance queries"] + [f"instance R@{k}" for k in ks] + [f"instance mAP@{ks[-1]}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for e in sorted(evaluations, key=lambda e: -e.precision_at_k[ks[-1]]):
        cells = [f"`{e.model}`", f"{e.n_catalog:,}", f"{e.n_queries:,}"]
        cells += [f"{e.precision_at_k[k]:.3f}" for k in ks] + [f"{e.recall_at_k[k]:.3f}" for k in ks]
        cells += [f"{e.map_at_k[ks[-1]]:.3f}", f"{e.mean_similarity_at_k[ks[-1]]:.3f}"]
        if e.instance_recall_at_k is not None:
            cells += [f"{e.n_instance_queries:,}"] + [f"{e.instance_recall_at_k[k]:.3f}" for k in ks]
            cells += [f"{e.instance_map_at_k[ks[-1]]:.3f}"]
        elif with_instances:
            cells += ["–"] * (len(ks) + 2)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_notes(evaluations: Sequence[Evaluation], queries: QuerySet) -> str:
    """What the table's figures count: the category column, the queries left out, the instance queries."""
    column = evaluations[0].label_column
    notes = [f"Queries: {queries.labels.size:,}"]
    if column != "label":
        notes.append(f"a hit shares the query's `{column}`")
    if queries.n_without_label:
        rows = "row" if queries.n_without_label == 1 else "rows"
        notes.append(f"{queries.n_without_label:,} {rows} without a `{column}` left out of the queries")
    if any(e.instance_recall_at_k is not None for e in evaluations):
        notes.append("instance: each photo of a product with several photos queries every other row")
    return "; ".join(notes)


def write_report(
    runs: Sequence[tuple[EmbeddingIndex, QuerySet]],
    output: Path,
    ks: Sequence[int] = (1, 5, 10, 20),
    n_example_queries: int = 6,
    seed: int = 0,
) -> list[Evaluation]:
    """Evaluate each (index, queries) pair and write figures, summary.md and results.json."""
    output.mkdir(parents=True, exist_ok=True)
    evaluations = [evaluate_query_set(index, queries, ks) for index, queries in runs]
    plots.precision_curves(evaluations, output / "precision_at_k.png")
    middle_k = sorted(ks)[len(ks) // 2 - (len(ks) % 2 == 0)]
    plots.per_category_precision(evaluations, middle_k, output / "per_category_precision.png")
    best_index, best_queries = runs[int(np.argmax([e.precision_at_k[str(middle_k)] for e in evaluations]))]
    _model_figures(best_index, best_queries, middle_k, output, n_example_queries, seed)
    (output / RESULTS_FILE).write_text(json.dumps([asdict(e) for e in evaluations], indent=2), encoding="utf-8")
    (output / SUMMARY_FILE).write_text(
        f"{summary_table(evaluations)}\n\n{summary_notes(evaluations, runs[0][1])}; figures of the best model "
        f"(`{best_index.metadata.model_id}`) at K={middle_k}.\n",
        encoding="utf-8",
    )
    return evaluations


def _model_figures(index: EmbeddingIndex, queries: QuerySet, k: int, output: Path, n_examples: int, seed: int) -> None:
    labels = label_values(index.dataset.data.table, queries.label_column, str(index.path))
    catalog_rows = queries.catalog_rows
    results = search_query_set(index, queries, k)
    retrieved_rows = results.indices
    hits = labels[retrieved_rows] == queries.labels[:, None]
    # A row without a value is drawn under a name of its own, never one of the categories'.
    labels = np.where(has_label(labels), labels, f"(no {queries.label_column})").astype(str)
    model = index.metadata.model_id
    plots.hit_miss_similarities(results.scores[hits], results.scores[~hits], model, output / "hit_miss_similarity.png")
    plots.embedding_map(index.embeddings[catalog_rows], labels[catalog_rows], model, output / "embedding_map.png")
    if queries.query_rows is not None:
        chosen = np.random.default_rng(seed).choice(len(queries.labels), min(n_examples, len(queries.labels)), False)
        images = index.dataset.select(
            np.unique(np.concatenate([queries.query_rows[chosen], retrieved_rows[chosen].ravel()]))
        )
        thumbnail_of = dict(zip(images["id"], images["image"], strict=True))
        ids = np.asarray(index.ids)
        plots.query_grid(
            [thumbnail_of[ids[queries.query_rows[q]]] for q in chosen],
            [queries.labels[q] for q in chosen],
            [
                [
                    (thumbnail_of[ids[r]], labels[r], float(s))
                    for r, s in zip(retrieved_rows[q], results.scores[q], strict=True)
                ]
                for q in chosen
            ],
            output / "example_queries.png",
        )
