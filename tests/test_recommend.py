"""Recommendations: the right category mostly, ranked, never the query, never a foreign model."""

from __future__ import annotations

import pytest

from lookalike.backbones import load_backbone
from lookalike.embedding_store import IndexMismatchError, load_index
from lookalike.recommend import Recommender, average_similarity


@pytest.fixture(scope="module")
def recommender(small_index_dir) -> Recommender:
    return Recommender.from_path(small_index_dir)


def test_example_photo_gets_mostly_its_own_category(recommender, example_photo):
    results = recommender.recommend(example_photo, k=5)
    assert len(results) == 5 and len({r.id for r in results}) == 5
    assert sum(r.label == "fruit" for r in results) >= 3
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    assert 0 < average_similarity(results) <= 1


def test_catalog_photo_is_never_recommended_to_itself(recommender, small_catalog_dir):
    item_id = recommender.index.ids[3]
    by_item = recommender.recommend_for_item(item_id, k=23)
    assert item_id not in {r.id for r in by_item} and len(by_item) == 23
    by_upload = recommender.recommend(small_catalog_dir / item_id, k=5)
    assert item_id not in {r.id for r in by_upload}


def test_euclidean_ranks_like_cosine_on_unit_vectors(recommender, example_photo):
    cosine = recommender.recommend(example_photo, k=5, metric="cosine")
    euclid = recommender.recommend(example_photo, k=5, metric="euclidean")
    assert [r.id for r in cosine] == [r.id for r in euclid]
    for c, e in zip(cosine, euclid, strict=True):
        assert e.score == pytest.approx((2 - 2 * c.score) ** 0.5, abs=1e-4)


def test_results_carry_images_and_json(recommender, example_photo):
    result = recommender.recommend(example_photo, k=1)[0]
    assert result.image.size[0] > 0
    assert set(result.as_dict()) == {"id", "label", "score"}


def test_similarity_of_a_photo_with_itself_is_one(recommender, example_photo):
    assert recommender.similarity(example_photo, example_photo) == pytest.approx(1.0, abs=1e-5)


def test_embeddings_from_another_backbone_are_refused(small_index_dir):
    with pytest.raises(IndexMismatchError, match=r"--model efficientnet-lite0.*build_index.py --model mobilenet-v2"):
        Recommender(load_index(small_index_dir), load_backbone("mobilenet-v2"))
