"""The million-product path at a small N: scale.py's build folder served by `python app.py`."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
from gradio_client import Client, handle_file

from benchmarks import scale
from lookalike.index.serving_cache import MatrixFile, row_reader, shard_files
from lookalike.index.store import load_index
from tests.local_server import running_app

N = 3_000
K = 5


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """N synthetic-from-real products with the ANN index forced on (so filtered searches go through it)."""
    folder = tmp_path_factory.mktemp("scale") / "synthetic"
    figures = scale.main(["--items", str(N), "--output", str(folder), "--ann", "on"])
    return folder, figures


@pytest.fixture(scope="module")
def served(build, tmp_path_factory):
    folder, _ = build
    scratch = tmp_path_factory.mktemp("scale-app")
    (scratch / "gradio-temp").mkdir()
    with running_app(folder, scratch / "app.log", {"GRADIO_TEMP_DIR": str(scratch / "gradio-temp")}) as url:
        yield url


def test_build_is_a_build_folder_of_n_products_in_at_least_100_categories(build):
    folder, figures = build
    rows = pq.read_table(shard_files(folder), columns=["id", "label", "image"])
    index = load_index(folder)
    source = load_index(scale.DEFAULT_SOURCE)
    assert len(index) == rows.num_rows == N and figures["items"] == N
    assert index.metadata.model_id == source.metadata.model_id
    assert index.metadata.weights_fingerprint == source.metadata.weights_fingerprint
    assert len(set(rows.column("id").to_pylist())) == N
    assert len(set(rows.column("label").to_pylist())) == figures["categories"] >= 100
    # Thumbnails are the source's own JPEG bytes, copied.
    source_images = set(source.dataset.data.table.column("image").combine_chunks().field("bytes").to_pylist())
    assert set(rows.column("image").combine_chunks().field("bytes").to_pylist()) <= source_images
    vectors = np.asarray(index.embeddings[:500])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    # The ANN index really probes: fewer cells scanned than there are.
    search = json.loads((folder / "lookalike.json").read_text())["search"]
    assert search["method"] == "ivf-sq8" and index.search.index.nprobe < index.search.index.nlist
    # About as crowded as the real embeddings it comes from (not far-apart synthetic clusters).
    assert abs(figures["generated"]["mean_pair_cosine"] - figures["source"]["mean_pair_cosine"]) < 0.1


def test_page_and_api_do_not_list_products_and_searches_answer(build, served):
    folder, _ = build
    ids = pq.read_table(shard_files(folder)[0], columns=["id"]).column("id").to_pylist()
    for path in ("config", "gradio_api/info"):
        body = httpx.get(served + path, timeout=60).text
        assert len(body.encode()) <= 1_000_000, path
        assert not any(product in body for product in ids[:200]), f"{path} lists product ids"
    client = Client(served, verbose=False)
    photo = handle_file(str(scale.DEFAULT_SOURCE.parent.parent / "examples" / "fruit" / "apple-red.jpg"))
    category = pq.read_table(shard_files(folder)[0], columns=["label"]).column("label")[0].as_py()
    gallery, results, _ = client.predict(
        photo, K, "cosine", folder.name, [category], False, [], True, api_name="/search"
    )
    assert len(gallery) == len(results) == K
    assert {r["label"] for r in results} == {category}
    gallery, results, _ = client.predict(photo, K, "cosine", folder.name, api_name="/recommend")
    assert len(results) == K and [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)


def resident_file_mb() -> float:
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in status if line.startswith("RssFile:")) / 1024


def test_scattered_rows_are_read_from_the_file_not_kept_resident(tmp_path):
    matrix = np.random.default_rng(0).standard_normal((40_000, 640)).astype(np.float32)  # 100 MB
    np.save(tmp_path / "m.npy", matrix)
    mapped = np.load(tmp_path / "m.npy", mmap_mode="r")
    reader = row_reader(mapped)
    rows = np.arange(0, 40_000, 20)
    before = resident_file_mb()
    np.testing.assert_array_equal(reader[rows], matrix[rows])
    np.testing.assert_array_equal(reader[7], matrix[7])
    np.testing.assert_array_equal(reader[100:200], matrix[100:200])
    np.testing.assert_array_equal(np.asarray(reader), matrix)
    assert resident_file_mb() - before < 10  # through the map, these 2,000 rows keep up to all 100 MB
    assert row_reader(matrix) is matrix  # an array in memory is read as it is


def test_the_matrix_file_reads_rows_in_the_order_asked_for(tmp_path):
    matrix = np.arange(40, dtype=np.float32).reshape(10, 4)
    np.save(tmp_path / "m.npy", matrix)
    rows = MatrixFile(tmp_path / "m.npy")
    for key in ([3, 4, 5, 9, 0, 1], [7], [2, 2, 3], np.arange(10)):
        np.testing.assert_array_equal(rows[np.asarray(key)], matrix[np.asarray(key)])
