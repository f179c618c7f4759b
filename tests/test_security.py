"""The running app serves only its own outputs, caps uploads, and the repo holds no secrets."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
from urllib.parse import quote

import httpx
import pytest

import build_index
from lookalike.catalog import REPO_ROOT
from lookalike.index.store import push_index_to_hub
from tests.upload_cases import oversized_png

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
