"""A build with the approximate index forced on writes it, says so, and serves the same answers as exact search."""

from __future__ import annotations

import shutil
from dataclasses import asdict

import numpy as np
import pyarrow.parquet as pq
import pytest

import build_index
from lookalike.catalog import CatalogSource
from lookalike.evaluate.scoring import Protocol, evaluate_query_set, query_set
from lookalike.index.ann import ANN_FILE, AnnIndex
from lookalike.index.exact import ExactSearch
from lookalike.index.serving_cache import CACHE_DIR, EMBEDDINGS_FILE
from lookalike.index.store import METADATA_FILE, MissingIndexError, load_index
from lookalike.indexing.builder import BuildConfig
from lookalike.indexing.builder import build_index as build
from lookalike.recommend.recommender import Recommender


@pytest.fixture(scope="module")
def ann_index_dir(small_catalog_dir, small_index_dir, tmp_path_factory):
    """The small index rebuilt with --ann on; its rows are reused, so nothing is embedded again."""
    output = tmp_path_factory.mktemp("ann") / "efficientnet-lite0"
    shutil.copytree(small_index_dir, output)
    report = build(BuildConfig(source=CatalogSource(str(small_catalog_dir)), output=output, ann="on"), False)
    assert (report.n_reused, report.n_embedded, report.search) == (24, 0, "ivf-sq8")
    return output


@pytest.fixture(scope="module")
def exact_and_ann(small_index_dir, ann_index_dir) -> tuple[Recommender, Recommender]:
    return Recommender.from_path(small_index_dir), Recommender.from_path(ann_index_dir)


def test_the_build_writes_the_index_and_the_metadata_names_the_search(small_index_dir, ann_index_dir):
    assert (ann_index_dir / ANN_FILE).is_file() and not (small_index_dir / ANN_FILE).exists()
    approximate, exact = load_index(ann_index_dir), load_index(small_index_dir)
    assert (approximate.metadata.search.name, approximate.search_method) == ("ivf-sq8", "ivf-sq8")
    assert approximate.metadata.search.ann.n_probe >= 1 and len(approximate.search) == 24
    assert isinstance(approximate.search, AnnIndex) and isinstance(exact.search, ExactSearch)
    assert (exact.metadata.search.name, exact.search_method, exact.metadata.search.ann) == ("exact", "exact", None)
    np.testing.assert_array_equal(approximate.embeddings, exact.embeddings)


def test_embeddings_are_read_only_from_the_serving_cache(small_index_dir):
    index = load_index(small_index_dir)
    assert (small_index_dir / CACHE_DIR / EMBEDDINGS_FILE).is_file()
    assert not index.embeddings.flags.writeable  # a copy in memory at this size (served_matrix)
    stored = pq.read_table(small_index_dir / "data", columns=["embedding"]).column("embedding")
    np.testing.assert_array_equal(index.embeddings, np.asarray(stored.to_pylist(), dtype=np.float32))


def test_a_missing_or_stale_serving_cache_is_derived_again_from_the_parquet(small_index_dir, tmp_path):
    """A fresh clone or download has no cache; a folder whose shards changed must not serve old rows."""
    shutil.copytree(small_index_dir, tmp_path / "fresh", ignore=shutil.ignore_patterns(".cache"))
    index = load_index(tmp_path / "fresh")
    np.testing.assert_array_equal(index.embeddings, load_index(small_index_dir).embeddings)
    assert index.ids == load_index(small_index_dir).ids

    shard = next((tmp_path / "fresh" / "data").glob("*.parquet"))
    pq.write_table(pq.read_table(shard).slice(0, 10), shard)  # the shard now holds 10 rows
    index = load_index(tmp_path / "fresh")
    assert len(index) == len(index.dataset) == 10 and index.ids == load_index(small_index_dir).ids[:10]


def test_a_missing_ann_file_is_reported_with_the_fix(ann_index_dir, tmp_path):
    shutil.copytree(ann_index_dir, tmp_path / "broken")
    (tmp_path / "broken" / ANN_FILE).unlink()
    with pytest.raises(MissingIndexError, match=r"python build_index.py"):
        load_index(tmp_path / "broken")


def test_recommendations_through_the_ann_equal_exact_search(exact_and_ann, example_photo, small_catalog_dir):
    exact, approximate = exact_and_ann
    assert isinstance(approximate.index.search, AnnIndex) and isinstance(exact.index.search, ExactSearch)

    def same(a, b):
        assert [(r.id, r.label) for r in a] == [(r.id, r.label) for r in b]
        np.testing.assert_allclose([r.score for r in a], [r.score for r in b], atol=1e-5)

    for item_id in exact.index.ids[::5]:
        for metric in ("cosine", "euclidean"):
            same(
                approximate.recommend_for_item(item_id, k=10, metric=metric),
                exact.recommend_for_item(item_id, 10, metric),
            )
    same(approximate.recommend(example_photo, k=23), exact.recommend(example_photo, k=23))
    own_id = exact.index.ids[7]
    by_upload = approximate.recommend(small_catalog_dir / own_id, k=23)
    assert own_id not in {r.id for r in by_upload} and len(by_upload) == 23  # every other product, never itself


@pytest.mark.parametrize("protocol", list(Protocol))
def test_evaluation_searches_the_ann_and_matches_exact(small_index_dir, ann_index_dir, protocol):
    figures = []
    for path in (small_index_dir, ann_index_dir):
        index = load_index(path)
        figures.append(flatten(asdict(evaluate_query_set(index, query_set(index, protocol), ks=(1, 5)))))
    assert figures[0].keys() == figures[1].keys()
    for name, value in figures[0].items():  # the same hits; similarities summed in another order
        assert figures[1][name] == (pytest.approx(value, abs=1e-6) if isinstance(value, float) else value), name


def flatten(figures: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in figures.items():
        flat.update(flatten(value, f"{prefix}{key}/") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return flat


def test_cli_ann_switch(small_catalog_dir, tmp_path, capsys):
    output = tmp_path / "cli"
    args = [str(small_catalog_dir), "--model", "color-histogram", "--output", str(output)]
    assert build_index.main([*args, "--ann", "on"]) == 0
    assert "Embedded 24 images; search: ivf-sq8" in capsys.readouterr().out and (output / ANN_FILE).is_file()
    assert build_index.main([*args, "--ann", "off"]) == 0
    assert "Embedded 0 images, reused 24 unchanged from the previous build; search: exact" in capsys.readouterr().out
    assert not (output / ANN_FILE).exists() and '"method": "exact"' in (output / METADATA_FILE).read_text(
        encoding="utf-8"
    )
