"""The fast embedding paths (OpenVINO, ONNX Runtime, batching, decode threads) give the reference embeddings."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from lookalike.backbones import inference as inference_module
from lookalike.backbones import openvino_runtime
from lookalike.backbones.embedding import embed_images
from lookalike.backbones.exports import manifest_path, read_manifest
from lookalike.backbones.inference import (
    InferenceConfig,
    InferenceKind,
    Precision,
    config_named,
    export_onnx,
    load_inference,
    onnx_model_path,
)
from lookalike.backbones.openvino_runtime import export_openvino, openvino_model_path
from lookalike.backbones.registry import load_backbone
from lookalike.catalog import load_image_folder
from lookalike.images import open_image
from lookalike.indexing.pipeline import PipelineConfig, embed_sources, ordered_map

# fp32 ONNX Runtime vs PyTorch: different kernels, same maths. Unit vectors agree to this per component.
FP32_TOLERANCE = 1e-5
# bfloat16 keeps 8 mantissa bits; measured cosine to fp32 is 0.9995 or better on photos.
BF16_MIN_COSINE = 0.998


def native_bf16() -> bool:
    import openvino

    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


needs_native_bf16 = pytest.mark.skipif(not native_bf16(), reason="this CPU has no native bfloat16")


@pytest.fixture(scope="module")
def backbone():
    return load_backbone("efficientnet-lite0")


@pytest.fixture(scope="module")
def photos(small_catalog_dir):
    return [item.image for item in load_image_folder(small_catalog_dir).items]


@pytest.fixture(scope="module")
def naive_embeddings(backbone, photos):
    """The naive loop: decode, preprocess, PyTorch forward pass, one image at a time."""
    return np.concatenate([embed_images(backbone, [open_image(photo)], batch_size=1) for photo in photos])


def test_onnx_pipeline_equals_the_naive_loop(backbone, photos, naive_embeddings, tmp_path):
    inference = load_inference(backbone, InferenceConfig(kind=InferenceKind.ONNX, cache_dir=tmp_path))
    fast, errors = embed_sources(inference, backbone.preprocessing, photos, PipelineConfig(batch_size=7))
    assert errors == [None] * len(photos)
    assert fast.shape == naive_embeddings.shape
    np.testing.assert_allclose(fast, naive_embeddings, atol=FP32_TOLERANCE)


def test_bf16_stays_close_to_fp32(backbone, photos, naive_embeddings):
    inference = load_inference(backbone, InferenceConfig(kind=InferenceKind.TORCH_BF16))
    fast, _ = embed_sources(inference, backbone.preprocessing, photos[:8])
    assert np.min(np.sum(fast * naive_embeddings[:8], axis=1)) >= BF16_MIN_COSINE


def test_unreadable_sources_keep_their_place(backbone, photos, naive_embeddings, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    inference = load_inference(backbone, InferenceConfig(kind=InferenceKind.TORCH))
    embeddings, errors = embed_sources(inference, backbone.preprocessing, [photos[0], broken, photos[1]])
    assert errors[0] is None and errors[2] is None and "not an image" in errors[1]
    np.testing.assert_allclose(embeddings, naive_embeddings[:2], atol=FP32_TOLERANCE)


def test_export_is_cached_by_weights_fingerprint(backbone, tmp_path):
    path = export_onnx(backbone, tmp_path)
    assert path == onnx_model_path(backbone, tmp_path) and backbone.fingerprint in path.name
    modified = path.stat().st_mtime_ns
    assert export_onnx(backbone, tmp_path).stat().st_mtime_ns == modified


def test_openvino_fp32_equals_pytorch(backbone, photos, naive_embeddings, tmp_path):
    inference = load_inference(backbone, InferenceConfig(kind=InferenceKind.OPENVINO, cache_dir=tmp_path))
    assert inference.name == "openvino"
    fast, errors = embed_sources(inference, backbone.preprocessing, photos, PipelineConfig(batch_size=7))
    assert errors == [None] * len(photos)
    np.testing.assert_allclose(fast, naive_embeddings, atol=FP32_TOLERANCE)
    # One query at a time, as the app embeds uploads.
    single = embed_images(backbone, [open_image(photos[0])], inference=inference)
    np.testing.assert_allclose(single, naive_embeddings[:1], atol=FP32_TOLERANCE)


def test_openvino_streams_run_concurrent_queries_and_embed_the_same(backbone, photos, naive_embeddings, tmp_path):
    """A server's config (one stream per search running at once): two queries side by side, same embeddings."""
    config = InferenceConfig(kind=InferenceKind.OPENVINO, cache_dir=tmp_path, streams=2)
    inference = load_inference(backbone, config)
    with ThreadPoolExecutor(2) as pool:
        found = list(pool.map(lambda p: embed_images(backbone, [open_image(p)], inference=inference)[0], photos))
    np.testing.assert_allclose(np.stack(found), naive_embeddings, atol=FP32_TOLERANCE)
    # A lone pass keeps one stream on every thread; one that starts while another runs takes the streams.
    assert inference.compiled.get_property("NUM_STREAMS") == 1
    inference._running = 1  # as if another pass were running
    beside = embed_images(backbone, [open_image(photos[0])], inference=inference)
    assert inference._side_by_side_model(inference.accepts_uint8).get_property("NUM_STREAMS") == 2
    np.testing.assert_allclose(beside, naive_embeddings[:1], atol=FP32_TOLERANCE)
    with pytest.raises(ValueError, match="streams must be >= 1"):
        InferenceConfig(streams=0)


def test_auto_picks_openvino_first(backbone, tmp_path):
    assert load_inference(backbone, InferenceConfig(cache_dir=tmp_path)).name == "openvino"


@needs_native_bf16
def test_openvino_bf16_is_an_opt_in_close_to_fp32(backbone, photos, naive_embeddings, tmp_path):
    config = InferenceConfig(precision=Precision.BF16, cache_dir=tmp_path)
    inference = load_inference(backbone, config_named("openvino-bf16", cache_dir=tmp_path))
    assert inference.name == "openvino-bf16" == load_inference(backbone, config).name
    fast, _ = embed_sources(inference, backbone.preprocessing, photos)
    cosines = np.sum(fast * naive_embeddings, axis=1)
    assert cosines.min() >= BF16_MIN_COSINE and cosines.max() < 1 - 1e-7  # close, and truly not fp32


def test_without_openvino_auto_falls_back_and_says_why(
    backbone, photos, naive_embeddings, tmp_path, monkeypatch, caplog
):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
    with caplog.at_level(logging.WARNING, logger="lookalike.backbones.inference"):
        inference = load_inference(backbone, InferenceConfig(cache_dir=tmp_path))
    assert inference.name == "onnx"
    assert "openvino unavailable for efficientnet-lite0 (ModuleNotFoundError" in caplog.text
    assert "pip install openvino" in caplog.text
    fast, _ = embed_sources(inference, backbone.preprocessing, photos[:4])
    np.testing.assert_allclose(fast, naive_embeddings[:4], atol=FP32_TOLERANCE)
    with pytest.raises(RuntimeError, match=r"openvino cannot run efficientnet-lite0.*pip install openvino"):
        load_inference(backbone, InferenceConfig(kind=InferenceKind.OPENVINO, cache_dir=tmp_path))


def test_auto_falls_back_to_pytorch_when_exports_fail(backbone, tmp_path, monkeypatch, caplog):
    def failing_export(*args):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(inference_module, "export_onnx", failing_export)
    monkeypatch.setattr(inference_module, "export_openvino", failing_export)
    with caplog.at_level(logging.WARNING):
        assert load_inference(backbone, InferenceConfig(kind=InferenceKind.AUTO, cache_dir=tmp_path)).name == "torch"
    assert caplog.text.count("unsupported operator") == 2
    with pytest.raises(RuntimeError, match="--inference auto or torch"):
        load_inference(backbone, InferenceConfig(kind=InferenceKind.ONNX, cache_dir=tmp_path))


def test_openvino_ir_is_cached_by_weights_and_compiled_once(backbone, tmp_path):
    path = export_openvino(backbone, tmp_path)
    assert path == openvino_model_path(backbone.name, backbone.fingerprint, tmp_path)
    modified = path.stat().st_mtime_ns
    assert export_openvino(backbone, tmp_path).stat().st_mtime_ns == modified
    inference = load_inference(backbone, InferenceConfig(kind=InferenceKind.OPENVINO, cache_dir=tmp_path))
    assert inference.features(np.zeros((2, 3, 224, 224), np.float32)).shape == (2, 1280)  # compiled by now
    assert any(openvino_runtime.compiled_cache_dir(tmp_path).glob("*.blob"))  # what a restart loads


def test_a_restart_serves_the_cached_export_without_building_torch(photos, naive_embeddings, tmp_path):
    built = load_backbone("efficientnet-lite0")
    load_inference(built, InferenceConfig(cache_dir=tmp_path))  # export + manifest
    restored = load_backbone("efficientnet-lite0", fingerprint=built.fingerprint, cache_dir=tmp_path)
    inference = load_inference(restored, InferenceConfig(cache_dir=tmp_path))
    vectors = embed_images(restored, [open_image(photo) for photo in photos[:3]], inference=inference)
    np.testing.assert_allclose(vectors, naive_embeddings[:3], atol=FP32_TOLERANCE)
    assert not restored.is_built and (restored.fingerprint, restored.embedding_dim) == (built.fingerprint, 1280)
    # Other weights than the index's: no manifest, so the module is built and checked as before.
    assert (
        load_backbone("efficientnet-lite0", fingerprint="0" * 16, cache_dir=tmp_path).fingerprint == built.fingerprint
    )


def test_the_manifest_is_ignored_once_the_weights_files_change(tmp_path):
    from transformers import ResNetConfig, ResNetModel

    folder = tmp_path / "resnet"
    ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8], depths=[1], layer_type="basic")).save_pretrained(
        folder
    )
    backbone = load_backbone(str(folder))
    load_inference(backbone, InferenceConfig(cache_dir=tmp_path / "cache"))
    assert manifest_path(tmp_path / "cache", backbone.name, backbone.fingerprint).is_file()
    restored = load_backbone(str(folder), fingerprint=backbone.fingerprint, cache_dir=tmp_path / "cache")
    assert not restored.is_built and restored.embedding_dim == 8
    weights = folder / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1_000_000_000))
    assert read_manifest(tmp_path / "cache", backbone.name, backbone.fingerprint, restored.signature) is not None
    reloaded = load_backbone(str(folder), fingerprint=backbone.fingerprint, cache_dir=tmp_path / "cache")
    assert reloaded.is_built and reloaded.signature != restored.signature


def test_serving_from_the_cache_imports_neither_torch_nor_transformers(small_index_dir, example_photo, tmp_path):
    env = {**os.environ, "LOOKALIKE_CACHE": str(tmp_path)}
    serve = (
        "import sys; from lookalike.recommend.recommender import Recommender; "
        f"r = Recommender.from_path({str(small_index_dir)!r}); r.recommend({str(example_photo)!r}); "
        "print(r.inference.name, sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    first = subprocess.run([sys.executable, "-c", serve], env=env, capture_output=True, text=True, check=True)
    assert first.stdout.split()[0] == "openvino"  # the first start exports, with torch
    again = subprocess.run([sys.executable, "-c", serve], env=env, capture_output=True, text=True, check=True)
    assert again.stdout.strip() == "openvino []", again.stderr


def test_ordered_map_keeps_order_with_few_in_flight():
    assert list(ordered_map(lambda x: x * x, range(50), workers=3, ahead=4)) == [x * x for x in range(50)]


@pytest.mark.parametrize("bad", [{"threads": 0}, {"kind": "tpu"}])
def test_bad_inference_config_is_rejected(bad):
    with pytest.raises(ValueError):
        InferenceConfig(**bad)


def test_export_leaves_the_live_model_untouched(photos, naive_embeddings, tmp_path):
    fresh = load_backbone("efficientnet-lite0")
    export_onnx(fresh, tmp_path)
    assert np.allclose(embed_images(fresh, [open_image(photos[0])]), naive_embeddings[:1], atol=FP32_TOLERANCE)


def test_without_openvino_the_build_and_the_app_fall_back_and_say_so(
    small_catalog_dir, small_index_dir, tmp_path, monkeypatch, caplog
):
    from lookalike.app.service import LookalikeService
    from lookalike.catalog import CatalogSource
    from lookalike.index.store import load_index
    from lookalike.indexing.builder import BuildConfig, build_index

    monkeypatch.setitem(sys.modules, "openvino", None)
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "cache"))
    with caplog.at_level(logging.WARNING, logger="lookalike.backbones.inference"):
        build_index(BuildConfig(source=CatalogSource(str(small_catalog_dir)), output=tmp_path / "built"), False)
    assert load_index(tmp_path / "built").metadata.inference == "onnx"
    assert "openvino unavailable for efficientnet-lite0" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lookalike.backbones.inference"):
        service = LookalikeService.from_embeddings_dir(small_index_dir.parent)
    assert service.recommenders["efficientnet-lite0"].inference.name == "onnx" and not service.load_problems
    assert "openvino unavailable for efficientnet-lite0" in caplog.text


@needs_native_bf16
def test_bf16_is_an_explicit_build_option_recorded_in_the_metadata(small_catalog_dir, small_index_dir, tmp_path):
    from lookalike.catalog import CatalogSource
    from lookalike.index.store import METADATA_FILE, IndexMetadata, load_index
    from lookalike.indexing.builder import BuildConfig, build_index

    default = load_index(small_index_dir).metadata
    assert (default.inference, default.precision) == ("openvino", "fp32")
    config = BuildConfig(source=CatalogSource(str(small_catalog_dir)), output=tmp_path / "bf16", precision="bf16")
    build_index(config, show_progress=False)
    built = load_index(tmp_path / "bf16")
    assert (built.metadata.inference, built.metadata.precision) == ("openvino-bf16", "bf16")
    cosines = np.sum(built.embeddings * load_index(small_index_dir).embeddings, axis=1)
    assert cosines.min() >= BF16_MIN_COSINE
    # A folder written before precision was recorded loads as what it was: fp32.
    values = json.loads((small_index_dir / METADATA_FILE).read_text(encoding="utf-8"))
    del values["precision"]
    assert IndexMetadata.from_json(json.dumps(values)).precision == "fp32"


def test_a_background_compilation_failure_surfaces_at_first_use(tmp_path):
    broken = tmp_path / "broken.xml"
    broken.write_text("<net>not a model</net>", encoding="utf-8")
    with pytest.raises(RuntimeError):  # compiled here: the caller can still fall back
        openvino_runtime.OpenVinoInference(broken, threads=1, bf16=False, cache_dir=tmp_path)
    deferred = openvino_runtime.OpenVinoInference(broken, threads=1, bf16=False, cache_dir=tmp_path, background=True)
    with pytest.raises(RuntimeError):
        deferred.features(np.zeros((1, 3, 224, 224), np.float32))
    with pytest.raises(ValueError, match="uint8 crops need"):
        deferred.features(np.zeros((1, 224, 224, 3), np.uint8))
