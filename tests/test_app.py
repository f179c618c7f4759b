"""The app as its users meet it: `python app.py` on a port, driven through gradio_client."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from lookalike.ui import AppConfig, LookalikeService, build_demo

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with {process.returncode}: {process.stdout.read()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise TimeoutError(f"app.py did not listen on {port} within {timeout} s")


@pytest.fixture(scope="module")
def client(small_index_dir, tmp_path_factory):
    served = tmp_path_factory.mktemp("served")
    shutil.copytree(small_index_dir, served / "efficientnet-lite0")
    port = free_port()
    env = {**os.environ, "LOOKALIKE_EMBEDDINGS": str(served), "GRADIO_SERVER_PORT": str(port)}
    env["GRADIO_SERVER_NAME"] = "127.0.0.1"
    process = subprocess.Popen(
        [sys.executable, "app.py"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_for_port(port, process)
        yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        process.terminate()
        process.wait(timeout=30)


def recommend(client, path, k=5):
    return client.predict(handle_file(str(path)), k, "cosine", "efficientnet-lite0", api_name="/recommend")


def test_recommend_endpoint_returns_gallery_and_json(client, example_photo):
    gallery, results, summary = recommend(client, example_photo, k=5)
    assert len(gallery) == 5 and all("·" in item["caption"] for item in gallery)
    assert [set(r) for r in results] == [{"id", "label", "score"}] * 5
    assert sum(r["label"] == "fruit" for r in results) >= 3
    assert "Average similarity of the top 5" in summary


def test_compare_endpoint(client, example_photo):
    verdict = client.predict(
        handle_file(str(example_photo)), handle_file(str(example_photo)), "efficientnet-lite0", api_name="/compare"
    )
    assert "Similarity: 1.000" in verdict


def _truncated_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((128, 128), 60).convert("RGB").save(buffer, format="JPEG")
    return buffer.getvalue()[:900]


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("notes.jpg", b"this is not an image at all", "not an image"),
        ("empty.png", b"", "empty"),
        ("cut.jpg", _truncated_jpeg(), "damaged or incomplete"),
    ],
)
def test_bad_uploads_get_a_readable_message_and_the_server_stays_up(
    client, tmp_path, example_photo, name, data, message
):
    bad = tmp_path / name
    bad.write_bytes(data)
    with pytest.raises(AppError, match=message):
        recommend(client, bad)
    assert len(recommend(client, example_photo, k=2)[1]) == 2


def test_app_without_embeddings_explains_how_to_build(tmp_path):
    service = LookalikeService.from_embeddings_dir(tmp_path / "empty")
    demo = build_demo(service, AppConfig(embeddings_dir=tmp_path / "empty"))
    assert "python build_index.py" in demo.config["components"][1]["props"]["value"]
    with pytest.raises(Exception, match="No embeddings are loaded"):
        service.recommend(str(tmp_path / "x.jpg"), 5, "cosine", None)
