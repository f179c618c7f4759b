"""A build folder is the Hub dataset repository: what is uploaded, old folders, and serving pushed builds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest
from huggingface_hub import DatasetCard
from huggingface_hub.utils import filter_repo_objects
from huggingface_hub.utils._paths import DEFAULT_IGNORE_PATTERNS

from lookalike.app.handlers import Handlers
from lookalike.app.service import LookalikeService
from lookalike.catalog import REPO_ROOT
from lookalike.index.legacy import convert_legacy
from lookalike.index.legacy import main as convert_main
from lookalike.index.neighbours import NEIGHBOURS_FILE
from lookalike.index.serving_cache import CACHE_DIR
from lookalike.index.sources import download_dataset, resolve_embeddings
from lookalike.index.store import METADATA_FILE, LegacyLayoutError, load_index, save_index

BUNDLED = REPO_ROOT / "embeddings"


def uploaded_files(folder: Path) -> list[str]:
    """The files `HfApi.upload_folder` (and `hf upload`) send: every file but huggingface_hub's ignored ones."""
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return list(filter_repo_objects(files, ignore_patterns=DEFAULT_IGNORE_PATTERNS))


def test_the_upload_is_the_card_the_parquet_and_the_metadata_never_the_serving_cache(small_index_dir):
    load_index(small_index_dir)  # makes sure the cache exists
    assert (small_index_dir / CACHE_DIR / "embeddings.npy").is_file()
    readme, shard, metadata, neighbours = uploaded_files(small_index_dir)
    assert (readme, metadata, neighbours) == ("README.md", METADATA_FILE, NEIGHBOURS_FILE)
    assert shard.startswith("data/train-")
    card = DatasetCard.load(small_index_dir / "README.md")
    (config,) = card.data.configs
    assert config["config_name"] == "default" and config["data_files"][0]["split"] == "train"
    assert (small_index_dir / shard).match(config["data_files"][0]["path"])
    assert card.data.license == "other" and "image-similarity" in card.data.tags


@pytest.mark.parametrize(
    "name",
    [
        "efficientnet-lite0",
        "mobilenet-v2",
        "color-histogram",
        "efficientnet-lite0-finetuned",
        "efficientnet-lite0-instance",
    ],
)
def test_committed_builds_are_in_the_hub_layout_and_load_dataset_reads_them(name):
    folder = BUNDLED / name
    assert not (folder / "state.json").exists() and METADATA_FILE in uploaded_files(folder)
    rows = datasets.load_dataset(str(folder), split="train")
    index = load_index(folder)
    assert len(rows) == len(index) == 273 and list(rows["id"]) == list(index.ids)
    np.testing.assert_array_equal(np.asarray(rows.with_format("numpy")["embedding"]), index.embeddings)
    assert DatasetCard.load(folder / "README.md").data.license == "gpl-2.0"  # the bundled photos' licence


@pytest.fixture
def legacy_folder(small_index_dir, tmp_path) -> Path:
    """The small build written the old way: `Dataset.save_to_disk` plus lookalike.json."""
    index = load_index(small_index_dir)
    rows = datasets.load_dataset(str(small_index_dir), split="train")
    folder = tmp_path / "old"
    rows.save_to_disk(str(folder))
    shutil.copy(small_index_dir / METADATA_FILE, folder / METADATA_FILE)
    assert (folder / "state.json").is_file() and len(rows) == len(index)
    return folder


def test_an_old_layout_folder_says_how_to_convert_it_and_converts_without_re_embedding(
    legacy_folder, small_index_dir, capsys
):
    with pytest.raises(LegacyLayoutError, match=r"python -m lookalike.index.legacy .*old"):
        load_index(legacy_folder)
    assert convert_main([str(legacy_folder)]) == 0 and "Converted" in capsys.readouterr().out
    converted, original = load_index(legacy_folder), load_index(small_index_dir)
    assert list(converted.ids) == list(original.ids) and list(converted.splits) == list(original.splits)
    np.testing.assert_array_equal(converted.embeddings, original.embeddings)  # the same float32 values
    assert uploaded_files(legacy_folder) == uploaded_files(small_index_dir)
    with pytest.raises(LegacyLayoutError, match="not a build folder of the old layout"):
        convert_legacy(legacy_folder)


def test_embeddings_setting_takes_folders_builds_and_hub_ids(small_index_dir, tmp_path):
    downloaded = []

    def download(repo_id: str) -> Path:  # what snapshot_download returns: a folder of the repo's files
        downloaded.append(repo_id)
        snapshot = tmp_path / "hub" / repo_id.replace("/", "--")
        if not snapshot.exists():
            shutil.copytree(small_index_dir, snapshot, ignore=shutil.ignore_patterns(".cache"))
        return snapshot

    sources = resolve_embeddings(f"{BUNDLED}, shop/lookalike-catalog ,{small_index_dir}", download)
    assert list(sources.builds) == [
        "color-histogram",
        "efficientnet-lite0",
        "efficientnet-lite0-finetuned",
        "efficientnet-lite0-instance",
        "mobilenet-v2",
        "shop/lookalike-catalog",
        # The same folder name as a bundled build: told apart by its parent's name, not the server's path.
        f"{small_index_dir.parent.name}/{small_index_dir.name}",
    ]
    assert downloaded == ["shop/lookalike-catalog"] and sources.problems == []
    assert resolve_embeddings(str(small_index_dir), download).builds == {small_index_dir.name: small_index_dir}

    nothing = resolve_embeddings(f"{tmp_path / 'missing'},shop/not-a-build", lambda repo_id: tmp_path)
    assert nothing.builds == {}
    assert "missing: no such folder" in nothing.problems[0] and "python build_index.py" in nothing.problems[0]
    assert "shop/not-a-build" in nothing.problems[1] and f"no {METADATA_FILE}" in nothing.problems[1]


def test_the_app_serves_a_hub_build_as_fetched_into_the_cache(small_index_dir, tmp_path, example_photo):
    def download(repo_id: str) -> Path:
        snapshot = tmp_path / "snapshot"
        shutil.copytree(small_index_dir, snapshot, ignore=shutil.ignore_patterns(".cache"))
        return snapshot

    service = LookalikeService.from_embeddings_dir("shop/lookalike-catalog", download=download)
    assert list(service.recommenders) == ["shop/lookalike-catalog"] and service.load_problems == []
    gallery, results, summary = Handlers(service).recommend(str(example_photo), 5, "cosine", "shop/lookalike-catalog")
    local = Handlers(LookalikeService.from_embeddings_dir(small_index_dir))
    assert results == local.recommend(str(example_photo), 5, "cosine", None)[1]
    assert len(gallery) == 5 and "24 products" in summary


def test_offline_a_hub_id_missing_from_the_cache_is_named_with_what_to_do(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    sources = resolve_embeddings("shop/never-downloaded", download_dataset)  # the real snapshot_download
    assert sources.builds == {}
    (problem,) = sources.problems
    assert problem.startswith("shop/never-downloaded: could not fetch this Hub dataset")
    assert "hf download shop/never-downloaded --repo-type dataset" in problem and "network" in problem
    service = LookalikeService.from_embeddings_dir("shop/never-downloaded")
    assert service.recommenders == {} and service.load_problems == [problem]


def test_push_uploads_the_folder_itself(small_index_dir, monkeypatch):
    """What push_index_to_hub asks of huggingface_hub: the whole build folder as a dataset repo."""
    calls = []

    class RecordingApi:  # records the request; the network part is huggingface_hub's
        def create_repo(self, repo_id, **options):
            calls.append(("create_repo", repo_id, options))

        def upload_folder(self, **options):
            calls.append(("upload_folder", options["repo_id"], options))
            raise ConnectionError("offline")

    import huggingface_hub

    from lookalike.index.store import push_index_to_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    with pytest.raises(ConnectionError, match=r"local embeddings .* are intact"):
        push_index_to_hub(small_index_dir, "shop/lookalike-catalog")
    (_, _, create), (_, repo_id, upload) = calls
    assert create == {"repo_type": "dataset", "private": False, "exist_ok": True}
    assert (repo_id, upload["folder_path"], upload["repo_type"]) == (
        "shop/lookalike-catalog",
        str(small_index_dir),
        "dataset",
    )
    assert "ignore_patterns" not in upload  # huggingface_hub's own defaults leave the cache out, as `hf upload` does
    assert json.loads((small_index_dir / METADATA_FILE).read_text(encoding="utf-8"))["model_id"] == "efficientnet-lite0"


def test_load_dataset_of_a_rebuilt_folder_returns_the_new_rows_not_its_cache(small_index_dir, tmp_path):
    """`datasets` caches a local folder's rows by folder name and data-file pattern; each build has its own."""
    folder = tmp_path / "efficientnet-lite0"  # the same name as the small build, as every rebuild has
    shutil.copytree(small_index_dir, folder)
    assert len(datasets.load_dataset(str(folder), split="train")) == 24
    index = load_index(folder)
    rows = datasets.load_dataset(str(folder), split="train").select(range(10)).data.table
    save_index(rows, index.metadata, folder)
    assert len(datasets.load_dataset(str(folder), split="train")) == len(load_index(folder)) == 10
