"""The evaluation CLI agrees with a direct recomputation from the stored embeddings."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from lookalike.catalog import CatalogSource
from lookalike.evaluate import __main__ as evaluate
from lookalike.evaluate.saved_reports import FIGURES, RESULTS_FILE, latest_report
from lookalike.index.store import load_index
from lookalike.indexing.builder import BuildConfig, build_index


def direct_precision(embeddings, labels, catalog_mask, query_mask, k, leave_one_out=False):
    catalog, catalog_labels = embeddings[catalog_mask], labels[catalog_mask]
    hits = []
    for position, query in enumerate(embeddings[query_mask]):
        similarities = catalog @ query
        if leave_one_out:
            similarities[position] = -np.inf
        best = np.argsort(-similarities, kind="stable")[:k]
        hits.append(np.mean(catalog_labels[best] == labels[query_mask][position]))
    return float(np.mean(hits))


def test_split_protocol_json_matches_direct_recomputation(small_index_dir, tmp_path):
    out = tmp_path / "eval.json"
    assert evaluate.main([str(small_index_dir), "--k", "1", "5", "--json", str(out)]) == 0
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert set(figures) >= {"model", "n_catalog", "n_queries", "precision_at_k", "mean_similarity_at_k"}
    assert set(figures) >= {"recall_at_k", "map_at_k", "per_category"}
    index = load_index(small_index_dir)
    labels, splits = np.asarray(index.labels), np.asarray(index.splits)
    for k in (1, 5):
        expected = direct_precision(index.embeddings, labels, splits == "train", splits == "test", k)
        assert abs(figures["precision_at_k"][str(k)] - expected) < 1e-6
    assert figures["n_queries"] == int((splits == "test").sum())


def test_leave_one_out_beats_the_colour_histogram(small_catalog_dir, small_index_dir, tmp_path):
    histogram = build_index(
        BuildConfig(source=CatalogSource(str(small_catalog_dir)), model="color-histogram", output=tmp_path / "hist"),
        show_progress=False,
    ).output
    out = tmp_path / "both.json"
    args = [str(small_index_dir), str(histogram), "--protocol", "leave-one-out", "--k", "5", "--json", str(out)]
    assert evaluate.main(args) == 0
    cnn, baseline = json.loads(out.read_text(encoding="utf-8"))
    index = load_index(small_index_dir)
    everything = np.ones(len(index), bool)
    direct = direct_precision(index.embeddings, np.asarray(index.labels), everything, everything, 5, True)
    assert abs(cnn["precision_at_k"]["5"] - direct) < 1e-6
    assert cnn["precision_at_k"]["5"] > baseline["precision_at_k"]["5"] + 0.15


def test_query_folder_protocol_embeds_with_the_index_backbone(small_index_dir, tmp_path):
    from lookalike.catalog import EXAMPLES_DIR
    from tests.conftest import SMALL_CATEGORIES

    queries = tmp_path / "queries"
    for category in SMALL_CATEGORIES:
        (queries / category).mkdir(parents=True)
        for photo in (EXAMPLES_DIR / category).glob("*.jpg"):
            (queries / category / photo.name).write_bytes(photo.read_bytes())
    out = tmp_path / "q.json"
    assert evaluate.main([str(small_index_dir), "--queries", str(queries), "--k", "3", "--json", str(out)]) == 0
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert figures["n_catalog"] == 24 and figures["precision_at_k"]["3"] > 0.6


@pytest.mark.slow
def test_report_writes_readable_figures(small_index_dir, tmp_path):
    assert evaluate.main([str(small_index_dir), "--k", "1", "3", "--report", str(tmp_path / "report")]) == 0
    for name in ["precision_at_k", "per_category_precision", "hit_miss_similarity", "example_queries", "embedding_map"]:
        assert (tmp_path / "report" / f"{name}.png").stat().st_size > 10_000
    assert "| `efficientnet-lite0` |" in (tmp_path / "report" / "summary.md").read_text(encoding="utf-8")


def test_app_finds_the_latest_report_of_a_model(small_index_dir, tmp_path):
    for name in ["older", "newer"]:
        assert evaluate.main([str(small_index_dir), "--k", "1", "3", "--report", str(tmp_path / name)]) == 0
    os.utime(tmp_path / "older" / RESULTS_FILE, (0, 0))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / RESULTS_FILE).write_text("{not json", encoding="utf-8")
    report = latest_report(tmp_path, "efficientnet-lite0")
    assert report.path == tmp_path / "newer"
    assert "| `efficientnet-lite0` |" in report.summary
    assert {path.name for path, _ in report.figures} == set(FIGURES)
    assert latest_report(tmp_path, "mobilenet-v2") is None
