"""The recommend contract over many generated catalogs, checked against a plain brute-force reference.

Every answer: never raises; exactly min(K, eligible products) results; never a row the filter keeps
out, an excluded or not-wanted one, nor the query's own (its id, or a photo as close as a re-encoded
copy of an upload); best first; for exact search the reference's own ranking. Catalogs are drawn by
Hypothesis as a structure (products, near-identical copies, categories) turned into vectors by a
seeded generator, so that "near-identical" and "different" are never borderline.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lookalike.backbones.embedding import l2_normalize
from lookalike.backbones.registry import load_backbone
from lookalike.index.ann import AnnConfig, AnnIndex
from lookalike.index.exact import ExactSearch, Metric
from lookalike.index.store import EmbeddingIndex, IndexMetadata
from lookalike.recommend.duplicates import collapse_near_duplicates
from lookalike.recommend.feedback import combine_set, rocchio
from lookalike.recommend.filters import CategoryFilter
from lookalike.recommend.recommender import (
    SAME_PHOTO_SIMILARITY,
    RecommendationRequest,
    Recommender,
)
from lookalike.recommend.regions import QueryRegions
from tests.tolerances import FLOAT32_DOT_TOLERANCE

# The colour-histogram backbone is only the index's stamp here (512-d): uploads arrive as vectors.
BACKBONE = load_backbone("color-histogram")
DIM = BACKBONE.embedding_dim
CATEGORIES = ("shoe", "bag", "lamp")
# Copies of one product photo score about 0.9999 against each other, different products about 0 (random
# 512-d directions): far from the 0.96 at which products fold together, so the reference is unambiguous.
COPY_NOISE = 0.002
# IVF with n_probe < n_lists, so the approximate search really skips cells; FAISS wants 39 rows per cell.
ANN = AnnConfig(n_lists=8, n_probe=2, train_size=10_000)
ANN_MIN_ROWS = 39 * ANN.n_lists
RUNS = {"exact": 400, "ann": 80}  # generated cases per search type (quoted in the closing note)


class VectorRecommender(Recommender):
    """The real recommender, with uploads given as their embeddings: the search is under test, not the CNN."""

    def embed(self, images) -> np.ndarray:
        return l2_normalize(np.asarray(images, dtype=np.float32))


class RegionVectorRecommender(VectorRecommender):
    """Region search with the views given: a single upload arrives as (1 + regions, DIM), the whole first."""

    def _embed_uploads(self, images, plain):
        if len(images) == 1 and plain and np.ndim(images[0]) == 2:
            views = self.embed(images[0])
            return views[:1], views[1:]
        return super()._embed_uploads(images, plain)


@dataclass(frozen=True)
class Case:
    vectors: np.ndarray
    labels: list[str]
    request: RecommendationRequest
    item_rows: list[int]
    uploads: np.ndarray  # (n, DIM), possibly empty
    regions: np.ndarray | None = None  # (R, DIM): the one upload's regions, searched beside it


def catalog_vectors(seed: int, copies: list[int]) -> np.ndarray:
    """One random direction per product, each repeated `copies[i]` times with a little noise."""
    rng = np.random.default_rng(seed)
    products = l2_normalize(rng.standard_normal((len(copies), DIM)))
    rows = np.repeat(products, copies, axis=0)
    return l2_normalize(rows + COPY_NOISE * rng.standard_normal(rows.shape) / np.sqrt(DIM))


@st.composite
def cases(draw, min_rows: int = 1, max_rows: int = 40) -> Case:
    n_products = draw(st.integers(1, max(1, max_rows // 2)))
    copies = draw(st.lists(st.integers(1, 4), min_size=n_products, max_size=n_products))
    while sum(copies) < min_rows:  # an ANN catalog needs enough rows to train its cells
        copies = [c * 2 for c in copies]
    seed = draw(st.integers(0, 2**31 - 1))
    vectors = catalog_vectors(seed, copies)
    n = len(vectors)
    # A category per product (copies share it), from one, two or three categories in all.
    n_categories = draw(st.integers(1, len(CATEGORIES)))
    product_category = draw(st.lists(st.sampled_from(CATEGORIES[:n_categories]), min_size=n_products))
    labels = [product_category[p] for p, c in enumerate(copies) for _ in range(c)]
    row = st.integers(0, n - 1)
    item_rows = draw(st.lists(row, max_size=2, unique=True))
    upload_kinds = draw(st.lists(st.sampled_from(["copy", "new"]), max_size=2))
    if not item_rows and not upload_kinds:
        upload_kinds = ["new"]
    rng = np.random.default_rng(seed + 1)
    uploads = [
        vectors[draw(row)] + COPY_NOISE * rng.standard_normal(DIM) / np.sqrt(DIM)
        if kind == "copy"
        else rng.standard_normal(DIM)
        for kind in upload_kinds
    ]
    uploads = l2_normalize(np.asarray(uploads, dtype=np.float32)) if uploads else np.zeros((0, DIM), np.float32)
    present = sorted(set(labels))  # a category the catalog lacks is refused by name (test_filters.py)
    only = draw(st.lists(st.sampled_from(present), max_size=len(present), unique=True))
    ids = [f"p{r}" for r in range(n)]
    request = RecommendationRequest(
        k=draw(st.integers(1, n + 3)),
        metric=draw(st.sampled_from(list(Metric))),
        filter=CategoryFilter(only=tuple(only), exclude_query_category=draw(st.booleans())),
        less_like_ids=tuple(ids[r] for r in draw(st.lists(row, max_size=3, unique=True))),
        more_like_ids=tuple(ids[r] for r in draw(st.lists(row, max_size=2, unique=True))),
        collapse_duplicates=draw(st.booleans()),
    )
    return Case(vectors, labels, request, item_rows, uploads)


@st.composite
def region_cases(draw) -> Case:
    """One upload searched alone, with 1-9 region views: some near catalog products, some not."""
    case = draw(cases())
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    n_regions = draw(st.integers(1, 9))
    near = draw(st.lists(st.integers(0, len(case.vectors) - 1), min_size=n_regions, max_size=n_regions))
    regions = [
        case.vectors[r] + 0.5 * rng.standard_normal(DIM) / np.sqrt(DIM)
        if draw(st.booleans())
        else rng.standard_normal(DIM)
        for r in near
    ]
    upload = case.uploads[:1] if len(case.uploads) else l2_normalize(rng.standard_normal((1, DIM)).astype(np.float32))
    request = dataclasses.replace(case.request, less_like_ids=(), more_like_ids=())
    return Case(case.vectors, case.labels, request, [], upload, l2_normalize(np.asarray(regions, dtype=np.float32)))


def recommender_for(case: Case, approximate: bool) -> VectorRecommender:
    n = len(case.vectors)
    rows = datasets.Dataset.from_dict(
        {"id": [f"p{r}" for r in range(n)], "label": case.labels, "image": [{"bytes": b"", "path": None}] * n}
    )
    metadata = IndexMetadata(
        model_id=BACKBONE.name,
        embedding_dim=DIM,
        preprocessing=BACKBONE.preprocessing,
        weights_fingerprint=BACKBONE.fingerprint,
        source="generated",
        split_seed=0,
        test_fraction=0.0,
        n_items=n,
    )
    search = AnnIndex.build(case.vectors, ANN) if approximate else ExactSearch(case.vectors)
    assert not approximate or search.index.nprobe < search.index.nlist  # the index really skips cells
    index = EmbeddingIndex(Path("generated"), rows, case.vectors, metadata, search)
    if case.regions is not None:
        return RegionVectorRecommender(index, BACKBONE, regions=QueryRegions())
    return VectorRecommender(index, BACKBONE)


def query_categories_of(case: Case) -> set[str]:
    """The categories a query is taken to belong to: its catalog products', and each upload's closest product's."""
    vectors = case.vectors.astype(np.float64)
    return {case.labels[r] for r in case.item_rows} | {case.labels[int(np.argmax(vectors @ u))] for u in case.uploads}


def reference(case: Case, query_categories: set[str]) -> tuple[list[int], np.ndarray, set[int]]:
    """Brute force, one row at a time: the ranked eligible rows after folding, their scores, and the
    rows the answer must never contain."""
    vectors, request = case.vectors.astype(np.float64), case.request
    row_of = {f"p{r}": r for r in range(len(vectors))}
    query = combine_set(np.concatenate([case.vectors[case.item_rows], case.uploads]))
    more = [row_of[i] for i in request.more_like_ids]
    less = [row_of[i] for i in request.less_like_ids]
    if more or less:
        query = rocchio(query, case.vectors[more], case.vectors[less])
    never = set(case.item_rows) | set(less)
    for r, label in enumerate(case.labels):
        kept_by_filter = (not request.filter.only or label in request.filter.only) and not (
            request.filter.exclude_query_category and label in query_categories
        )
        own_photo = any(float(vectors[r] @ u) >= SAME_PHOTO_SIMILARITY for u in case.uploads)
        if not kept_by_filter or own_photo:
            never.add(r)
    eligible = [r for r in range(len(vectors)) if r not in never]
    views = query[None, :] if case.regions is None else np.concatenate([query[None, :], case.regions])
    scores = {r: float(np.max(views.astype(np.float64) @ vectors[r])) for r in eligible}
    ranked = sorted(eligible, key=lambda r: -scores[r])
    if request.collapse_duplicates:
        ranked = [kept for kept, _ in collapse_near_duplicates(case.vectors, ranked, request.duplicate_similarity)]
    return ranked[: request.k], np.array([scores[r] for r in ranked[: request.k]]), never


def check_contract(case: Case, approximate: bool) -> None:
    recommender = recommender_for(case, approximate)
    ids = [f"p{r}" for r in case.item_rows]
    uploads = list(case.uploads) if case.regions is None else [np.concatenate([case.uploads, case.regions])]
    answer = recommender.search(case.request, images=uploads, item_ids=ids)
    found = answer.items
    if approximate:
        # An upload's category is its closest product's as the approximate index finds it, which for a
        # query far from every product may be another than the exact one: the answer must hold for the
        # categories it says it took (an ANN's recall is measured in benchmarks/recall.py, not here).
        query_categories = set(answer.query_categories)
    else:
        query_categories = query_categories_of(case)
        if case.request.filter.exclude_query_category:  # the only search that needs an upload's category
            assert set(answer.query_categories) == query_categories
    expected_rows, expected_scores, never = reference(case, query_categories)
    rows = [int(item.id[1:]) for item in found]
    assert len(found) == len(expected_rows)  # exactly min(K, eligible products)
    assert len(set(rows)) == len(rows)
    assert not set(rows) & never, "a row the filter, the exclusions or the own-photo check keep out"
    similarities = np.array([item.similarity for item in found])
    # Best first: cosine similarity never rises down the list (ties may come in either order).
    assert np.all(np.diff(similarities) <= FLOAT32_DOT_TOLERANCE)
    scores = np.array([item.score for item in found], dtype=np.float64)
    # A Euclidean distance is compared as the cosine it stands for, 1 - d^2 / 2: near d = 0 the square
    # root turns a rounding error of 1e-7 in the cosine into 1e-4 in the distance.
    as_cosine = scores if case.request.metric is Metric.COSINE else 1 - scores**2 / 2
    np.testing.assert_allclose(as_cosine, similarities, atol=FLOAT32_DOT_TOLERANCE)
    if not approximate:
        # The reference's ranking, score for score (float64 against float32 BLAS: equal to the tolerance;
        # rows whose scores tie that closely may trade places, so scores are compared, not ids).
        np.testing.assert_allclose(similarities, expected_scores, atol=FLOAT32_DOT_TOLERANCE)


@settings(max_examples=RUNS["exact"], deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_exact_search_answers_like_the_brute_force_reference(case):
    check_contract(case, approximate=False)


@settings(max_examples=RUNS["ann"], deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(min_rows=ANN_MIN_ROWS, max_rows=2 * ANN_MIN_ROWS))
def test_approximate_search_keeps_the_contract_with_cells_left_unprobed(case):
    check_contract(case, approximate=True)


@settings(max_examples=RUNS["exact"] // 2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(region_cases())
def test_region_search_answers_like_the_best_view_reference(case):
    """A product scores by its best view (the whole photo or a region): same contract, same reference."""
    check_contract(case, approximate=False)


@pytest.mark.parametrize("approximate", [False, True])
def test_the_deeper_search_is_bounded_by_the_eligible_rows_and_reaches_the_bound(approximate, monkeypatch):
    """One product photographed many times: folding leaves one result, so the search doubles its depth
    until it has looked at every eligible row, and stops there."""
    copies = [ANN_MIN_ROWS] if approximate else [50]
    vectors = catalog_vectors(7, copies)
    vectors = np.concatenate([vectors, catalog_vectors(8, [1])])  # and one other product
    case = Case(vectors, ["shoe"] * len(vectors), RecommendationRequest(k=5), [0], np.zeros((0, DIM), np.float32))
    recommender = recommender_for(case, approximate)
    depths = []
    search = recommender.index.top_k

    def counted(queries, k, metric, rows):
        depths.append(k)
        return search(queries, k, metric, rows)

    monkeypatch.setattr(recommender.index, "top_k", counted)
    found = recommender.search(case.request, item_ids=["p0"]).items
    # The other copies as one result (the closest of them, the rest folded in), then the other product.
    assert len(found) == 2 and found[1].id == f"p{len(vectors) - 1}"
    assert len(found[0].near_duplicates) == len(vectors) - 3
    n_eligible = len(vectors) - 1
    assert depths[-1] == n_eligible and all(b == min(n_eligible, 2 * a) for a, b in itertools.pairwise(depths))
    assert len(depths) <= np.ceil(np.log2(n_eligible / 5)) + 1
