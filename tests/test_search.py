"""Exact top-K agrees with a brute-force loop, for both metrics and with exclusions."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.backbones.embedding import l2_normalize
from lookalike.index.exact import Metric, RowFilter, top_k
from tests.tolerances import FLOAT32_DOT_TOLERANCE


def brute_force(catalog, query, k, metric, excluded=()):
    scored = []
    for index, vector in enumerate(catalog):
        if index in excluded:
            continue
        if metric == "cosine":
            scored.append((-float(np.dot(vector, query)), index))
        else:
            scored.append((float(np.sqrt(((vector - query) ** 2).sum())), index))
    scored.sort()
    return [index for _, index in scored[:k]], [abs(score) for score, _ in scored[:k]]


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_top_k_matches_a_brute_force_loop(metric):
    rng = np.random.default_rng(0)
    catalog = l2_normalize(rng.normal(size=(300, 16)))
    queries = l2_normalize(rng.normal(size=(20, 16)))
    exclude = [[int(i) for i in rng.choice(300, 3, replace=False)] for _ in range(20)]
    results = top_k(catalog, queries, 7, metric, RowFilter(exclude=exclude))
    for row, query in enumerate(queries):
        indices, scores = brute_force(catalog, query, 7, metric, set(exclude[row]))
        assert results.indices[row].tolist() == indices
        assert np.allclose(results.scores[row], scores, atol=1e-5)
        assert not set(results.indices[row]) & set(exclude[row])


def test_results_are_ordered_best_first():
    catalog = l2_normalize(np.random.default_rng(1).normal(size=(50, 8)))
    cosine = top_k(catalog, catalog[:3], 5, Metric.COSINE)
    euclid = top_k(catalog, catalog[:3], 5, Metric.EUCLIDEAN)
    assert (np.diff(cosine.scores, axis=1) <= 0).all()
    assert (np.diff(euclid.scores, axis=1) >= 0).all()
    assert cosine.indices[:, 0].tolist() == [0, 1, 2]  # each vector is its own nearest


@pytest.mark.parametrize("k", [0, 11])
def test_k_out_of_range_is_refused(k):
    catalog = l2_normalize(np.ones((10, 4)))
    with pytest.raises(ValueError, match="k must be"):
        top_k(catalog, catalog[:1], k)


def test_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="manhattan"):
        top_k(np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32)[:1], 1, "manhattan")


def test_many_queries_are_searched_in_bounded_blocks_with_the_same_answer(monkeypatch):
    from lookalike.index import exact

    rng = np.random.default_rng(0)
    catalog = rng.standard_normal((300, 16)).astype(np.float32)
    catalog /= np.linalg.norm(catalog, axis=1, keepdims=True)
    rows = RowFilter(np.arange(300) % 4 != 0, [[q] for q in range(40)])
    whole = top_k(catalog, catalog[:40], 5, rows=rows)
    monkeypatch.setattr(exact, "BLOCK_SIMILARITIES", 300 * 7)  # blocks of 7 queries
    blocked = top_k(catalog, catalog[:40], 5, rows=rows)
    # A block of 7 queries and all 40 go through different BLAS kernels (tests/tolerances.py), so the
    # scores agree to float32 rounding, not bit for bit; random rows have no ties that close, so the
    # ranking itself is the same.
    np.testing.assert_array_equal(blocked.indices, whole.indices)
    np.testing.assert_allclose(blocked.scores, whole.scores, rtol=0, atol=FLOAT32_DOT_TOLERANCE)


def test_excluding_a_row_the_filter_keeps_out_costs_no_place():
    catalog = np.eye(6, dtype=np.float32)
    allowed = np.array([True, True, False, True, False, False])
    rows = RowFilter(allowed, [[2, 2, 0]])  # row 2 is not allowed anyway, and listed twice
    assert rows.n_searchable(6) == 2
    assert sorted(top_k(catalog, catalog[:1], 2, rows=rows).indices[0].tolist()) == [1, 3]
