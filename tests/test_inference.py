"""The fast embedding path (ONNX Runtime, batching, decode threads) gives the reference embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.backbones import inference as inference_module
from lookalike.backbones.embedding import embed_images
from lookalike.backbones.inference import InferenceConfig, InferenceKind, export_onnx, load_inference, onnx_model_path
from lookalike.backbones.registry import load_backbone
from lookalike.build.pipeline import PipelineConfig, embed_sources, ordered_map
from lookalike.catalog import load_image_folder
from lookalike.images import open_image

# fp32 ONNX Runtime vs PyTorch: different kernels, same maths. Unit vectors agree to this per component.
FP32_TOLERANCE = 1e-5
# bfloat16 keeps 8 mantissa bits; measured cosine to fp32 is 0.9995 or better on photos.
BF16_MIN_COSINE = 0.998


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


def test_auto_falls_back_to_pytorch_when_export_fails(backbone, tmp_path, monkeypatch):
    def failing_export(*args):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(inference_module, "export_onnx", failing_export)
    assert load_inference(backbone, InferenceConfig(kind=InferenceKind.AUTO, cache_dir=tmp_path)).name == "torch"
    with pytest.raises(RuntimeError, match="--inference torch"):
        load_inference(backbone, InferenceConfig(kind=InferenceKind.ONNX, cache_dir=tmp_path))


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
