"""Evaluation of builds with product columns: by any column, a leave-one-out without the query's product
group, instance Recall@K where products have several photos; builds without products score as before."""

from __future__ import annotations

import io
import json
from dataclasses import asdict
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from lookalike.backbones.preprocessing import Preprocessing
from lookalike.evaluate import __main__ as evaluate
from lookalike.evaluate.groups import ProductGroups, label_values
from lookalike.evaluate.instances import evaluate_instances
from lookalike.evaluate.metrics import (
    instance_map_at_k,
    instance_recall_at_k,
    map_at_k,
    mean_similarity_at_k,
    precision_at_k,
    recall_at_k,
    relevant_counts,
)
from lookalike.evaluate.report import summary_notes, summary_table
from lookalike.evaluate.scoring import Protocol, evaluate_query_set, query_set, search_query_set
from lookalike.index.exact import ExactSearch
from lookalike.index.store import EmbeddingIndex, IndexMetadata, load_index, save_index

# A hand-made build: 2-D unit vectors at these angles, so cosine similarity ranks rows by angular
# distance. S1 has two photos (rows 0, 1), S2 is its variant (item group G1); H2 has two photos
# (rows 5, 6); H3 has no brand. Rows 1 and 6 form the test split.
#       id      label    product  group  brand   split   angle (degrees)
ROWS = [
    ("S1", "shirt", "S1", "G1", "Acme", "train", 0),
    ("S1#2", "shirt", "S1", "G1", "Acme", "test", 3),
    ("S2", "shirt", "S2", "G1", "Acme", "train", 5),
    ("H1", "shoe", "H1", None, "Acme", "train", 12),
    ("T1", "shirt", "T1", None, "Bolt", "train", 20),
    ("H2", "shoe", "H2", None, "Bolt", "train", 30),
    ("H2#2", "shoe", "H2", None, "Bolt", "test", 34),
    ("H3", "shoe", "H3", None, None, "train", 61),
]


def metadata(n_items: int, dim: int) -> IndexMetadata:
    return IndexMetadata(
        model_id="hand-made",
        embedding_dim=dim,
        preprocessing=Preprocessing(),
        weights_fingerprint="none",
        source="generated",
        split_seed=0,
        test_fraction=0.25,
        n_items=n_items,
    )


def thumbnail(shade: int) -> dict:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (shade, 90, 160)).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


@pytest.fixture(scope="module")
def product_build(tmp_path_factory) -> Path:
    ids, labels, products, groups, brands, splits, angles = zip(*ROWS, strict=True)
    radians = np.deg2rad(np.asarray(angles, dtype=np.float64))
    vectors = np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)
    table = pa.table(
        {
            "id": list(ids),
            "label": list(labels),
            "split": list(splits),
            "image": [thumbnail(20 * row) for row in range(len(ROWS))],
            "embedding": pa.array(vectors.tolist(), type=pa.list_(pa.float32())),
            "content_hash": [f"hash-{row}" for row in range(len(ROWS))],
            "product_id": list(products),
            "item_group_id": list(groups),
            "brand": list(brands),
        }
    )
    return save_index(table, metadata(len(ROWS), 2), tmp_path_factory.mktemp("products") / "hand-made")


def figures(build: Path, protocol: Protocol, ks=(1, 3), **options):
    index = load_index(build)
    return evaluate_query_set(index, query_set(index, protocol, **options), ks)


def test_group_aware_leave_one_out_never_counts_a_sibling(product_build):
    # Naive: rows 0, 1, 2 find each other (another photo of S1, or the variant S2), 5 and 6 each
    # other, 7 finds 6; 3 and 4 miss: 6/8. Row 2 (S2) hits only through row 1, a photo of its variant.
    naive = figures(product_build, Protocol.LEAVE_ONE_OUT, exclude_group=False)
    assert naive.precision_at_k["1"] == pytest.approx(6 / 8)
    # Group-aware: rows 0, 1, 2 lose the whole group G1 and find the shoe H1 first; 5 and 6 lose H2
    # and find the shirt T1; only 7 (nearest: row 6) still hits at K=1.
    aware = figures(product_build, Protocol.LEAVE_ONE_OUT)
    assert aware.n_queries == 8 and aware.n_catalog == 8
    assert aware.precision_at_k["1"] == pytest.approx(1 / 8)
    # Top 3 hits per query: 1, 1, 1, 0, 0, 1, 2, 2.
    assert aware.precision_at_k["3"] == pytest.approx(8 / 24)
    # AP@3: rows 0-2 have 1 findable shirt (T1), found at rank 2: 1/2 each; 5 and 6 have 2 findable
    # shoes: 1/4 and (1/2 + 2/3)/2; row 7 has 3: (1 + 1)/3; rows 3 and 4 score 0.
    assert aware.map_at_k["3"] == pytest.approx((3 * 0.5 + 0.25 + 7 / 12 + 2 / 3) / 8)
    assert aware.per_category["shirt"]["precision_at_k"]["1"] == 0.0


def test_split_protocol_leaves_out_a_test_querys_group_in_train(product_build):
    naive = figures(product_build, Protocol.SPLIT, exclude_group=False)
    assert naive.n_queries == 2 and naive.n_catalog == 6
    assert naive.precision_at_k["1"] == 1.0  # S1#2 finds its variant S2, H2#2 its own product's other photo
    aware = figures(product_build, Protocol.SPLIT)
    # S1#2 without S1, S2: H1, T1, H2 (1 hit); H2#2 without H2: T1, H1, H3 (2 hits).
    assert aware.precision_at_k["1"] == 0.0
    assert aware.precision_at_k["3"] == pytest.approx(3 / 6)
    # Findable in train: 1 shirt for S1#2 (T1, rank 2), 2 shoes for H2#2 (ranks 2 and 3).
    assert aware.map_at_k["3"] == pytest.approx((0.5 + 7 / 12) / 2)


def test_score_by_brand_leaves_out_rows_without_one(product_build):
    evaluation = figures(product_build, Protocol.LEAVE_ONE_OUT, label_column="brand")
    assert (evaluation.label_column, evaluation.n_queries, evaluation.n_without_label) == ("brand", 7, 1)
    # K=1: every Acme row finds an Acme row (H1, or S2 for H1); T1 (Bolt) finds H1 (Acme); H2's photos find T1.
    assert evaluation.precision_at_k["1"] == pytest.approx(6 / 7)
    # K=3 hits: 1, 1, 1, 2, 2, 1, 1. H2#2's third result is H3, which has no brand: no hit.
    assert evaluation.precision_at_k["3"] == pytest.approx(9 / 21)
    assert set(evaluation.per_category) == {"Acme", "Bolt"}


def test_instance_recall_on_a_hand_made_case(product_build):
    evaluation = figures(product_build, Protocol.LEAVE_ONE_OUT)
    # Queries: the two photos of S1 and of H2. S1#2's nearest row is S2 (a variant: a miss), then S1.
    assert evaluation.n_instance_queries == 4
    assert evaluation.instance_recall_at_k == {"1": pytest.approx(3 / 4), "3": 1.0}
    assert evaluation.instance_map_at_k == {"1": pytest.approx(3 / 4), "3": pytest.approx((1 + 0.5 + 1 + 1) / 4)}
    # The same figures whatever the category protocol: instance queries are the whole build's photos.
    assert figures(product_build, Protocol.SPLIT).instance_recall_at_k == evaluation.instance_recall_at_k


def test_a_build_without_product_columns_scores_as_before(small_index_dir):
    built = load_index(small_index_dir)
    rows = built.dataset.remove_columns([c for c in built.dataset.column_names if c == "product_id"])
    index = EmbeddingIndex(built.path, rows, built.embeddings, built.metadata, built.search)
    for protocol in Protocol:
        evaluation = evaluate_query_set(index, query_set(index, protocol), ks=(1, 3, 5))
        assert asdict(evaluation) == asdict(evaluate_query_set(built, query_set(built, protocol), ks=(1, 3, 5)))
        before = flatten(figures_before_products(index, protocol, (1, 3, 5)))
        after = {name: value for name, value in flatten(asdict(evaluation)).items() if name in before}
        assert after == pytest.approx(before, abs=1e-6)
        assert evaluation.instance_recall_at_k is None and evaluation.n_instance_queries == 0


def flatten(figures: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in figures.items():
        flat.update(flatten(value, f"{prefix}{key}/") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return flat


def figures_before_products(index, protocol: Protocol, ks) -> dict:
    """The figures as the evaluation computed them before product columns, one query at a time."""
    labels, splits, vectors = np.asarray(index.labels), np.asarray(index.splits), np.asarray(index.embeddings)
    leave_one_out = protocol is Protocol.LEAVE_ONE_OUT
    catalog = np.arange(len(labels)) if leave_one_out else np.flatnonzero(splits == "train")
    queries = np.arange(len(labels)) if leave_one_out else np.flatnonzero(splits == "test")
    retrieved, scores, n_relevant = [], [], []
    for query in queries:
        candidates = [row for row in catalog if not (leave_one_out and row == query)]
        similarity = vectors[candidates] @ vectors[query]
        best = np.argsort(-similarity, kind="stable")[: max(ks)]
        retrieved.append(labels[np.asarray(candidates)[best]])
        scores.append(similarity[best])
        n_relevant.append(int((labels[candidates] == labels[query]).sum()))
    retrieved, scores, n_relevant = np.array(retrieved), np.array(scores), np.array(n_relevant)

    def of(chosen):
        q = labels[queries][chosen]
        return {
            "precision_at_k": {str(k): precision_at_k(retrieved[chosen], q, k) for k in ks},
            "mean_similarity_at_k": {str(k): mean_similarity_at_k(scores[chosen], k) for k in ks},
            "recall_at_k": {str(k): recall_at_k(retrieved[chosen], q, k) for k in ks},
            "map_at_k": {str(k): map_at_k(retrieved[chosen], q, k, n_relevant[chosen]) for k in ks},
        }

    per_category = {label: of(labels[queries] == label) for label in sorted(set(labels[queries]))}
    return {"n_catalog": len(catalog), "n_queries": len(queries), "per_category": per_category, **of(slice(None))}


def test_cli_scores_by_a_column_and_names_the_columns_it_has(product_build, tmp_path, capsys):
    out = tmp_path / "brand.json"
    args = [str(product_build), "--protocol", "leave-one-out", "--label-column", "brand", "--k", "1", "3"]
    assert evaluate.main([*args, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "7 queries" in printed and "1 row without a brand left out" in printed
    assert "instance: 4 photos" in printed and "instance R@K 0.750" in printed
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert saved["precision_at_k"]["1"] == pytest.approx(6 / 7) and saved["instance_recall_at_k"]["3"] == 1.0

    assert evaluate.main([str(product_build), "--label-column", "colour"]) == 2
    error = capsys.readouterr().err
    assert "no column 'colour'" in error and "item_group_id" in error and "brand" in error
    with pytest.raises(SystemExit):
        evaluate.main([str(product_build), "--queries", str(tmp_path), "--label-column", "brand"])


def test_summary_shows_instance_figures_only_where_products_have_photos(product_build):
    index = load_index(product_build)
    queries = query_set(index, Protocol.LEAVE_ONE_OUT, label_column="brand")
    with_photos = evaluate_query_set(index, queries, (1, 3))
    table = summary_table([with_photos])
    assert "instance R@1" in table and "| 4 | 0.750 | 1.000 | 0.875 |" in table
    notes = summary_notes([with_photos], queries)
    assert "Queries: 7" in notes and "`brand`" in notes and "1 row without a `brand`" in notes
    plain = figures(product_build, Protocol.LEAVE_ONE_OUT)
    no_photos = type(plain)(**{**asdict(plain), "instance_recall_at_k": None, "instance_map_at_k": None})
    assert "instance" not in summary_table([no_photos])


@pytest.mark.slow
def test_report_of_a_column_with_missing_values(product_build, tmp_path):
    from lookalike.evaluate.report import write_report

    index = load_index(product_build)
    queries = query_set(index, Protocol.LEAVE_ONE_OUT, label_column="brand")
    write_report([(index, queries)], tmp_path / "report", ks=(1, 3), n_example_queries=2)
    results = json.loads((tmp_path / "report" / "results.json").read_text(encoding="utf-8"))
    assert results[0]["label_column"] == "brand" and results[0]["n_instance_queries"] == 4
    assert (tmp_path / "report" / "example_queries.png").stat().st_size > 1000


def test_exclusions_follow_the_product_and_the_group():
    # Rows 0, 1: product 0 in group 7; row 2: product 1 in group 7; row 3: product 0's photo without a
    # group; row 4: product 2 alone.
    groups = ProductGroups.of_codes(np.array([0, 0, 1, 0, 2]), np.array([7, 7, 7, -1, -1]))
    assert [rows.tolist() for rows in groups.exclusions(range(5))] == [
        [0, 1, 2, 3],
        [0, 1, 2, 3],
        [0, 1, 2],
        [0, 1, 3],
        [4],
    ]
    assert groups.photos_per_product().tolist() == [3, 3, 1, 3, 1]
    # Read from a build's columns: a row naming no product is a product of its own.
    table = pa.table({"id": ["a", "b", "c"], "product_id": ["P", None, "P"], "item_group_id": [None, "G", "G"]})
    assert [rows.tolist() for rows in ProductGroups.of_table(table).exclusions(range(3))] == [[0, 2], [1, 2], [0, 1, 2]]
    assert [rows.tolist() for rows in ProductGroups.of_table(pa.table({"id": ["a", "b"]})).exclusions([0, 1])] == [
        [0],
        [1],
    ]


def test_label_values_and_their_errors():
    table = pa.table({"id": ["a", "b", "c"], "brand": ["X", None, ""], "price": [1.5, None, 2.0]})
    assert label_values(table, "brand").tolist() == ["X", None, None]
    assert label_values(table, "price").tolist() == ["1.5", None, "2.0"]
    assert label_values(table, "id").dtype.kind == "U"
    with pytest.raises(ValueError, match=r"no column 'colour'.*id, brand, price"):
        label_values(table, "colour")
    with pytest.raises(ValueError, match="no column 'image'"):
        label_values(pa.table({"id": ["a"], "image": ["x"]}), "image")


def test_instance_metrics_hand_worked_and_bad_input():
    retrieved = np.array([[5, 1, 1], [2, 2, 9], [4, 8, 6]])
    wanted = np.array([1, 2, 3])
    # Query 0 finds its product at ranks 2, 3; query 1 at ranks 1, 2; query 2 never.
    assert instance_recall_at_k(retrieved, wanted, 1) == pytest.approx(1 / 3)
    assert instance_recall_at_k(retrieved, wanted, 2) == pytest.approx(2 / 3)
    # AP@3 with 2 other photos each: (1/2 + 2/3)/2, (1 + 1)/2, 0.
    assert instance_map_at_k(retrieved, wanted, 3, np.array([2, 2, 1])) == pytest.approx((7 / 12 + 1) / 3)
    with pytest.raises(ValueError, match="k must"):
        instance_recall_at_k(retrieved, wanted, 0)
    with pytest.raises(ValueError, match="catalog must"):
        relevant_counts(np.array(["a", "b"]), np.ones(3, bool), np.array(["a"]))
    with pytest.raises(ValueError, match="exclude must"):
        relevant_counts(np.array(["a", "b"]), np.ones(2, bool), np.array(["a"]), [[0], [1]])


@st.composite
def catalogs(draw):
    """Random vectors, products and item groups (-1: none); a product's photos may sit in several groups."""
    n = draw(st.integers(3, 24))
    products = np.array(draw(st.lists(st.integers(0, n // 2), min_size=n, max_size=n)))
    groups = np.array(draw(st.lists(st.integers(-1, 3), min_size=n, max_size=n)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    vectors = rng.standard_normal((n, 6)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = draw(st.lists(st.sampled_from(["a", "b", None]), min_size=n, max_size=n))
    splits = draw(st.lists(st.sampled_from(["train", "test"]), min_size=n, max_size=n))
    return vectors, products, groups, labels, splits


def in_memory_index(vectors, products, groups, labels, splits) -> EmbeddingIndex:
    n = len(vectors)
    rows = datasets.Dataset.from_dict(
        {
            "id": [f"r{row}" for row in range(n)],
            "label": ["x"] * n,
            "split": splits,
            "product_id": [f"p{p}" for p in products],
            "item_group_id": [f"g{g}" if g >= 0 else None for g in groups],
            "brand": labels,
        }
    )
    return EmbeddingIndex(Path("generated"), rows, vectors, metadata(n, vectors.shape[1]), ExactSearch(vectors))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(catalogs(), st.sampled_from(list(Protocol)))
def test_a_query_never_gets_back_its_product_group(catalog, protocol):
    vectors, products, groups, labels, _ = catalog
    index = in_memory_index(*catalog)
    try:
        queries = query_set(index, protocol, label_column="brand")
    except ValueError:  # no test split, or no query with a brand: nothing to check
        return
    catalog_rows = set(queries.catalog_rows.tolist())
    # Brute force: the rows a query must never get back, and the rows it may.
    never = [
        {r for r in range(len(vectors)) if products[r] == products[q] or (groups[q] >= 0 and groups[r] == groups[q])}
        for q in queries.query_rows
    ]
    findable = min(len(catalog_rows - excluded) for excluded in never)
    if findable == 0:
        return
    results = search_query_set(index, queries, findable)
    for q, excluded, found in zip(queries.query_rows, never, results.indices.tolist(), strict=True):
        assert not excluded & set(found), (q, excluded, found)
        assert set(found) <= catalog_rows
        # Nothing better was left out: every found row is at least as close as every allowed row not found.
        rest = catalog_rows - excluded - set(found)
        if rest:
            assert min(vectors[found] @ vectors[q]) >= max(vectors[sorted(rest)] @ vectors[q]) - 1e-6
    expected = [
        sum(1 for r in catalog_rows - excluded if labels[r] == labels[q])
        for q, excluded in zip(queries.query_rows, never, strict=True)
    ]
    assert (
        relevant_counts(
            label_values(index.dataset.data.table, "brand"),
            np.isin(np.arange(len(vectors)), queries.catalog_rows),
            queries.labels,
            queries.exclusions(),
        ).tolist()
        == expected
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(catalogs())
def test_instance_figures_equal_a_brute_force_loop(catalog):
    vectors, products, *_ = catalog
    groups = ProductGroups.of_codes(products)
    ks = (1, 2, len(vectors) - 1)
    found = evaluate_instances(ExactSearch(vectors), vectors, groups, ks)
    n_photos = {p: int((products == p).sum()) for p in products.tolist()}
    queries = [q for q in range(len(vectors)) if n_photos[int(products[q])] >= 2]
    if not queries:
        assert found is None
        return
    assert found.n_queries == len(queries)
    for k in ks:
        recall = average_precision = 0.0
        for q in queries:
            others = [r for r in range(len(vectors)) if r != q]
            ranked = sorted(others, key=lambda r: -float(vectors[r].astype(np.float64) @ vectors[q]))[:k]
            relevant = [products[r] == products[q] for r in ranked]
            recall += any(relevant)
            hits = np.cumsum(relevant)
            average_precision += sum(hits[i] / (i + 1) for i in range(k) if relevant[i]) / min(
                k, n_photos[int(products[q])] - 1
            )
        assert found.recall_at_k[str(k)] == pytest.approx(recall / len(queries))
        assert found.map_at_k[str(k)] == pytest.approx(average_precision / len(queries))
