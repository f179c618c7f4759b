"""Incremental builds keep the approximate index's trained cells: added rows answer like a rebuilt index."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from lookalike.catalog import CatalogSource
from lookalike.index.ann import AnnConfig
from lookalike.index.exact import top_k
from lookalike.index.search import AnnReuse, SearchMethod
from lookalike.index.store import load_index
from lookalike.indexing.builder import BuildConfig
from lookalike.indexing.builder import build_index as build


def clustered(n: int, dim: int = 64, clusters: int = 200, seed: int = 0) -> np.ndarray:
    """Unit vectors around `clusters` centres (the last ones serve as queries from the same centres)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    vectors = centres[rng.integers(0, clusters, n)] + 0.6 * rng.normal(size=(n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def recall_against(found: np.ndarray, reference: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, reference, strict=True)]))


@pytest.mark.parametrize("appended", [True, False])
def test_rows_added_to_a_trained_index_answer_like_a_rebuilt_index(tmp_path, appended):
    vectors, queries = np.split(clustered(24_300), [24_000])
    config = AnnConfig(n_lists=128, n_probe=8, train_size=8_000)
    method = SearchMethod(config)
    first = method.approximate_index(vectors[:12_000])
    first.save(tmp_path / "first.faiss")
    # Extended: the first 12k rows kept their places. Refilled: rows moved, so every row is added again.
    catalog = vectors if appended else np.concatenate([vectors[12_000:], vectors[:12_000]])
    kept = method.approximate_index(catalog, AnnReuse(tmp_path / "first.faiss", 12_000, appended))
    rebuilt = method.approximate_index(catalog)
    assert len(kept) == len(rebuilt) == 24_000 and kept.index.nprobe < kept.index.nlist  # really probes

    answers = kept.top_k(queries, 10).indices
    assert recall_against(answers, rebuilt.top_k(queries, 10).indices) >= 0.99
    exact = top_k(catalog, queries, 10).indices
    assert recall_against(answers, exact) >= 0.95


def test_incremental_builds_extend_or_refill_the_index_and_retrain_past_the_growth_factor(small_catalog_dir, tmp_path):
    root = tmp_path / "catalog"
    shutil.copytree(small_catalog_dir, root)
    last_category = sorted(p.name for p in root.iterdir())[-1]
    photos = sorted((root / last_category).iterdir())
    held_back = photos[-2:]
    for photo in held_back:
        photo.rename(tmp_path / photo.name)
    config = BuildConfig(source=CatalogSource(str(root)), model="color-histogram", output=tmp_path / "out", ann="on")

    assert build(config, False).ann_update == "trained"
    assert load_index(config.output).metadata.search.trained_on == 22
    for photo in held_back:  # the last photos of the last category: appended after every kept row
        (tmp_path / photo.name).rename(photo)
    report = build(config, False)
    assert (report.ann_update, report.n_reused, report.n_embedded) == ("extended", 22, 2)
    index = load_index(config.output)
    assert len(index.search) == 24 and index.metadata.search.trained_on == 22
    exact = top_k(index.embeddings, np.asarray(index.embeddings[:5]), 5).indices
    np.testing.assert_array_equal(index.top_k(np.asarray(index.embeddings[:5]), 5).indices, exact)

    sorted(root.rglob("*.jpg"))[0].unlink()  # a row gone from the front: every row moves
    assert build(config, False).ann_update == "refilled"
    for photo in list(small_catalog_dir.rglob("*.jpg"))[:23]:  # 23 + 23 > 2 x 22: outgrown
        shutil.copy(photo, root / photo.parent.name / f"copy-{photo.name}")
    report = build(config, False)
    assert report.ann_update == "trained" and load_index(config.output).metadata.search.trained_on == report.n_indexed
