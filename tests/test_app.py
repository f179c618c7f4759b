"""The app as its users meet it: `python app.py` on a port, driven through gradio_client."""

from __future__ import annotations

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from lookalike.app.handlers import Handlers
from lookalike.app.layout import AppConfig, build_demo
from lookalike.app.service import LookalikeService
from tests.local_server import running_app
from tests.upload_cases import UPLOAD_CASES, exif_rotated_jpeg, oversized_png, photo


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
    demo = build_demo(service, AppConfig(embeddings_dir=tmp_path / "empty"))
    assert "python build_index.py" in demo.config["components"][1]["props"]["value"]
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
