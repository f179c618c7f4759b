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
from lookalike.app.service import LookalikeService, Query, SearchRequest
from lookalike.catalog.product import PRODUCT_COLUMNS
from lookalike.index.serving_cache import MatrixFile, release_mapped_pages, row_reader, served_matrix, shard_files
from lookalike.index.store import load_index
from tests.local_server import running_app

N = 3_000
K = 5
PHOTO = scale.DEFAULT_SOURCE.parent.parent / "examples" / "fruit" / "apple-red.jpg"
PRICE_RANGE = (20.0, 200.0)


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
    photo = handle_file(str(PHOTO))
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


def resident_mb_of(path: Path) -> float:
    """This process's resident pages of the maps of one file (/proc/self/smaps)."""
    target, kb, inside = str(path.resolve()), 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if not fields[0].endswith(":"):  # a mapping's header: address, perms, offset, device, inode, path
            inside = len(fields) == 6 and fields[5] == target
        elif inside and fields[0] == "Rss:":
            kb += int(fields[1])
    return kb / 1024


def test_released_pages_of_a_read_only_map_leave_the_resident_set_and_read_the_same(tmp_path):
    matrix = np.random.default_rng(1).standard_normal((10_000, 640)).astype(np.float32)  # 25 MB
    np.save(tmp_path / "m.npy", matrix)
    mapped = np.load(tmp_path / "m.npy", mmap_mode="r")
    total = float(mapped.sum(dtype=np.float64))  # every page read, so every page resident
    assert resident_mb_of(tmp_path / "m.npy") > 20
    assert release_mapped_pages(tmp_path / "m.npy") >= matrix.nbytes
    assert resident_mb_of(tmp_path / "m.npy") < 1
    assert float(mapped.sum(dtype=np.float64)) == total  # read again from the page cache, unchanged


def test_answers_leave_no_page_of_the_rows_file_resident(build):
    folder, _ = build
    service = LookalikeService.from_embeddings_dir(folder.parent)
    index = service.recommender_for(None).index
    index.release_interval_seconds = 0  # after every answer, not at most once a second
    rows_file = Path(index.dataset.cache_files[0]["filename"])
    assert resident_mb_of(rows_file) == 0  # what the load read of whole columns
    for request in (SearchRequest(k=K), SearchRequest(k=K, in_stock_only=True, price_min=20.0)):
        answer = service.search(Query(images=(str(PHOTO),)), request)
        assert len(answer.results) == K and all(r["title"] for r in answer.results)
        assert resident_mb_of(rows_file) == 0


def test_the_matrix_file_reads_rows_in_the_order_asked_for(tmp_path):
    matrix = np.arange(40, dtype=np.float32).reshape(10, 4)
    np.save(tmp_path / "m.npy", matrix)
    rows = MatrixFile(tmp_path / "m.npy")
    for key in ([3, 4, 5, 9, 0, 1], [7], [2, 2, 3], [9, 8, 7], [], np.arange(10)):
        np.testing.assert_array_equal(rows[np.asarray(key, dtype=int)], matrix[np.asarray(key, dtype=int)])


def test_every_row_carries_its_product_columns_as_written(build):
    folder, _ = build
    table = pq.read_table(shard_files(folder))
    for name in scale.PRODUCT_FIELDS:
        assert table.schema.field(name).type == PRODUCT_COLUMNS[name], name
    labels = table.column("label").to_pylist()
    products = scale.SyntheticProducts.of_rows(0, N)
    assert table.column("id").to_pylist() == products.row_ids()
    written = {name: table.column(name).to_pylist() for name in scale.PRODUCT_FIELDS}
    assert written == {name: column.to_pylist() for name, column in products.columns(labels).items()}
    # A function of the row number: any block of rows gets the same values on its own.
    block = scale.SyntheticProducts.of_rows(1_000, 500).columns(labels[1_000:1_500])
    assert {name: column.to_pylist() for name, column in block.items()} == {
        name: values[1_000:1_500] for name, values in written.items()
    }


def test_products_have_photos_variants_and_a_shops_attributes(build):
    folder, _ = build
    rows = pq.read_table(shard_files(folder)).drop_columns(["image", "embedding"]).to_pylist()
    by_product, by_group = {}, {}
    for row in rows:
        by_product.setdefault(row["product_id"], []).append(row)
        by_group.setdefault(row["item_group_id"], {})[row["product_id"]] = row
    photos = [len(photos) for photos in by_product.values()]
    assert set(photos) == {1, 3} and 0.05 < photos.count(3) / len(photos) < 0.15
    for photos in by_product.values():  # one product: one look, one split, one link
        assert len({(r["label"], r["split"], r["link"]) for r in photos}) == 1
        assert photos[0]["link"] == f"https://shop.example/p/{photos[0]['product_id']}"
    sizes = [len(group) for group in by_group.values()]
    assert set(sizes) == {1, 2, 3, 4, 5} and len(by_group) < len(by_product)
    for group in by_group.values():  # variants differ in size alone
        shared = {(r["title"], r["brand"], r["color"], r["price"], r["label"]) for r in group.values()}
        assert len(shared) == 1 and len({r["size"] for r in group.values()}) == len(group)
    prices = [r["price"] for r in rows]
    assert min(prices) >= 5 and max(prices) <= 500 and 20 < np.median(prices) < 120
    assert 0.75 < sum(r["availability"] == "in_stock" for r in rows) / len(rows) < 0.85
    assert len({r["brand"] for r in rows}) == len(scale.BRANDS) == 50
    assert len({r["color"] for r in rows}) == len(scale.COLOURS) == 12
    assert {r["currency"] for r in rows} == {"EUR"}


@pytest.fixture(scope="module")
def service(build):
    folder, _ = build
    return LookalikeService.from_embeddings_dir(folder)


# Brands and colours to OR (from the catalog's sorted values), a price range. A narrow filter: the ANN
# index scans the few allowed rows alone; a wide one (80 % of rows): FAISS filters while it searches.
FACET_SEARCHES = {
    "brands, colours, price and stock": (4, 3, PRICE_RANGE),
    "stock alone": (0, 0, (None, None)),
}


@pytest.mark.parametrize("n_brands, n_colours, price_range", FACET_SEARCHES.values(), ids=FACET_SEARCHES.keys())
def test_a_facet_filtered_search_holds_its_filters_with_one_product_per_group(
    build, service, n_brands, n_colours, price_range
):
    folder, _ = build
    columns = ["id", "product_id", "item_group_id", "brand", "color", "price", "availability"]
    rows = pq.read_table(shard_files(folder), columns=columns).to_pylist()
    wanted = {
        "brand": sorted({r["brand"] for r in rows})[:n_brands],
        "color": sorted({r["color"] for r in rows})[:n_colours],
    }
    low, high = price_range

    def passes(row: dict) -> bool:
        attributes = all(row[attribute] in values for attribute, values in wanted.items() if values)
        price = (low is None or row["price"] >= low) and (high is None or row["price"] <= high)
        return attributes and price and row["availability"] == "in_stock"

    products_of_group = {}
    for row in rows:
        products_of_group.setdefault(row["item_group_id"], set()).add(row["product_id"])
    facets = [f"{attribute}={value}" for attribute, values in wanted.items() for value in values]
    request = SearchRequest.from_values(k=K, facets=facets, price_min=low, price_max=high, in_stock_only=True)
    own = rows[0]
    for query, own_group in ((Query(images=(str(PHOTO),)), None), (Query(item_ids=(own["id"],)), own["item_group_id"])):
        assert len({r["item_group_id"] for r in rows if passes(r)} - {own_group}) >= K  # enough to fill a page
        results = service.search(query, request).results
        assert len(results) == K
        for result in results:
            assert passes(result), result
            assert set(result.get("variants", [])) == products_of_group[result["item_group_id"]] - {result["id"]}
        groups = {r["item_group_id"] for r in results}
        assert len(groups) == K and own_group not in groups  # one product per group, never the query's


def test_the_api_takes_facets_price_and_stock_after_the_other_filters(build, served):
    folder, _ = build
    brand = pq.read_table(shard_files(folder)[0], columns=["brand"]).column("brand")[0].as_py()
    client = Client(served, verbose=False)
    low, high = PRICE_RANGE
    filters = [[], False, [], True, [f"brand={brand}"], low, high, True]
    _, results, _ = client.predict(handle_file(str(PHOTO)), K, "cosine", folder.name, *filters, api_name="/search")
    assert len(results) == K and {r["brand"] for r in results} == {brand}
    assert all(low <= r["price"] <= high and r["availability"] == "in_stock" for r in results)
    assert all(r["title"] and r["link"].startswith("https://shop.example/p/") for r in results)


def test_a_small_matrix_is_served_from_memory(tmp_path):
    # Each file read lets go of the GIL; a server thread reading an answer's rows one by one then waits
    # for the event loop, so a matrix this small is copied into memory once, read-only, instead.
    matrix = np.random.default_rng(1).standard_normal((300, 64)).astype(np.float32)
    np.save(tmp_path / "m.npy", matrix)
    resident = served_matrix(tmp_path / "m.npy")
    assert type(resident) is np.ndarray and not resident.flags.writeable
    assert row_reader(resident) is resident  # the search and the recommender share this one copy
    np.testing.assert_array_equal(resident[[5, 3, 299]], matrix[[5, 3, 299]])
    mapped = served_matrix(tmp_path / "m.npy", resident_up_to=matrix.nbytes - 1)
    assert isinstance(mapped, np.memmap) and isinstance(row_reader(mapped), MatrixFile)
