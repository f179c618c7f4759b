"""Metrics on three levels: hand-worked cases, a plain loop against the vectorised code, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.evaluate.metrics import map_at_k, mean_similarity_at_k, precision_at_k, recall_at_k

RETRIEVED = np.array([["a", "b", "a"], ["c", "c", "b"], ["b", "a", "a"]])
QUERIES = np.array(["a", "b", "a"])


def test_hand_worked_cases():
    # query 0 hits at ranks 1 and 3, query 1 at rank 3, query 2 at ranks 2 and 3
    assert precision_at_k(RETRIEVED, QUERIES, 1) == pytest.approx(1 / 3)
    assert precision_at_k(RETRIEVED, QUERIES, 3) == pytest.approx((2 + 1 + 2) / 9)
    assert recall_at_k(RETRIEVED, QUERIES, 1) == pytest.approx(1 / 3)
    assert recall_at_k(RETRIEVED, QUERIES, 2) == pytest.approx(2 / 3)
    # AP@3 with 2 relevant each: q0 (1 + 2/3)/2, q1 (1/3)/2, q2 (1/2 + 2/3)/2
    expected = ((1 + 2 / 3) / 2 + (1 / 3) / 2 + (1 / 2 + 2 / 3) / 2) / 3
    assert map_at_k(RETRIEVED, QUERIES, 3, np.array([2, 2, 2])) == pytest.approx(expected)
    assert mean_similarity_at_k(np.array([[0.9, 0.1], [0.5, 0.3]]), 2) == pytest.approx(0.45)


def loop_metrics(retrieved, queries, k, n_relevant):
    precision = recall = average_precision = 0.0
    for row, label in enumerate(queries):
        hits = [retrieved[row][i] == label for i in range(k)]
        precision += sum(hits) / k
        recall += any(hits)
        found, total = 0, 0.0
        for rank, hit in enumerate(hits, start=1):
            if hit:
                found += 1
                total += found / rank
        average_precision += total / min(k, n_relevant[row]) if n_relevant[row] else 0.0
    n = len(queries)
    return precision / n, recall / n, average_precision / n


@pytest.mark.parametrize("seed", range(5))
def test_vectorised_metrics_equal_a_plain_loop(seed):
    rng = np.random.default_rng(seed)
    labels = np.array(list("abcde"))
    retrieved = rng.choice(labels, size=(40, 12))
    queries = rng.choice(labels, size=40)
    n_relevant = rng.integers(0, 15, size=40)
    for k in (1, 4, 12):
        precision, recall, mean_ap = loop_metrics(retrieved, queries, k, n_relevant)
        assert precision_at_k(retrieved, queries, k) == pytest.approx(precision)
        assert recall_at_k(retrieved, queries, k) == pytest.approx(recall)
        assert map_at_k(retrieved, queries, k, n_relevant) == pytest.approx(mean_ap)


@pytest.mark.parametrize("k", [0, -1, 4, 2.5])
def test_bad_k_is_refused(k):
    with pytest.raises(ValueError, match="k"):
        precision_at_k(RETRIEVED, QUERIES, k)
    with pytest.raises(ValueError, match="k"):
        mean_similarity_at_k(np.ones((3, 3)), k)


def test_empty_or_misshapen_input_is_refused():
    with pytest.raises(ValueError, match="non-empty"):
        recall_at_k(np.empty((0, 3)), np.empty(0), 1)
    with pytest.raises(ValueError, match="one label per query"):
        precision_at_k(RETRIEVED, QUERIES[:2], 1)
    with pytest.raises(ValueError, match="n_relevant"):
        map_at_k(RETRIEVED, QUERIES, 2, np.array([1, 2]))
    with pytest.raises(ValueError, match="non-empty"):
        mean_similarity_at_k(np.empty((0, 2)), 1)
