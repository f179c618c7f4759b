"""The benchmark's quick path, run on tiny sizes, produces every figure the README quotes."""

from __future__ import annotations

import importlib
import json

import pytest

from lookalike.catalog import REPO_ROOT


@pytest.mark.slow
def test_quick_path_on_tiny_sizes_writes_every_figure(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO_ROOT / "benchmarks"))
    run = importlib.import_module("run")
    plan = run.BenchmarkPlan(
        n_images=8, sizes=(1_000, 2_000), n_queries=3, cold_start="skip", clusters={"n_clusters": 20}
    )
    result = json.loads(json.dumps(run.as_json(run.measure(plan), quick=True)))  # what --json writes
    assert {"embed_naive_img_s", "embed_fast_img_s", "embed_speedup", "flop_bound_img_s"} <= set(result)
    assert result["embed_speedup"] == pytest.approx(result["embed_fast_img_s"] / result["embed_naive_img_s"])
    assert result["embed_fast_equals_naive"] is True  # the fp32 fast path is exact, whatever its speed
    assert result["embed_bf16_speedup"] == pytest.approx(result["embed_bf16_img_s"] / result["embed_naive_img_s"])
    assert 0 <= result["bf16_top10_overlap"] <= 1 and -1 <= result["bf16_p5_delta"] <= 1
    assert result["bf16_flop_bound_img_s"] > 0 and result["forward_p50_ms"] > 0
    assert result["cold_start_s"] is None  # skipped by this plan
    breakdown = result["per_image_ms"]
    assert all(breakdown[key] > 0 for key in run.PER_IMAGE_KEYS)
    assert breakdown["large_draft_decode_ms"] < breakdown["large_decode_ms"]
    assert result["embedding"]["agreement_n_items"] == 273 and len(result["load_average"]) == 3
    assert result["embedding"]["n_images"] == 8 and result["flop_bound_img_s"] > 0
    assert set(result["catalog_sizes"]) == {"1000", "2000"}
    for served in result["catalog_sizes"].values():
        assert {"query_p50_ms", "query_p95_ms", "recall_at_10", "bytes_per_item"} <= set(served)
        assert 0 < served["query_p50_ms"] <= served["query_p95_ms"] and 0 <= served["recall_at_10"] <= 1
        assert served["method"] == "exact" and served["bytes_per_item"] == 4 * 1280  # below ANN_MIN_ITEMS
    methods = {figure["method"] for figure in result["all_query_figures"]}
    assert "exact" in methods and any(method.startswith("ivf-sq8") for method in methods)
