"""A shop's product feed end to end: its photos from a loopback server, bad rows listed, a rebuild that
downloads nothing, and results that carry the products, one per group, holding every product filter."""

from __future__ import annotations

import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
from gradio_client import Client, handle_file
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lookalike.app.handlers import Handlers
from lookalike.app.service import LookalikeService, Query, RequestError, SearchRequest
from lookalike.catalog import REPO_ROOT, CatalogSource, load_catalog
from lookalike.catalog.download import DownloadConfig
from lookalike.index.serving_cache import shard_files
from lookalike.indexing.builder import BuildConfig, build_index
from tests.local_server import running_app
from tests.test_neighbours import recommender_with
from tests.tolerances import FLOAT32_DOT_TOLERANCE, assert_same_results

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import sample_shop  # a script, not a package

# Tiny timeouts: the slow image (90 s) must cost seconds, not minutes, and the build stays bounded.
DOWNLOADS = {"read_timeout": 1.0, "deadline": 2.0, "retries": 1, "backoff": 0.1}
EXAMPLE = REPO_ROOT / "examples" / "fruit" / sorted(p.name for p in (REPO_ROOT / "examples" / "fruit").iterdir())[0]


@pytest.fixture(scope="module")
def shop_build(tmp_path_factory):
    """The sample feed built twice from its loopback shop: both reports, the server's counters, the folder."""
    root = tmp_path_factory.mktemp("shop")
    with sample_shop.serving(sample_shop.ShopServer()) as shop:
        rows = sample_shop.sample_products(shop)
        feed = sample_shop.write_tsv(rows, root / "feed.tsv")
        sample_shop.write_rss(rows, root / "feed.xml")
        config = BuildConfig(
            source=CatalogSource(str(feed)),
            output=root / "embeddings" / "shop",
            download=DownloadConfig(cache_dir=root / "downloads", **DOWNLOADS),
        )
        started = time.monotonic()
        first = build_index(config, show_progress=False)
        first_seconds = time.monotonic() - started
        bodies_after_first = sum(shop.bodies_sent.values())
        second = build_index(config, show_progress=False)
        bodies_after_second = sum(shop.bodies_sent.values())
    return {
        "root": root,
        "first": first,
        "second": second,
        "first_seconds": first_seconds,
        "bodies": (bodies_after_first, bodies_after_second),
        "rows": rows,
    }


@pytest.fixture(scope="module")
def shop_service(shop_build):
    return LookalikeService.from_embeddings_dir(shop_build["root"] / "embeddings")


def test_the_build_lists_every_unusable_row_and_goes_on(shop_build):
    first = shop_build["first"]
    reasons = {row.row: row.reason for row in first.rejected}
    assert reasons["bad-404"].startswith("HTTP 404")
    assert reasons["bad-html"].startswith("not an image (text/html)")
    assert reasons["bad-huge"].startswith("too large")
    assert reasons["bad-slow"].startswith("timed out")
    assert any("no id" in reason for reason in reasons.values())
    assert any("'ask us'" in reason for reason in reasons.values())
    assert len(reasons) == 6
    # Bounded: the 90 s server and the 40 MB body cost their timeouts and caps, not their length.
    assert shop_build["first_seconds"] < 120
    good_products = [row for row in shop_build["rows"] if row["id"] and not row["id"].startswith("bad-")]
    assert first.n_indexed == 2 * len(good_products)  # a main and an additional photo each


def test_a_second_build_downloads_no_image_body_again(shop_build):
    first, second = shop_build["first"], shop_build["second"]
    assert first.downloads.downloaded == 32 and first.downloads.failed == 4
    assert second.downloads.downloaded == 0 and second.downloads.revalidated == 32
    assert shop_build["bodies"][0] == shop_build["bodies"][1] == 32
    assert second.n_reused == second.n_indexed and second.n_embedded == 0


def test_the_build_folder_holds_the_product_columns_and_no_script_link(shop_build):
    build = shop_build["root"] / "embeddings" / "shop"
    table = pq.read_table(shard_files(build))
    for column in ("product_id", "title", "price", "sale_price", "currency", "link", "brand", "availability"):
        assert column in table.column_names
    assert table.schema.field("price").type == "double"
    links = [link for link in table.column("link").to_pylist() if link]
    assert links and all(link.startswith(("http://", "https://")) for link in links)
    row = table.column("id").to_pylist().index("script-link")
    assert table.column("link")[row].as_py() is None and table.column("title")[row].as_py()
    card = (build / "README.md").read_text(encoding="utf-8")
    assert "| `price` | double |" in card and "| `item_group_id` | string |" in card


def test_the_xml_feed_reads_as_the_same_catalog(shop_build):
    tsv = load_catalog(CatalogSource(str(shop_build["root"] / "feed.tsv")))
    xml = load_catalog(CatalogSource(str(shop_build["root"] / "feed.xml")))
    assert [(i.id, i.label, dict(i.product)) for i in tsv.items] == [
        (i.id, i.label, dict(i.product)) for i in xml.items
    ]


def test_results_carry_the_product_once_per_group(shop_service):
    answer = shop_service.search(Query(images=(str(EXAMPLE),)), SearchRequest(k=10))
    assert len(answer.results) == 10
    for result in answer.results:
        assert {"title", "price", "currency", "link", "brand", "availability"} <= set(result)
        assert result["link"].startswith("http://127.0.0.1:")
    groups = [r.get("item_group_id") or r["id"] for r in answer.results]
    assert len(set(groups)) == len(groups)
    assert all("#" not in r["id"] for r in answer.results)  # a product, not one of its photos
    sized = [r for r in answer.results if r.get("item_group_id")]
    assert sized and all(len(r["variants"]) == 2 for r in sized)
    captions = [caption for _, caption in answer.gallery]
    assert all(" EUR" in caption for caption in captions)
    assert any("+2 sizes" in caption for caption in captions)
    assert "**In the shop:**" in answer.summary and "](http://127.0.0.1:" in answer.summary
    assert "products (54 photos)" in answer.summary


def test_a_catalog_product_never_answers_its_own_photos_or_variants(shop_service):
    answer = shop_service.search(Query(item_ids=("sku-003-S",)), SearchRequest(k=20, collapse=False))
    ids = {r["id"] for r in answer.results}
    assert not ids & {"sku-003-S", "sku-003-M", "sku-003-L"}


def stood_for(recommendations) -> list[dict]:
    """Each result as the photos it stands for (its own and the near-identical ones folded into it) and its
    score: of near-identical copies, whose scores tie, rounding decides which stands for the others."""
    return [{"id": sorted({r.id, *r.near_duplicates}), "score": r.score} for r in recommendations]


@pytest.mark.parametrize("k", [1, 6, 24])
@pytest.mark.parametrize("collapse", [True, False])
def test_precomputed_answers_of_products_with_variants_equal_a_live_search(shop_service, k, collapse):
    """Several photos, variants and near-identical copies: the build's answer is the live search's."""
    recommender = shop_service.recommender_for(None)
    live = recommender_with(recommender, neighbours=None)
    request = SearchRequest(k=k, collapse=collapse).recommendation()
    for item_id in recommender.ids:
        fast, slow = recommender.precomputed(request, item_id), live.search(request, item_ids=[item_id])
        if fast is None:  # K beyond the precomputed rows' products: the search goes deeper
            assert k > 6 and not slow.precomputed
            continue
        assert fast.precomputed and not slow.precomputed
        assert_same_results(stood_for(fast.items), stood_for(slow.items))
        for mine, theirs in zip(fast.items, slow.items, strict=True):
            if mine.id == theirs.id:  # the same photo: the same product, fields and variants
                assert {**mine.as_dict(), "score": 0} == {**theirs.as_dict(), "score": 0}


def _passes(row: dict, request: SearchRequest) -> bool:
    by_attribute: dict[str, set[str]] = {}
    for facet in request.facets:
        attribute, _, value = facet.partition("=")
        by_attribute.setdefault(attribute, set()).add(value)
    if any(row.get(attribute) not in values for attribute, values in by_attribute.items()):
        return False
    paid = row["sale_price"] if row.get("sale_price") is not None else row.get("price")
    if request.price_min is not None and (paid is None or paid < request.price_min):
        return False
    if request.price_max is not None and (paid is None or paid > request.price_max):
        return False
    return not request.in_stock_only or row.get("availability") == "in_stock"


FACETS = [f"brand={b}" for b in sample_shop.BRANDS] + [f"color={c}" for c in sample_shop.COLOURS] + ["size=M"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    facets=st.lists(st.sampled_from(FACETS), max_size=3, unique=True),
    price_min=st.none() | st.sampled_from([0.0, 20.0, 50.0]),
    price_max=st.none() | st.sampled_from([40.0, 80.0, 200.0]),
    in_stock_only=st.booleans(),
    k=st.integers(1, 24),
    query=st.sampled_from(["sku-001", "sku-003-M", "sku-010", "sku-014"]),
)
def test_every_result_holds_the_product_filters_against_a_brute_force_reference(
    shop_service, facets, price_min, price_max, in_stock_only, k, query
):
    if price_min is not None and price_max is not None and price_min > price_max:
        price_min, price_max = price_max, price_min
    request = SearchRequest(
        k=k, facets=tuple(facets), price_min=price_min, price_max=price_max, in_stock_only=in_stock_only, collapse=False
    )
    recommender = shop_service.recommender_for(None)
    table = recommender.index.dataset.data.table.to_pylist()
    answer = shop_service.search(Query(item_ids=(query,)), request)
    # The reference: each group's best row among the rows that pass, the query's group left out.
    own_group = next(r.get("item_group_id") or r["product_id"] for r in table if r["id"] == query)
    vector = recommender.index.embeddings[recommender.row_of(query)]
    best: dict[str, tuple[float, dict]] = {}
    for row_number, row in enumerate(table):
        group = row.get("item_group_id") or row["product_id"]
        if group == own_group or not _passes(row, request):
            continue
        score = float(recommender.index.embeddings[row_number] @ vector)
        if group not in best or score > best[group][0]:
            best[group] = (score, row)
    expected = sorted(best.values(), key=lambda pair: -pair[0])[:k]
    assert len(answer.results) == len(expected)
    for result, (score, _) in zip(answer.results, expected, strict=True):
        assert _passes(result, request)
        assert result["score"] == pytest.approx(score, abs=FLOAT32_DOT_TOLERANCE + 1e-6)  # rounded to 6 places
    assert len({r.get("item_group_id") or r["id"] for r in answer.results}) == len(answer.results)


def test_bad_product_filters_are_explained(shop_service):
    handlers = Handlers(shop_service)
    with pytest.raises(Exception, match="attribute=value"):
        handlers.search(str(EXAMPLE), 8, "cosine", None, [], False, [], True, ["brand"])
    with pytest.raises(Exception, match="no attribute 'flavour'"):
        handlers.search(str(EXAMPLE), 8, "cosine", None, [], False, [], True, ["flavour=mint"])
    with pytest.raises(RequestError, match="price_min must be a number"):
        SearchRequest.from_values(price_min="cheap")
    # The page's number fields send 0 once shown: no bound, not "only free products".
    assert SearchRequest.from_values(price_min=0, price_max=0) == SearchRequest()
    with pytest.raises(Exception, match="above price_max"):
        handlers.search(str(EXAMPLE), 8, "cosine", None, [], False, [], True, [], 50, 10)


def test_a_permalink_keeps_the_product_filters():
    request = SearchRequest(facets=("brand=Acme", "color=red"), price_min=10, price_max=99.5, in_stock_only=True)
    link = Query(item_ids=("sku-001",)).permalink(request)
    assert "facet=brand%3DAcme" in link and "price_max=99.5" in link and "in_stock=1" in link
    from starlette.datastructures import QueryParams

    assert SearchRequest.from_link(QueryParams(link[1:]), SearchRequest()) == request


@pytest.mark.slow
def test_the_filters_hold_through_the_running_app(shop_build, tmp_path):
    """`/search` as an API client calls it, on `python app.py` serving the feed's build."""
    with running_app(shop_build["root"] / "embeddings", tmp_path / "app.log") as url:
        client = Client(url, verbose=False)
        filters = [[], False, [], True, ["brand=Acme", "brand=Zeta"], None, 150.0, True]
        _, results, summary = client.predict(
            handle_file(str(EXAMPLE)), 6, "cosine", "shop", *filters, api_name="/search"
        )
    assert results and all(r["brand"] in {"Acme", "Zeta"} and r["availability"] == "in_stock" for r in results)
    assert all((r.get("sale_price") or r["price"]) <= 150 for r in results)
    assert "Filters: brand=Acme or brand=Zeta · price 0–150 · in stock" in summary
    assert np.all(np.diff([r["score"] for r in results]) <= 0)
