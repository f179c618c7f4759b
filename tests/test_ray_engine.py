"""The Ray engine writes the same index as the local one; without Ray it says how to install it."""

from __future__ import annotations

import sys

import numpy as np
import pyarrow as pa
import pytest

from lookalike.backbones.inference import InferenceKind
from lookalike.catalog import CatalogSource
from lookalike.index.store import load_index
from lookalike.indexing.builder import BuildConfig, Engine
from lookalike.indexing.builder import build_index as build
from lookalike.indexing.pipeline import PipelineConfig
from lookalike.indexing.ray_engine import RayConfig, _cut_into_chunks, embed_chunks_on_ray


@pytest.mark.slow
def test_ray_engine_matches_the_local_engine(small_catalog_dir, small_index_dir, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is optional: pip install -r requirements-scale.txt to run this test")
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        # Chunks of 10 over 24 images: the streamed results must be cut back into the checkpoint chunks.
        config = BuildConfig(
            source=CatalogSource(str(small_catalog_dir)),
            output=tmp_path / "ray",
            engine=Engine.RAY,
            ray=RayConfig(concurrency=2),
            chunk_size=10,
        )
        report = build(config, False)
    finally:
        ray.shutdown()
    assert (report.n_embedded, report.n_indexed, report.skipped) == (24, 24, [])
    on_ray, local = load_index(report.output), load_index(small_index_dir)
    assert (on_ray.ids, on_ray.labels, on_ray.splits) == (local.ids, local.labels, local.splits)
    assert on_ray.metadata.inference == local.metadata.inference
    np.testing.assert_allclose(on_ray.embeddings, local.embeddings, atol=1e-5)


def test_without_ray_the_error_names_the_requirements_file(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where Ray is not installed
    chunks = embed_chunks_on_ray([[]], "efficientnet-lite0", InferenceKind.ONNX, PipelineConfig(), RayConfig())
    with pytest.raises(RuntimeError, match=r"pip install -r requirements-scale.txt"):
        next(chunks)


def test_streamed_batches_are_cut_back_into_the_checkpoint_chunks():
    """Ray hands results back in batches of its own sizes; the build checkpoints them chunk by chunk."""
    bounds = [(0, 3), (3, 4), (4, 11)]
    batches = iter([pa.table({"id": [str(i) for i in range(start, stop)]}) for start, stop in bounds])
    chunks = list(_cut_into_chunks(batches, [5, 5, 1]))
    assert [chunk["id"].to_pylist() for chunk in chunks] == [list("01234"), list("56789"), ["10"]]


@pytest.mark.slow
def test_ray_engine_builds_a_product_feed_downloading_on_its_actors(tmp_path):
    """The same feed, its photos fetched by Ray actors into the shared download cache: the same rows
    and product columns as the local engine, and a rebuild that downloads nothing."""
    ray = pytest.importorskip("ray", reason="Ray is optional: pip install -r requirements-scale.txt to run this test")
    from lookalike.catalog import REPO_ROOT
    from lookalike.catalog.download import DownloadConfig

    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    import sample_shop

    downloads = {"read_timeout": 1.0, "deadline": 2.0, "retries": 1, "backoff": 0.1}
    with sample_shop.serving(sample_shop.ShopServer()) as shop:
        rows = sample_shop.sample_products(shop, per_category=1, categories=4)
        feed = sample_shop.write_tsv(rows, tmp_path / "f.tsv")
        local = build(
            BuildConfig(
                source=CatalogSource(str(feed)),
                output=tmp_path / "local",
                download=DownloadConfig(cache_dir=tmp_path / "local-cache", **downloads),
            ),
            False,
        )
        ray.init(num_cpus=2, include_dashboard=False)
        try:
            config = BuildConfig(
                source=CatalogSource(str(feed)),
                output=tmp_path / "ray",
                engine=Engine.RAY,
                ray=RayConfig(concurrency=2),
                download=DownloadConfig(cache_dir=tmp_path / "ray-cache", **downloads),
            )
            bodies_before = sum(shop.bodies_sent.values())
            first = build(config, False)
            bodies_after_first = sum(shop.bodies_sent.values())
            again = build(config, False)
        finally:
            ray.shutdown()
    assert first.downloads.downloaded == local.downloads.downloaded == bodies_after_first - bodies_before
    assert again.downloads.downloaded == 0 and again.downloads.revalidated == first.downloads.downloaded
    assert sum(shop.bodies_sent.values()) == bodies_after_first
    assert [(r.row, r.reason.split(":")[0]) for r in first.rejected] == [
        (r.row, r.reason.split(":")[0]) for r in local.rejected
    ]
    on_ray, here = load_index(first.output).dataset.data.table, load_index(local.output).dataset.data.table
    assert on_ray.drop_columns(["image"]).equals(here.drop_columns(["image"]))
