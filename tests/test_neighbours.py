"""Precomputed neighbours answer "similar to product X" exactly as a live search would, without one."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lookalike.index.neighbours import NEIGHBOURS_FILE, PRECOMPUTED, Neighbours
from lookalike.index.serving_cache import CACHE_DIR, EMBEDDINGS_FILE
from lookalike.index.store import load_index
from lookalike.recommend.filters import CategoryFilter
from lookalike.recommend.recommender import RecommendationRequest, Recommender


@pytest.fixture(scope="module")
def recommender(small_index_dir):
    return Recommender.from_path(small_index_dir)


def recommender_with(recommender: Recommender, **index_changes) -> Recommender:
    """`recommender` over its index with some fields changed: no neighbours (searches live), fewer, a mapped matrix."""
    index = dataclasses.replace(recommender.index, **index_changes)
    return Recommender(index, recommender.backbone, recommender.inference)


def test_a_build_writes_each_rows_nearest_other_rows(small_index_dir):
    index = load_index(small_index_dir)
    assert (small_index_dir / NEIGHBOURS_FILE).is_file() and index.neighbours is not None
    rows = index.neighbours.rows
    n = len(index)
    assert rows.shape == (n, PRECOMPUTED)
    vectors = np.asarray(index.embeddings)
    for row in range(n):
        similarities = vectors @ vectors[row]
        similarities[row] = -np.inf
        found, found_scores = index.neighbours.of(row)
        assert len(found) == min(PRECOMPUTED, n - 1) and row not in found  # -1 pads a small catalog's rows
        expected = np.argsort(-similarities, kind="stable")[: len(found)]
        np.testing.assert_allclose(found_scores, similarities[expected], atol=1e-5)


@pytest.mark.parametrize("k", [1, 5, 8, 20])
def test_precomputed_answers_equal_a_live_search(recommender, k):
    plain = recommender_with(recommender, neighbours=None)
    for item_id in recommender.ids:
        request = RecommendationRequest(k=k)
        fast = recommender.search(request, item_ids=[item_id])
        slow = plain.search(request, item_ids=[item_id])
        assert fast.precomputed and not slow.precomputed
        assert [r.id for r in fast.items] == [r.id for r in slow.items]
        np.testing.assert_allclose([r.score for r in fast.items], [r.score for r in slow.items], atol=1e-5)


def test_filters_feedback_and_uploads_search_live(recommender, example_photo):
    item = recommender.ids[0]
    assert not recommender.search(
        RecommendationRequest(k=5, filter=CategoryFilter(only=("fruit",))), item_ids=[item]
    ).precomputed
    assert not recommender.search(
        RecommendationRequest(k=5, less_like_ids=(recommender.ids[1],)), item_ids=[item]
    ).precomputed
    assert not recommender.search(RecommendationRequest(k=5, metric="euclidean"), item_ids=[item]).precomputed
    assert not recommender.search(RecommendationRequest(k=5), images=[example_photo], item_ids=[item]).precomputed


def test_the_lookup_alone_answers_only_what_the_neighbours_hold(recommender):
    """`precomputed` is the search's own answer or None, never a shorter or filtered-out one."""
    item = recommender.ids[0]
    live = recommender_with(recommender, neighbours=None)
    fast, slow = (
        recommender.precomputed(RecommendationRequest(k=5), item),
        live.search(RecommendationRequest(k=5), item_ids=[item]),
    )
    assert fast.precomputed and [r.id for r in fast.items] == [r.id for r in slow.items]
    assert recommender.precomputed(RecommendationRequest(k=5, filter=CategoryFilter(only=("fruit",))), item) is None
    assert recommender.precomputed(RecommendationRequest(k=5, metric="euclidean"), item) is None
    few = Neighbours(recommender.index.neighbours.rows[:, :3], recommender.index.neighbours.scores[:, :3])
    shallow = recommender_with(recommender, neighbours=few)
    assert shallow.precomputed(RecommendationRequest(k=3), item) == recommender.precomputed(
        RecommendationRequest(k=3), item
    )
    assert shallow.precomputed(RecommendationRequest(k=4), item) is None  # deeper than they go: a search
    deeper = shallow.search(RecommendationRequest(k=4), item_ids=[item])
    assert not deeper.precomputed and len(deeper.items) == 4
    with pytest.raises(KeyError):
        recommender.precomputed(RecommendationRequest(k=5), "no such product")


def test_a_memory_mapped_build_says_its_rows_are_not_in_memory(recommender, small_index_dir):
    """The small build's matrix is read into memory; a large one's stays mapped (served_matrix)."""
    assert recommender.rows_in_memory
    mapped = np.load(small_index_dir / CACHE_DIR / EMBEDDINGS_FILE, mmap_mode="r")
    large = recommender_with(recommender, embeddings=mapped)
    assert not large.rows_in_memory


def test_neighbours_of_another_build_are_not_read(small_index_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(small_index_dir, copy)
    assert load_index(copy).neighbours is not None
    stale = next((copy / "data").glob("*.parquet"))
    stale.rename(stale.with_name("train-ffffffffffff-00000-of-00001.parquet"))  # as if another build's data
    assert load_index(copy).neighbours is None
