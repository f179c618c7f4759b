"""Read the evaluation reports written earlier (no Matplotlib needed): the app shows the latest one."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SUMMARY_FILE = "summary.md"


RESULTS_FILE = "results.json"


FIGURES = {
    "precision_at_k.png": "Precision@K against K, one line per backbone",
    "per_category_precision.png": "Precision@K per category",
    "hit_miss_similarity.png": "Similarity of hits and misses",
    "example_queries.png": "Example queries and their top K (green: same category)",
    "embedding_map.png": "The catalog embeddings in 2-D (t-SNE), coloured by category",
}


@dataclass(frozen=True)
class SavedReport:
    """A report folder written by `write_report`, as the app shows it."""

    path: Path
    summary: str
    figures: list[tuple[Path, str]]


def latest_report(reports_dir: Path, model_id: str) -> SavedReport | None:
    """The most recently written report under `reports_dir` that evaluates `model_id`, if any."""
    candidates = []
    for results in Path(reports_dir).glob(f"*/{RESULTS_FILE}"):
        try:
            models = [run["model"] for run in json.loads(results.read_text(encoding="utf-8"))]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a half-written or foreign folder is not a report
        if model_id in models:
            candidates.append((results.stat().st_mtime, results.parent))
    if not candidates:
        return None
    path = max(candidates)[1]
    summary = (path / SUMMARY_FILE).read_text(encoding="utf-8") if (path / SUMMARY_FILE).exists() else ""
    figures = [(path / name, caption) for name, caption in FIGURES.items() if (path / name).exists()]
    return SavedReport(path, summary, figures)
