"""The JSON API beside the page: one request per answer, the page's search underneath, immutable
thumbnails, readable 4xx, a bounded queue that answers 429 with Retry-After, CORS only where allowed."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import gradio as gr
import httpx
import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from lookalike.app.json_api import API_PREFIX, ApiConfig, json_api
from lookalike.app.layout import AppConfig, build_demo
from lookalike.app.service import LookalikeService, Query, SearchRequest
from lookalike.app.traffic import QueueSlots, share_fairly
from lookalike.index.serving_cache import CACHE_DIR, EMBEDDINGS_FILE
from tests.local_server import free_port, running_app
from tests.test_neighbours import recommender_with
from tests.tolerances import assert_same_results


@pytest.fixture(scope="module")
def service(small_index_dir):
    return LookalikeService.from_embeddings_dir(small_index_dir.parent)


@pytest.fixture(scope="module")
def client(service):
    return TestClient(json_api(service))


def photo_post(client, path, **params):
    return client.post("/similar", params=params, files={"image": (path.name, path.read_bytes(), "image/jpeg")})


def test_a_photo_answers_like_the_page(client, service, example_photo):
    response = photo_post(client, example_photo, k=5)
    assert response.status_code == 200
    answer = response.json()
    page = service.search(Query(images=(str(example_photo),)), SearchRequest(k=5))
    assert [p["id"] for p in answer["products"]] == [r["id"] for r in page.results]
    assert [p["score"] for p in answer["products"]] == pytest.approx([r["score"] for r in page.results], abs=1e-5)
    assert answer["backbone"] == "efficientnet-lite0" and answer["took_ms"] > 0 and not answer["precomputed"]
    assert all(p["image_url"].startswith("http://testserver/api/v1/images/") for p in answer["products"])


def test_the_answer_names_the_backbone_as_served_so_it_can_be_sent_back(small_index_dir, tmp_path, example_photo):
    # Served under another name than its model's id, as a fine-tuned build (models/...) is.
    (tmp_path / "shop-build").symlink_to(small_index_dir)
    client = TestClient(json_api(LookalikeService.from_embeddings_dir(tmp_path)))
    first = photo_post(client, example_photo, k=3).json()
    assert first["backbone"] == "shop-build"
    again = photo_post(client, example_photo, k=3, backbone=first["backbone"])
    assert again.status_code == 200 and again.json()["backbone"] == "shop-build"


def test_a_catalog_product_answers_from_the_precomputed_neighbours(client, service):
    item = service.recommender_for(None).ids[3]
    answer = client.get("/similar", params={"id": item, "k": 6}).json()
    assert answer["precomputed"] and len(answer["products"]) == 6
    assert item not in [p["id"] for p in answer["products"]]
    page = service.search(Query(item_ids=(item,)), SearchRequest(k=6))
    assert [p["id"] for p in answer["products"]] == [r["id"] for r in page.results]
    filtered = client.get("/similar", params={"id": item, "k": 6, "categories": ["money", "fruit"]}).json()
    assert not filtered["precomputed"] and {p["label"] for p in filtered["products"]} <= {"money", "fruit"}


def test_thumbnails_are_immutable_files_caches_keep(client, example_photo):
    url = photo_post(client, example_photo, k=2).json()["products"][0]["image_url"]
    image = client.get(url.removeprefix("http://testserver/api/v1"))
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert image.headers["cache-control"] == "public, max-age=31536000, immutable" and image.headers["etag"]
    again = client.get(url.removeprefix("http://testserver/api/v1"), headers={"If-None-Match": image.headers["etag"]})
    assert again.status_code == 304
    assert client.get("/images/../../etc/passwd").status_code == 404
    assert client.get("/images/" + "0" * 32 + ".jpg").status_code == 404


@pytest.mark.parametrize(
    ("call", "status", "message"),
    [
        (lambda c, p, i: c.post("/similar"), 400, "multipart form field 'image'"),
        (lambda c, p, i: c.post("/similar", files={"image": ("x.jpg", b"<html>", "image/jpeg")}), 422, "image"),
        (lambda c, p, i: c.post("/similar", files={"photo": ("x.jpg", p.read_bytes(), "image/jpeg")}), 400, "'image'"),
        (lambda c, p, i: c.get("/similar", params={"id": "nope"}), 404, "No product with id 'nope'"),
        (lambda c, p, i: c.get("/similar", params={"id": i, "k": 0}), 400, "K must be between 1 and 24"),
        (lambda c, p, i: c.get("/similar", params={"id": i, "k": "many"}), 422, "k"),
        (lambda c, p, i: c.get("/similar", params={"id": i, "backbone": "vgg"}), 400, "Unknown backbone 'vgg'"),
        (lambda c, p, i: c.get("/similar", params={"id": i, "categories": ["shoes"]}), 400, "Unknown categories"),
        (lambda c, p, i: c.get("/similar", params={"id": i, "facets": ["brand"]}), 400, "attribute=value"),
        (lambda c, p, i: c.get("/similar", params={"id": i, "price_min": 9, "price_max": 2}), 400, "above price_max"),
        (lambda c, p, i: c.get("/similar", params={"id": i, "in_stock_only": True}), 400, "does not say"),
        (lambda c, p, i: c.get("/similar"), 422, "id"),
    ],
)
def test_bad_requests_get_a_4xx_with_the_pages_message(client, service, example_photo, call, status, message):
    response = call(client, example_photo, service.recommender_for(None).ids[0])
    assert response.status_code == status, response.text
    assert message in str(response.json()["detail"])


def test_a_photo_over_the_upload_cap_is_refused_unread(client):
    response = client.post("/similar", files={"image": ("big.jpg", b"\xff" * (11 * 1024 * 1024), "image/jpeg")})
    assert response.status_code == 413 and "10 MB limit" in response.json()["detail"]


def test_the_openapi_description_and_docs_page(client):
    spec = client.get("/openapi.json").json()
    assert set(spec["paths"]["/similar"]) == {"get", "post"}
    names = {p["name"] for p in spec["paths"]["/similar"]["get"]["parameters"]}
    assert {"id", "k", "backbone", "categories", "facets", "price_min", "price_max", "in_stock_only"} <= names
    assert "openapi.json" in client.get("/docs").text


def held_service(service, release: threading.Event) -> LookalikeService:
    """`service` whose searches wait for `release` first."""
    held = LookalikeService(service.recommenders, max_k=service.max_k, thumbnails=service.thumbnails)

    def search(query, request):
        release.wait(10)
        return service.search(query, request)

    held.search = search
    return held


@pytest.mark.parametrize("limit", ["concurrency", "max_waiting", "max_uploading"])
def test_a_limit_of_no_places_is_refused_at_start_up(limit):
    with pytest.raises(ValueError, match=f"{limit} must be at least 1"):
        ApiConfig(**{limit: 0})


def live_search_params(service) -> dict[str, str]:
    """A catalog product's search that its precomputed neighbours cannot answer (a category filter)."""
    recommender = service.recommender_for(None)
    return {"id": recommender.ids[0], "categories": recommender.labels[0]}


def test_past_the_queue_requests_hear_429_with_retry_after(service):
    """One search at a time, one waiting: of six at once, one runs, one waits, four are told to come back."""
    release = threading.Event()
    api = json_api(held_service(service, release), ApiConfig(concurrency=1, max_waiting=1, retry_after_seconds=3))
    params = live_search_params(service)

    async def burst():
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            calls = [asyncio.create_task(http.get("/similar", params=params)) for _ in range(6)]
            await asyncio.sleep(0.5)
            release.set()
            return await asyncio.gather(*calls)

    responses = asyncio.run(burst())
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 429, 429, 429, 429]
    refused = [r for r in responses if r.status_code == 429]
    assert all(r.headers["retry-after"] == "3" and "busy" in r.json()["detail"] for r in refused)


def served_like(service, **changes) -> LookalikeService:
    """`service`'s default build with some of its index's fields changed (no neighbours, a mapped matrix)."""
    recommender = recommender_with(service.recommender_for(None), **changes)
    return LookalikeService({service.default_backbone: recommender}, max_k=service.max_k)


def by_id_while_the_line_is_full(service, ids: list[str]):
    """GETs of `ids` while the one search slot and the one waiting place are taken; then a search past the
    line, and the two held searches once released."""
    release = threading.Event()
    api = json_api(held_service(service, release), ApiConfig(concurrency=1, max_waiting=1))

    async def calls():
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            held = [asyncio.create_task(http.get("/similar", params=live_search_params(service))) for _ in range(2)]
            await until(lambda: api.state.admission.waiting == 1)
            by_id = await asyncio.gather(*(http.get("/similar", params={"id": item, "k": 5}) for item in ids))
            refused = await http.get("/similar", params=live_search_params(service))
            release.set()
            held = await asyncio.gather(*held)
            after = await http.get("/similar", params={"id": ids[0], "k": 5})
            return by_id, refused, held, after

    by_id, refused, held, after = asyncio.run(calls())
    assert refused.status_code == 429 and [r.status_code for r in held] == [200, 200]
    assert after.status_code == 200 and after.json()["precomputed"]
    return by_id


def test_precomputed_answers_need_no_place_in_the_line(service):
    """While the line is full, the build's answers are still given, and they are a live search's."""
    ids = service.recommender_for(None).ids[:6]
    live = served_like(service, neighbours=None)
    for item, response in zip(ids, by_id_while_the_line_is_full(service, ids), strict=True):
        answer = response.json()
        assert response.status_code == 200 and answer["precomputed"]
        searched = live.search(Query(item_ids=(item,)), SearchRequest(k=5)).results
        products = [{name: v for name, v in p.items() if name != "image_url"} for p in answer["products"]]
        assert_same_results(products, searched)


def test_a_memory_mapped_builds_answers_wait_in_the_line(service, small_index_dir):
    """A large build's rows are read from its file, which may wait for the disk: its precomputed answers
    run in a slot like a search, never on the event loop, so a full line refuses them too."""
    mapped = np.load(small_index_dir / CACHE_DIR / EMBEDDINGS_FILE, mmap_mode="r")
    large = served_like(service, embeddings=mapped)
    ids = large.recommender_for(None).ids[:3]
    assert [r.status_code for r in by_id_while_the_line_is_full(large, ids)] == [429, 429, 429]


def multipart(photo: bytes) -> bytes:
    part = b"--b\r\nContent-Disposition: form-data; name=image; filename=p.jpg\r\n\r\n"
    return part + photo + b"\r\n--b--\r\n"


def post_scope(path: str = "/similar") -> dict:
    """An ASGI request of a multipart POST, for calls whose body a test hands over itself."""
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(b"host", b"api"), (b"content-type", b"multipart/form-data; boundary=b")],
        "client": ("127.0.0.1", 1), "server": ("api", 80),
    }  # fmt: skip


async def until(condition, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


def test_an_upload_arriving_at_a_full_line_is_refused_unread(service, example_photo):
    """Past the queue, a POST hears 429 before its body is read: a flood of big uploads is not parsed."""
    release = threading.Event()
    api = json_api(held_service(service, release), ApiConfig(concurrency=1, max_waiting=1))
    reads, sent = [], []

    async def receive():
        reads.append(True)
        return {"type": "http.request", "body": multipart(example_photo.read_bytes()), "more_body": False}

    async def send(message):
        sent.append(message)

    async def flood():
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            held = [asyncio.create_task(http.get("/similar", params=live_search_params(service))) for _ in range(2)]
            await until(lambda: api.state.admission.waiting == 1)  # one runs (held), one waits: the line is full
            await api(post_scope(), receive, send)
            release.set()
            return await asyncio.gather(*held)

    assert [r.status_code for r in asyncio.run(flood())] == [200, 200]
    assert sent[0]["status"] == 429 and not reads


def test_a_stalled_upload_holds_no_place_of_the_line_and_times_out(service, example_photo):
    """A photo that never finishes arriving refuses other uploads only (their own bound), never a search,
    and hears 408 after upload_seconds; a refused or bad upload gives its room back."""
    config = ApiConfig(concurrency=2, max_waiting=1, max_uploading=1, upload_seconds=1.0)
    api = json_api(service, config)
    photo = example_photo.read_bytes()
    sent, first_part = [], [{"type": "http.request", "body": multipart(photo)[:100], "more_body": True}]

    async def stalled_receive():
        if first_part:
            return first_part.pop()
        await asyncio.Event().wait()  # the rest never comes

    async def send(message):
        sent.append(message)

    async def calls():
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            stalled = asyncio.create_task(api(post_scope(), stalled_receive, send))
            await until(lambda: api.state.admission.uploading == 1)
            item = service.recommender_for(None).ids[0]
            by_id = await http.get("/similar", params={"id": item, "k": 3})
            other = await http.post("/similar", files={"image": ("p.jpg", photo, "image/jpeg")})
            await stalled
            bad = await http.post("/similar", files={"picture": ("p.jpg", photo, "image/jpeg")})
            good = await http.post("/similar", files={"image": ("p.jpg", photo, "image/jpeg")})
            return by_id, other, bad, good

    by_id, other, bad, good = asyncio.run(calls())
    assert by_id.status_code == 200 and other.status_code == 429 and "retry-after" in other.headers
    assert sent[0]["status"] == 408
    assert bad.status_code == 400 and good.status_code == 200 and api.state.admission.uploading == 0


def test_cors_only_for_the_shops_own_origins(service):
    closed = TestClient(json_api(service))
    preflight = {"Origin": "https://shop.example", "Access-Control-Request-Method": "GET"}
    assert "access-control-allow-origin" not in closed.options("/similar", headers=preflight).headers
    opened = TestClient(json_api(service, ApiConfig(cors_origins=("https://shop.example",))))
    assert (
        opened.options("/similar", headers=preflight).headers["access-control-allow-origin"] == "https://shop.example"
    )
    other = {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    assert "access-control-allow-origin" not in opened.options("/similar", headers=other).headers


@pytest.mark.slow
def test_the_api_is_served_beside_the_page(small_index_dir, tmp_path, example_photo):
    """`python app.py`: the JSON routes answer on the page's port, and the page is still there."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "efficientnet-lite0").symlink_to(small_index_dir)
    cors = {"LOOKALIKE_CORS_ORIGINS": "https://shop.example"}
    with running_app(served, tmp_path / "app.log", cors) as url, httpx.Client(base_url=url, timeout=60) as http:
        files = {"image": (example_photo.name, example_photo.read_bytes(), "image/jpeg")}
        answer = http.post("api/v1/similar", params={"k": 4}, files=files).json()
        assert len(answer["products"]) == 4
        item = answer["products"][0]["id"]
        by_id = http.get("api/v1/similar", params={"id": item, "k": 4}, headers={"Origin": "https://shop.example"})
        assert by_id.json()["precomputed"] and by_id.headers["access-control-allow-origin"] == "https://shop.example"
        assert http.get(answer["products"][0]["image_url"]).headers["content-type"] == "image/jpeg"
        # As deployed (not a loopback host), another site is refused: Gradio's own CORS layer, which lets
        # any origin call the page's routes, does not reach the API beside it.
        deployed = {"Host": "lookalike.example", "Origin": "https://evil.example"}
        refused = http.get("api/v1/similar", params={"id": item, "k": 4}, headers=deployed)
        assert refused.status_code == 200 and "access-control-allow-origin" not in refused.headers
        assert http.get("api/v1/openapi.json").status_code == 200
        assert "lookalike-similar" in http.get("api/v1/widget.js").text
        assert "Lookalike" in http.get("").text  # the page


def test_the_page_and_the_api_share_one_limit_of_model_slots(service, example_photo):
    """A burst through both doors at once (Gradio's /recommend and the JSON API): never more searches
    running together than the page's model concurrency, because the API takes the page's own slots."""
    limit, lock, running, most, doors = 2, threading.Lock(), [0], [0], set()
    counted = LookalikeService(service.recommenders, max_k=service.max_k, thumbnails=service.thumbnails)

    def search(query, request):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            doors.add("api" if query.item_ids else "page")
        try:
            time.sleep(0.15)  # long enough for every caller of the burst to be waiting
            return service.search(query, request)
        finally:
            with lock:
                running[0] -= 1

    counted.search = search
    demo = share_fairly(build_demo(counted, AppConfig(model_concurrency=limit)))
    server = FastAPI()
    server.mount(API_PREFIX, json_api(counted, ApiConfig(concurrency=limit), slots=QueueSlots(demo)))
    server = gr.mount_gradio_app(server, demo, path="")
    port = free_port()
    uvicorn_server = uvicorn.Server(uvicorn.Config(server, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}/"

    def through_the_page(_) -> bool:
        with httpx.Client(base_url=url, timeout=60) as http:
            files = {"files": (example_photo.name, example_photo.read_bytes(), "image/jpeg")}
            upload = http.post("gradio_api/upload", files=files).json()[0]
            file_data = {"path": upload, "meta": {"_type": "gradio.FileData"}}
            event = http.post("gradio_api/call/recommend", json={"data": [file_data, 3, "cosine", None]}).json()
            return "event: complete" in http.get(f"gradio_api/call/recommend/{event['event_id']}").text

    def through_the_api(_) -> bool:
        params = {**live_search_params(service), "k": 3}
        return httpx.get(url + "api/v1/similar", params=params, timeout=60).status_code == 200

    try:
        deadline = time.monotonic() + 30
        while not uvicorn_server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        with ThreadPoolExecutor(16) as pool:
            page = pool.map(through_the_page, range(8))
            api = pool.map(through_the_api, range(8))
            answered = [*page, *api]
    finally:
        uvicorn_server.should_exit = True
        thread.join(30)
    assert all(answered) and doors == {"page", "api"}
    assert most[0] == limit  # the burst filled the slots, and never went past them


def test_every_search_request_field_is_a_parameter_that_reaches_the_search(service):
    """The parameters are made from SearchRequest: each field is one, under its name, and arrives as sent."""
    names = {f.name for f in dataclasses.fields(SearchRequest)}
    spec = TestClient(json_api(service)).get("/openapi.json").json()["paths"]["/similar"]
    assert {p["name"] for p in spec["get"]["parameters"]} == names | {"id"}
    assert {p["name"] for p in spec["post"]["parameters"]} == names
    received = []
    capturing = LookalikeService(service.recommenders, max_k=service.max_k, thumbnails=service.thumbnails)
    capturing.search = lambda query, request: received.append(request) or service.search(query, SearchRequest())
    ids = service.recommender_for(None).ids
    sent = {
        "k": 5,
        "metric": "euclidean",
        "backbone": "efficientnet-lite0",
        "categories": ["fruit", "money"],
        "exclude_own": True,
        "not_wanted": [ids[1], ids[2]],
        "collapse": False,
        "facets": ["brand=Acme"],
        "price_min": 1.5,
        "price_max": 9.0,
        "in_stock_only": True,
    }
    assert set(sent) == names, "a new SearchRequest field: add it here with a value other than its default"
    assert TestClient(json_api(capturing)).get("/similar", params={"id": ids[0], **sent}).status_code == 200
    assert received == [SearchRequest.from_values(**sent)]


def test_not_wanted_products_are_never_answered(client, service):
    item = service.recommender_for(None).ids[3]
    first = [p["id"] for p in client.get("/similar", params={"id": item, "k": 4}).json()["products"]]
    steered = client.get("/similar", params={"id": item, "k": 4, "not_wanted": first[:2]}).json()["products"]
    assert len(steered) == 4 and not {p["id"] for p in steered} & set(first[:2])
