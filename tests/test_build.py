"""build_index writes a complete embeddings dataset, skips what it cannot read, and resumes."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pytest

import build_index
from lookalike.backbones.inference import InferenceConfig, load_inference
from lookalike.backbones.registry import DEFAULT_BACKBONE, load_backbone
from lookalike.catalog import REPO_ROOT, CatalogSource, load_catalog, stratified_split
from lookalike.index import writer
from lookalike.index.store import METADATA_FILE, MissingIndexError, load_index, push_index_to_hub, save_index
from lookalike.indexing import builder as build_module
from lookalike.indexing.builder import BuildConfig
from lookalike.indexing.builder import build_index as build
from lookalike.indexing.chunk import embed_chunk
from lookalike.indexing.incremental import content_hash
from lookalike.indexing.output_guard import DuplicateIdsError, OutputLockedError
from lookalike.indexing.pipeline import PipelineConfig


@pytest.fixture
def catalog_with_broken_files(small_catalog_dir, tmp_path):
    root = tmp_path / "catalog"
    shutil.copytree(small_catalog_dir, root)
    (root / "fruit" / "not-a-photo.jpg").write_bytes(b"<html>404</html>")
    (root / "flower" / "empty.png").write_bytes(b"")
    return root


def test_output_is_a_hub_dataset_repository_that_load_dataset_reads(small_index_dir):
    dataset = datasets.load_dataset(str(small_index_dir), split="train")
    assert dataset.column_names == ["id", "label", "split", "image", "embedding", "content_hash", "product_id"]
    assert dataset["product_id"] == dataset["id"]  # a folder of photos: each photo its own product
    assert len(dataset) == 24 and set(dataset["split"]) == {"train", "test"}
    row = dataset[0]
    assert row["image"].size[0] <= 256 and isinstance(row["label"], str)
    embeddings = np.asarray(dataset.with_format("numpy")["embedding"])
    assert embeddings.shape == (24, 1280) and embeddings.dtype == np.float32
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1, atol=1e-5)
    index = load_index(small_index_dir)
    metadata = index.metadata
    assert (metadata.model_id, metadata.embedding_dim, metadata.split_seed) == ("efficientnet-lite0", 1280, 0)
    assert metadata.preprocessing.crop_size == 224
    assert index.ids == dataset["id"] and np.array_equal(index.embeddings, embeddings)  # the served rows
    card = (small_index_dir / "README.md").read_text(encoding="utf-8")
    front_matter = card.split("---")[1]
    assert "license: other" in front_matter and re.search(r"path: data/train-[0-9a-f]{12}-\*\.parquet", front_matter)
    assert "efficientnet-lite0" in card and "load_dataset" in card and str(small_index_dir.parent) not in card
    published = sorted(p.relative_to(small_index_dir).as_posix() for p in small_index_dir.rglob("*") if p.is_file())
    published = [p for p in published if not p.startswith(".cache/huggingface/")]
    assert published[0] == "README.md" and published[2] == "lookalike.json" and len(published) == 4
    assert published[3] == "neighbours.parquet"  # each row's nearest rows, pushed with the data
    assert re.fullmatch(r"data/train-[0-9a-f]{12}-00000-of-00001\.parquet", published[1])


def test_unreadable_images_are_skipped_and_listed(catalog_with_broken_files, tmp_path):
    report = build(BuildConfig(source=CatalogSource(str(catalog_with_broken_files)), output=tmp_path / "out"), False)
    assert report.n_indexed == 24
    assert {s.id for s in report.skipped} == {"fruit/not-a-photo.jpg", "flower/empty.png"}
    assert len(load_index(tmp_path / "out").metadata.skipped) == 2


def test_interrupted_build_resumes_and_matches_a_clean_build(small_catalog_dir, tmp_path, monkeypatch):
    config = BuildConfig(source=CatalogSource(str(small_catalog_dir)), output=tmp_path / "out", chunk_size=5)
    real_embed_chunk, calls = build_module.embed_chunk, []

    def dies_on_third_chunk(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_embed_chunk(*args)

    monkeypatch.setattr(build_module, "embed_chunk", dies_on_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        build(config, False)
    assert not (tmp_path / "out").exists()  # no half-written index in place
    monkeypatch.setattr(build_module, "embed_chunk", real_embed_chunk)
    report = build(config, False)
    assert report.n_resumed == 10
    resumed = load_index(tmp_path / "out")
    clean = load_index(build(BuildConfig(source=config.source, output=tmp_path / "clean"), False).output)
    assert resumed.ids == clean.ids and resumed.splits == clean.splits
    assert np.allclose(resumed.embeddings, clean.embeddings, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean", "out"]  # no leftovers


def test_streaming_build_equals_an_in_memory_build(small_catalog_dir, tmp_path):
    """Shards of 7 rows written in blocks of 5 hold the rows and vectors of everything embedded at once."""
    source = CatalogSource(str(small_catalog_dir))
    streamed = build(
        BuildConfig(source=source, output=tmp_path / "streamed", chunk_size=4, block_rows=5, rows_per_shard=7), False
    )
    assert len(list((tmp_path / "streamed" / "data").glob("*.parquet"))) == 4  # 24 rows, 7 per shard

    # The in-memory way: embed the whole catalog in one table, order it, write it in one go.
    catalog = load_catalog(source)
    backbone = load_backbone(DEFAULT_BACKBONE)
    inference = load_inference(backbone, InferenceConfig())
    table = embed_chunk(inference, backbone.preprocessing, catalog.items, PipelineConfig()).drop_columns(["error"])
    hashes = [content_hash(item.image) for item in catalog.items]
    splits = stratified_split(catalog.labels, 0.2, 0)
    table = table.append_column("content_hash", pa.array(hashes)).append_column("label", pa.array(catalog.labels))
    table = table.append_column("split", pa.array(splits))
    metadata = load_index(streamed.output).metadata
    save_index(table, metadata, tmp_path / "in-memory")

    for how in ("load_dataset", "load_index"):
        if how == "load_dataset":
            a, b = (datasets.load_dataset(str(tmp_path / n), split="train") for n in ("streamed", "in-memory"))
            vectors = [np.asarray(d.with_format("numpy")["embedding"]) for d in (a, b)]
        else:
            a, b = (load_index(tmp_path / n).dataset for n in ("streamed", "in-memory"))
            vectors = [load_index(tmp_path / n).embeddings for n in ("streamed", "in-memory")]
        for column in ("id", "label", "split", "content_hash"):
            assert a[column] == b[column], column
        assert [i.tobytes() for i in a["image"]] == [i.tobytes() for i in b["image"]]
        np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-5)


def wait_for_first_chunk(process: subprocess.Popen, work_dir, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not any(work_dir.glob("chunk-*.parquet")):
        assert process.poll() is None, f"the build ended (code {process.returncode}) before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint was written in time"
        time.sleep(0.02)


@pytest.mark.slow
def test_build_killed_with_sigkill_resumes_with_the_same_command(small_catalog_dir, small_index_dir, tmp_path):
    output = tmp_path / "out"
    build(BuildConfig(source=CatalogSource(str(small_catalog_dir)), model="color-histogram", output=output), False)
    command = [sys.executable, "build_index.py", str(small_catalog_dir), "--output", str(output), "--chunk-size", "2"]
    work_dir = tmp_path / ".out.partial"
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_first_chunk(process, work_dir)
    process.kill()  # SIGKILL: no handler, no cleanup, like a lost machine
    process.wait()
    finished = len(list(work_dir.glob("chunk-*.parquet")))
    assert 1 <= finished < 12, "the kill should land part-way through the 12 chunks"
    assert load_index(output).metadata.model_id == "color-histogram"  # the old index, complete, still in place

    rerun = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert f"Indexed 24 images into {output} ({2 * finished} resumed from an interrupted run)" in rerun.stdout
    resumed, clean = load_index(output), load_index(small_index_dir)
    assert len(set(resumed.ids)) == len(resumed.ids) == 24
    assert (resumed.ids, resumed.labels, resumed.splits) == (clean.ids, clean.labels, clean.splits)
    assert np.allclose(resumed.embeddings, clean.embeddings, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no checkpoints or staging left behind


def test_rebuild_replaces_the_old_index(small_catalog_dir, tmp_path):
    output = tmp_path / "out"
    build(BuildConfig(source=CatalogSource(str(small_catalog_dir)), output=output), False)
    report = build(
        BuildConfig(source=CatalogSource(str(small_catalog_dir)), model="color-histogram", output=output), False
    )
    assert load_index(output).metadata.model_id == "color-histogram"
    assert (report.n_reused, report.n_embedded) == (0, 24)  # another model's rows are never reused
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_missing_index_says_how_to_build(tmp_path):
    with pytest.raises(MissingIndexError, match=r"python build_index.py"):
        load_index(tmp_path / "nothing")


def test_push_without_network_fails_clearly_and_keeps_local_output(small_index_dir):
    before = (small_index_dir / METADATA_FILE).read_text(encoding="utf-8")
    with pytest.raises(ConnectionError, match=r"local embeddings .* are intact"):
        push_index_to_hub(small_index_dir, "someone/lookalike-embeddings")
    assert (small_index_dir / METADATA_FILE).read_text(encoding="utf-8") == before
    assert len(load_index(small_index_dir)) == 24


def test_cli_builds_and_reports(small_catalog_dir, tmp_path, capsys):
    output = tmp_path / "cli"
    assert build_index.main([str(small_catalog_dir), "--model", "color-histogram", "--output", str(output)]) == 0
    assert "Indexed 24 images" in capsys.readouterr().out
    assert load_index(output).metadata.embedding_dim == 512


def test_cli_unknown_model_lists_choices(small_catalog_dir, tmp_path, capsys):
    assert build_index.main([str(small_catalog_dir), "--model", "vgg-99", "--output", str(tmp_path / "x")]) == 2
    assert "efficientnet-lite0" in capsys.readouterr().err


def test_incremental_build_embeds_only_new_and_changed_images_and_matches_a_clean_build(
    small_catalog_dir, tmp_path, monkeypatch
):
    root = tmp_path / "catalog"
    for category in ("fruit", "vehicle", "flower", "money"):
        (root / category).mkdir(parents=True)
        for photo in sorted((small_catalog_dir / category).iterdir())[:2]:
            shutil.copy(photo, root / category / photo.name)
    real_embed_chunk, embedded_ids = build_module.embed_chunk, []

    def counting_embed_chunk(inference, preprocessing, items, pipeline):
        embedded_ids.extend(item.id for item in items)
        return real_embed_chunk(inference, preprocessing, items, pipeline)

    monkeypatch.setattr(build_module, "embed_chunk", counting_embed_chunk)
    config = BuildConfig(source=CatalogSource(str(root)), output=tmp_path / "out", chunk_size=3)
    assert build(config, False).n_embedded == len(embedded_ids) == 8

    added = [sorted((small_catalog_dir / category).iterdir())[2] for category in ("fruit", "money", "flower")]
    for photo in added:
        shutil.copy(photo, root / photo.parent.name / photo.name)
    removed = sorted((root / "vehicle").iterdir())[0]
    removed.unlink()
    changed = sorted((root / "fruit").iterdir())[0]
    changed.write_bytes(sorted((small_catalog_dir / "fruit").iterdir())[5].read_bytes())  # new photo, same name
    embedded_ids.clear()
    report = build(config, False)
    assert sorted(embedded_ids) == sorted([f"{p.parent.name}/{p.name}" for p in added] + [f"fruit/{changed.name}"])
    assert (report.n_embedded, report.n_reused, report.n_indexed) == (4, 6, 10)

    incremental = load_index(config.output)
    clean = load_index(build(BuildConfig(source=config.source, output=tmp_path / "clean"), False).output)
    assert f"vehicle/{removed.name}" not in incremental.ids
    assert (incremental.ids, incremental.labels, incremental.splits) == (clean.ids, clean.labels, clean.splits)
    np.testing.assert_allclose(incremental.embeddings, clean.embeddings, atol=1e-5)
    assert incremental.dataset["content_hash"] == clean.dataset["content_hash"]
    assert [image.tobytes() for image in incremental.dataset["image"]] == [i.tobytes() for i in clean.dataset["image"]]

    embedded_ids.clear()
    assert build(dataclasses.replace(config, incremental=False), False).n_embedded == len(embedded_ids) == 10


def test_duplicate_product_ids_are_refused_with_their_list(small_catalog_dir, tmp_path):
    photos = sorted(small_catalog_dir.glob("*/*.jpg"))[:4]
    rows = {"image": [str(p) for p in photos], "label": ["a", "a", "b", "b"], "sku": ["x1", "x2", "x1", "x2"]}
    dataset = datasets.Dataset.from_dict(rows).cast_column("image", datasets.Image())
    dataset.save_to_disk(str(tmp_path / "shop"))
    source = CatalogSource(str(tmp_path / "shop"), id_column="sku")
    with pytest.raises(DuplicateIdsError, match=r"2 product ids name several products: 'x1' \(2x\), 'x2' \(2x\)"):
        build(BuildConfig(source=source, output=tmp_path / "out"), False)
    assert not (tmp_path / "out").exists()


HOLD_LOCK = """
import sys, time
from lookalike.indexing.output_guard import output_lock
with output_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_second_build_into_the_same_output_names_the_holder_and_stops(small_catalog_dir, tmp_path):
    output = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(output)], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        config = BuildConfig(source=CatalogSource(str(small_catalog_dir)), model="color-histogram", output=output)
        with pytest.raises(OutputLockedError, match=rf"Another build \(process {holder.pid}\) is writing"):
            build(config, False)
        assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock"]  # nothing of the holder's touched
    finally:
        holder.kill()
        holder.wait()
    # The kernel drops a killed holder's lock: the same build now runs.
    assert build(config, False).n_indexed == 24
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_readers_never_rename_an_interrupted_swap(small_index_dir, tmp_path):
    """Between a swap's two renames only `.out.old` exists: a reader reads it where it lies."""
    shutil.copytree(small_index_dir, tmp_path / ".out.old")
    index = load_index(tmp_path / "out")
    assert len(index) == 24
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.old"]


def test_every_file_reaches_the_disk_before_the_swap(small_catalog_dir, tmp_path, monkeypatch):
    synced, swapped = [], []
    real_fsync, real_swap = os.fsync, writer.swap_into_place
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    monkeypatch.setattr(writer, "swap_into_place", lambda a, b: (swapped.append(len(synced)), real_swap(a, b)))
    build(BuildConfig(source=CatalogSource(str(small_catalog_dir)), model="color-histogram", output=tmp_path / "out"))
    before_swap = {Path(path).name for path in synced[: swapped[0]]}
    written = {p.name for p in (tmp_path / "out").rglob("*")} | {".out.writing"}
    assert written <= before_swap  # every file and folder of the new index, the folder itself included
    assert str(tmp_path) in synced[swapped[0] :]  # then the parent folder: the rename itself
