"""The approximate index returns the exact top-K on small catalogs and persists."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.index.ann import AnnConfig, AnnIndex
from lookalike.index.exact import RowFilter, top_k


def clustered_unit_vectors(n: int, dim: int = 64, n_clusters: int = 20, seed: int = 0) -> np.ndarray:
    """Points around a few centres, like real embeddings (uniform random vectors are a degenerate case)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim))
    points = centres[rng.integers(n_clusters, size=n)] + 0.5 * rng.standard_normal((n, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def catalog():
    return clustered_unit_vectors(3000)


def test_scanning_every_list_gives_the_exact_top_k(catalog):
    queries = clustered_unit_vectors(50, seed=1)
    ann = AnnIndex.build(catalog, AnnConfig(n_lists=16, n_probe=16))
    exact = top_k(catalog, queries, 10)
    approximate = ann.search(queries, 10)
    np.testing.assert_array_equal(approximate.indices, exact.indices)
    np.testing.assert_allclose(approximate.scores, exact.scores, atol=1e-5)


def test_without_reranking_recall_stays_high(catalog):
    queries = clustered_unit_vectors(50, seed=2)
    ann = AnnIndex.train(catalog, AnnConfig(n_lists=16, n_probe=4))
    ann.add_chunks(np.array_split(catalog, 3))
    found = ann.search(queries, 10).indices
    truth = top_k(catalog, queries, 10).indices
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)])
    assert recall >= 0.8
    assert ann.bytes_per_item < catalog.shape[1] * 4 / 2  # 8-bit codes: about a quarter of float32


def test_saved_index_loads_memory_mapped_with_the_same_results(catalog, tmp_path):
    ann = AnnIndex.build(catalog, AnnConfig(n_lists=8, n_probe=8))
    loaded = AnnIndex.load(ann.save(tmp_path / "ann.faiss"), ann.config, vectors=catalog)
    queries = catalog[:5]
    np.testing.assert_array_equal(loaded.search(queries, 3).indices, ann.search(queries, 3).indices)
    assert loaded.search(queries, 1).indices[:, 0].tolist() == [0, 1, 2, 3, 4]


def test_bad_arguments_are_rejected(catalog):
    with pytest.raises(ValueError):
        AnnConfig(n_probe=0)
    with pytest.raises(ValueError, match="k must be"):
        AnnIndex.build(catalog[:100], AnnConfig(n_lists=2)).search(catalog[:1], 101)


def test_top_k_with_exclusions_and_a_filter_equals_exact_search(catalog):
    queries = clustered_unit_vectors(20, seed=3)
    ann = AnnIndex.build(catalog, AnnConfig(n_lists=16, n_probe=16))
    exclude = [list(range(row, row + 5)) for row in range(20)]
    allowed = np.arange(len(catalog)) % 3 != 0
    for metric in ("cosine", "euclidean"):
        exact = top_k(catalog, queries, 10, metric, RowFilter(allowed, exclude))
        approximate = ann.top_k(queries, 10, metric, RowFilter(allowed, exclude))
        np.testing.assert_array_equal(approximate.indices, exact.indices)
        np.testing.assert_allclose(approximate.scores, exact.scores, atol=1e-5)


def test_top_k_still_returns_k_rows_when_the_probed_cells_hold_too_few(catalog):
    """One probed cell of 64 and a filter keeping 1 row in 100: the exact fallback fills the answer."""
    queries = clustered_unit_vectors(5, seed=4)
    ann = AnnIndex.build(catalog, AnnConfig(n_lists=64, n_probe=1))
    allowed = np.arange(len(catalog)) % 100 == 0
    found = ann.top_k(queries, 10, rows=RowFilter(allowed))
    assert found.indices.shape == (5, 10) and allowed[found.indices].all()
    np.testing.assert_array_equal(found.indices, top_k(catalog, queries, 10, rows=RowFilter(allowed)).indices)
    with pytest.raises(ValueError, match="k must be"):
        ann.top_k(queries, 31, rows=RowFilter(allowed))


@pytest.mark.parametrize("n_categories", [4, 40])
def test_a_category_filter_inside_a_probing_index_answers_like_exact_filtered_search(n_categories):
    """20,000 products, 128 cells of which 16 are scanned, categories spread over every cell (the
    hard case): a one-category search returns only that category and what exact search finds.
    4 categories (5,000 rows each) go through FAISS's selector with more cells probed; 40 (500 rows,
    fewer than 16 cells hold) are scanned exactly over their own rows."""
    catalog = clustered_unit_vectors(20_000, n_clusters=40, seed=5)
    labels = np.random.default_rng(6).integers(n_categories, size=len(catalog))
    ann = AnnIndex.build(catalog, AnnConfig(n_lists=128, n_probe=16, train_size=20_000))
    assert ann.index.nprobe < ann.index.nlist and ann.rows_probed == 2500
    queries = clustered_unit_vectors(50, n_clusters=40, seed=7)
    hits = 0
    for category in range(min(n_categories, 5)):
        allowed = labels == category
        rows = RowFilter(allowed, [[int(np.flatnonzero(allowed)[0])]] * len(queries))
        found = ann.top_k(queries, 10, rows=rows)
        truth = top_k(catalog, queries, 10, rows=rows)
        assert allowed[found.indices].all() and not (found.indices == rows.exclude[0][0]).any()
        hits += sum(len(set(a) & set(b)) for a, b in zip(found.indices, truth.indices, strict=True))
    assert hits / (min(n_categories, 5) * len(queries) * 10) >= 0.95


def test_the_exact_fallback_maps_exclusions_onto_the_allowed_rows(catalog):
    ann = AnnIndex.build(catalog, AnnConfig(n_lists=64, n_probe=1))
    allowed = np.arange(len(catalog)) % 50 == 0
    best = int(top_k(catalog, catalog[:1], 1, rows=RowFilter(allowed)).indices[0, 0])
    rows = RowFilter(allowed, [[best, 1]])  # row 1 is not allowed: excluding it changes nothing
    found = ann.top_k(catalog[:1], 5, rows=rows)
    np.testing.assert_array_equal(found.indices, top_k(catalog, catalog[:1], 5, rows=rows).indices)
    assert best not in found.indices
