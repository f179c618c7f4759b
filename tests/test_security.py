"""The running app serves only its own outputs, caps uploads, and the repo holds no secrets."""

from __future__ import annotations

import base64
import inspect
import json
import re
import subprocess
import time
from urllib.parse import quote

import httpx
import pytest

import build_index
from lookalike.app.service import SearchRequest
from lookalike.catalog import REPO_ROOT
from lookalike.index.store import push_index_to_hub
from tests.upload_cases import decompression_bomb_png, over_pixel_limit_png, oversized_png

OUTSIDE_FILES = [
    "/etc/passwd",
    "../app.py",
    "app.py",
    str(REPO_ROOT / "app.py"),
    "embeddings/efficientnet-lite0/lookalike.json",
    "%2e%2e/%2e%2e/etc/passwd",
    quote("/etc/passwd", safe=""),
]


@pytest.mark.parametrize("prefix", ["gradio_api/file=", "file="])
@pytest.mark.parametrize("target", OUTSIDE_FILES)
def test_file_routes_refuse_files_outside_the_app_outputs(app_url, prefix, target):
    response = httpx.get(app_url + prefix + target)
    assert response.status_code in (403, 404)
    assert "root:" not in response.text and "import" not in response.text


def call_recommend(app_url: str, file_data: dict) -> str:
    """The raw server-sent events of one /recommend call, as a browser would make it."""
    api = app_url + "gradio_api/call/recommend"
    event = httpx.post(api, json={"data": [file_data, 3, "cosine", "efficientnet-lite0"]}).json()["event_id"]
    return httpx.get(f"{api}/{event}", timeout=60).text


def test_gallery_files_are_served_but_not_their_neighbours(app_url, example_photo):
    with open(example_photo, "rb") as photo:
        uploaded = httpx.post(app_url + "gradio_api/upload", files={"files": photo}).json()[0]
    stream = call_recommend(app_url, {"path": uploaded, "meta": {"_type": "gradio.FileData"}})
    gallery = json.loads(stream.split("event: complete\ndata: ")[1])[0]
    served = gallery[0]["image"]
    assert httpx.get(served["url"]).status_code == 200  # the route works for what the app produced
    for escape in [served["path"] + "/../../../../../../etc/passwd", served["path"] + "/%2e%2e/%2e%2e/app.py"]:
        response = httpx.get(app_url + "gradio_api/file=" + escape)
        assert response.status_code in (403, 404) and "root:" not in response.text


def test_api_refuses_a_payload_naming_a_server_file(app_url):
    """A client may not skip the upload and point the handler at any file on the server."""
    stream = call_recommend(app_url, {"path": str(REPO_ROOT / "app.py"), "meta": {"_type": "gradio.FileData"}})
    assert "event: error" in stream and "event: complete" not in stream


def test_server_refuses_an_upload_over_the_limit_before_reading_it(app_url):
    """Sent raw, past gradio_client's own check: the server answers 413 and never decodes it."""
    response = httpx.post(app_url + "gradio_api/upload", files={"files": ("big.png", oversized_png(), "image/png")})
    assert response.status_code == 413
    assert "maximum allowed size" in response.text


SECRET_PATTERNS = [
    re.compile(rb"hf_[A-Za-z0-9]{30,}"),  # Hugging Face token
    re.compile(rb"gh[pousr]_[A-Za-z0-9]{30,}"),  # GitHub token
    re.compile(rb"AKIA[0-9A-Z]{16}"),  # AWS access key id
    re.compile(rb"-----BEGIN (RSA |EC |OPENSSH )?PRIVATE KEY-----"),
]


def test_no_secrets_are_committed():
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    leaks = [
        (name, pattern.pattern)
        for name in tracked.decode().split("\0")
        if name and (REPO_ROOT / name).is_file()
        for pattern in SECRET_PATTERNS
        if pattern.search((REPO_ROOT / name).read_bytes())
    ]
    assert leaks == []


def test_hub_token_comes_only_from_the_environment():
    assert "token" not in inspect.signature(push_index_to_hub).parameters
    assert all("token" not in option for option in build_index.parse_args.__code__.co_consts if isinstance(option, str))


SEARCH_OPTIONS = [3, "cosine", None]  # K, metric, backbone (the first)
FILTERS = SearchRequest.filter_defaults()  # every filter at its default, as the page sends them


def call(app_url: str, endpoint: str, data: list) -> httpx.Response | str:
    """The raw server-sent events of one call, or the HTTP response that refused it."""
    api = f"{app_url}gradio_api/call/{endpoint}"
    response = httpx.post(api, json={"data": data}, timeout=60)
    if response.status_code != 200:
        return response
    return httpx.get(f"{api}/{response.json()['event_id']}", timeout=60).text


def error_message(stream: str) -> str:
    assert "event: error" in stream and "event: complete" not in stream, stream[:300]
    return json.loads(stream.split("event: error\ndata: ")[1].split("\n")[0])["error"]


def data_url(data: bytes, mime: str = "image/png") -> dict:
    return {"url": f"data:{mime};base64," + base64.b64encode(data).decode(), "meta": {"_type": "gradio.FileData"}}


def uploaded(app_url: str, data: bytes, name: str = "photo.png") -> dict:
    path = httpx.post(app_url + "gradio_api/upload", files={"files": (name, data, "image/png")}).json()[0]
    return {"path": path, "orig_name": name, "meta": {"_type": "gradio.FileData"}}


def test_a_data_url_over_the_cap_is_refused_before_it_is_read(app_url):
    """Gradio would decode a data: URL itself, past the upload cap: the JSON body is refused unread."""
    response = call(app_url, "recommend", [data_url(oversized_png()), 3, "cosine", "efficientnet-lite0"])
    assert response.status_code == 413
    assert "over the 13.4 MB limit" in response.json()["detail"] and "/gradio_api/upload" in response.json()["detail"]


def test_a_small_data_url_is_checked_like_an_upload(app_url, example_photo):
    good = call(app_url, "recommend", [data_url(example_photo.read_bytes(), "image/jpeg"), 3, "cosine", None])
    assert "event: complete" in good
    bomb = call(app_url, "compare", [data_url(decompression_bomb_png()), data_url(example_photo.read_bytes()), None])
    assert error_message(bomb) == "The image is too large to decode safely (more than 64,000,000 pixels)."


@pytest.mark.parametrize("endpoint", ["recommend_set", "recommend_region"])
def test_inputs_that_take_files_refuse_a_data_url_readably(app_url, example_photo, endpoint):
    url = data_url(example_photo.read_bytes(), "image/jpeg")
    value = [url] if endpoint == "recommend_set" else {"background": url, "layers": [], "composite": url, "id": None}
    picked = [[]] if endpoint == "recommend_set" else []  # the set's catalog products
    stream = call(app_url, endpoint, [value, *SEARCH_OPTIONS, *picked, *FILTERS])
    assert "POST /gradio_api/upload" in error_message(stream)


def test_the_crop_editor_refuses_a_pixel_bomb_from_its_header(app_url):
    """ImageEditor(image_mode="RGB") used to decode and convert 8100x8100 pixels (5 s) before refusing."""
    bomb = uploaded(app_url, over_pixel_limit_png())
    started = time.perf_counter()
    editor = {"background": bomb, "layers": [], "composite": bomb}
    stream = call(app_url, "recommend_region", [editor, *SEARCH_OPTIONS, *FILTERS])
    assert time.perf_counter() - started < 2  # header only; < 0.1 s on a quiet machine
    assert "more than the 64,000,000 pixels we decode safely" in error_message(stream)


def test_a_set_upload_over_the_pixel_cap_is_refused_before_decoding(app_url, example_photo):
    photo = uploaded(app_url, example_photo.read_bytes(), "photo.jpg")
    photos = [photo, uploaded(app_url, over_pixel_limit_png())]
    stream = call(app_url, "recommend_set", [photos, *SEARCH_OPTIONS, [], *FILTERS])
    assert "pixels we decode safely" in error_message(stream)
