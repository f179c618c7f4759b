"""The app as its users meet it: `python app.py` on a port, driven through gradio_client."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from lookalike.app.handlers import Handlers
from lookalike.app.layout import AppConfig, build_demo
from lookalike.app.service import LookalikeService
from lookalike.app.traffic import TrafficLimits, share_fairly
from tests.local_server import free_port, running_app
from tests.upload_cases import UPLOAD_CASES, encoded, exif_rotated_jpeg, oversized_png, photo


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


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


def assert_recommends(client, path, k=5):
    gallery, results, _ = recommend(client, path, k=k)
    assert len(gallery) == k and len(results) == k
    assert all(set(r) == {"id", "label", "score"} for r in results)
    return results


@pytest.mark.parametrize("case", UPLOAD_CASES, ids=lambda case: case.filename)
def test_every_upload_gets_results_or_a_readable_message_and_the_server_stays_up(client, tmp_path, example_photo, case):
    upload = tmp_path / case.filename
    upload.write_bytes(case.make())
    if case.expected_message is None:
        assert_recommends(client, upload)
    else:
        with pytest.raises(AppError, match=case.expected_message) as raised:
            recommend(client, upload)
        assert "Traceback" not in str(raised.value) and 'File "' not in str(raised.value)
    assert_recommends(client, example_photo, k=2)  # and the next user is served


def similarity(client, path_a, path_b) -> float:
    verdict = client.predict(
        handle_file(str(path_a)), handle_file(str(path_b)), "efficientnet-lite0", api_name="/compare"
    )
    return float(verdict.split("Similarity: ")[1].split()[0])


def test_exif_rotated_upload_is_turned_upright_before_embedding(client, tmp_path):
    upright, with_exif, without_exif = tmp_path / "upright.jpg", tmp_path / "exif.jpg", tmp_path / "sideways.jpg"
    photo().save(upright, quality=95)
    with_exif.write_bytes(exif_rotated_jpeg())
    photo().transpose(Image.Transpose.ROTATE_90).save(without_exif, quality=95)
    turned_upright = similarity(client, upright, with_exif)
    assert turned_upright > 0.97 and turned_upright > similarity(client, upright, without_exif) + 0.05


def test_app_without_embeddings_explains_how_to_build(tmp_path):
    service = LookalikeService.from_embeddings_dir(tmp_path / "empty")
    demo = build_demo(service, AppConfig())
    instructions = demo.config["components"][1]["props"]["value"]
    assert "python build_index.py" in instructions
    assert str(tmp_path) not in instructions  # the public page names no folder of the server
    with pytest.raises(Exception, match="No embeddings are loaded"):
        Handlers(service).recommend(str(tmp_path / "x.jpg"), 5, "cosine", None)


def test_upload_over_the_size_limit_gets_a_message_before_it_is_sent(client, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(oversized_png())
    with pytest.raises(ValueError, match="exceeds the maximum file size"):
        recommend(client, big)


def test_app_started_without_embeddings_serves_instructions(tmp_path, example_photo):
    (tmp_path / "embeddings").mkdir()
    with running_app(tmp_path / "embeddings", log_path=tmp_path / "app.log") as url:
        assert "python build_index.py" in httpx.get(url + "config").text
        with pytest.raises(AppError, match="No embeddings are loaded"):
            Client(url, verbose=False).predict(
                handle_file(str(example_photo)), 5, "cosine", None, api_name="/recommend"
            )


def test_uploads_and_answer_files_are_deleted_once_old(small_index_dir, tmp_path, monkeypatch):
    """The temp folder stays bounded: Gradio's delete_cache, with our limits, removes old uploads and answers."""
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    service = LookalikeService.from_embeddings_dir(small_index_dir.parent)
    limits = TrafficLimits(temp_max_age_seconds=2, temp_check_seconds=1)
    demo = share_fairly(build_demo(service, AppConfig()), limits)
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        url = demo.local_url
        # Not an example photo's bytes: the examples' own copies are kept for the page.
        data = ("photo.png", encoded(photo(), "PNG"), "image/png")
        upload = httpx.post(url + "gradio_api/upload", files={"files": data}).json()[0]
        api = url + "gradio_api/call/recommend"
        file_data = {"path": upload, "meta": {"_type": "gradio.FileData"}}
        event = httpx.post(api, json={"data": [file_data, 3, "cosine", None]}).json()["event_id"]
        gallery = json.loads(httpx.get(f"{api}/{event}", timeout=60).text.split("event: complete\ndata: ")[1])[0]
        files = [Path(upload), *(Path(item["image"]["path"]) for item in gallery)]
        assert all(path.is_file() and str(path).startswith(str(tmp_path)) for path in files)
        deadline = time.monotonic() + 20
        while any(path.exists() for path in files) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not any(path.exists() for path in files)
    finally:
        demo.close()
