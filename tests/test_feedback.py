"""Set queries and Rocchio feedback: hand-worked vectors, then the bundled catalog's real embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.catalog import REPO_ROOT
from lookalike.index.store import load_index
from lookalike.recommend.feedback import RocchioWeights, combine_set, rocchio


def test_set_query_is_the_unit_mean_direction():
    query = combine_set(np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert query == pytest.approx(np.array([1, 1]) / np.sqrt(2))


def test_set_query_refuses_nothing_and_products_that_cancel_out():
    with pytest.raises(ValueError, match="at least one"):
        combine_set(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="nothing in common"):
        combine_set(np.array([[1.0, 0.0], [-1.0, 0.0]]))


def test_rocchio_moves_towards_liked_and_away_from_disliked():
    query, liked, disliked = np.array([1.0, 0.0, 0.0]), np.array([[0.0, 1.0, 0.0]]), np.array([[0.0, 0.0, 1.0]])
    moved = rocchio(query, more_like=liked, less_like=disliked)
    assert np.linalg.norm(moved) == pytest.approx(1.0)
    assert moved @ liked[0] > 0 > moved @ disliked[0]
    with pytest.raises(ValueError, match="non-negative"):
        RocchioWeights(less_like=-1)


def test_rocchio_steers_real_results_away_from_the_products_marked_not_wanted():
    """Every bundled product as a query; its top 3 marked "less like this".

    Compared with only hiding those 3, Rocchio's next top 10 are measurably further from them
    (measured: mean cosine to their centroid 0.561 -> 0.497, lower for 96 % of queries).
    """
    embeddings = load_index(REPO_ROOT / "embeddings" / "efficientnet-lite0").embeddings

    def top_10(query, hidden):
        scores = embeddings @ query
        scores[hidden] = -np.inf
        return np.argsort(-scores)[:10]

    hidden_only, steered = [], []
    for row, query in enumerate(embeddings):
        disliked = top_10(query, [row])[:3]
        centroid = combine_set(embeddings[disliked])
        hidden = [row, *disliked]
        hidden_only.append(embeddings[top_10(query, hidden)] @ centroid)
        steered.append(embeddings[top_10(rocchio(query, less_like=embeddings[disliked]), hidden)] @ centroid)
    hidden_only, steered = np.mean(hidden_only, axis=1), np.mean(steered, axis=1)
    assert steered.mean() < hidden_only.mean() - 0.04
    assert np.mean(steered < hidden_only + 1e-9) > 0.9
