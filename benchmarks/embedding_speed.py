"""Catalog embedding throughput, naive loop vs the fast paths (fp32, bf16), side by side, with their quality."""

from __future__ import annotations

import io
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from lookalike.backbones.embedding import l2_normalize
from lookalike.backbones.inference import Inference, InferenceConfig, Precision, accepts_uint8, load_inference
from lookalike.backbones.registry import Backbone, load_backbone
from lookalike.catalog import BUNDLED_CATALOG_DIR, load_image_folder
from lookalike.evaluate.scoring import evaluate_embeddings
from lookalike.images import open_image
from lookalike.indexing.pipeline import DRAFT_MARGIN, PipelineConfig, embed_sources

# Product photos are larger than the bundled 224 px stamps; 500x500 is what the notes measured.
PHOTO_SIZE = 500
# A phone photo, for what draft decoding saves on large JPEG files.
LARGE_PHOTO_SIZE = (4000, 3000)
PRECISION_K = 5
OVERLAP_K = 10
# fp32 runtimes must give the naive loop's unit embeddings to this, per component.
FP32_TOLERANCE = 1e-5
FORWARD_RUNS = 50


@dataclass(frozen=True)
class EmbeddingFigures:
    backbone: str
    n_images: int
    naive_img_s: float
    fast_img_s: float
    fast_inference: str
    flop_bound_img_s: float
    gflop_per_image: float
    matmul_gflop_s: float
    naive_precision_at_k: float
    fast_precision_at_k: float
    max_abs_difference: float
    # The bf16 opt-in, through the same pipeline, and its agreement with fp32 on the bundled catalog.
    bf16_img_s: float
    bf16_inference: str
    bf16_flop_bound_img_s: float
    bf16_matmul_gflop_s: float
    agreement_n_items: int
    fp32_catalog_precision_at_k: float
    bf16_catalog_precision_at_k: float
    bf16_top10_overlap: float
    # Where an image's time goes, ms per image: decode and resize + normalise on one thread, then the
    # model at batch 32 on the runtime's threads.
    decode_ms: float
    resize_ms: float  # the centre crop's resampling
    normalise_ms: float  # scaling and normalising it in numpy: inside the compiled graph when the runtime can
    model_ms: float
    model_bf16_ms: float
    large_decode_ms: float  # a LARGE_PHOTO_SIZE JPEG, decoded in full
    large_draft_decode_ms: float  # the same, draft-decoded as the build pipeline does
    # One query's batch-1 forward pass through the serving runtime (fp32), median.
    forward_p50_ms: float
    serving_inference: str

    @property
    def speedup(self) -> float:
        return self.fast_img_s / self.naive_img_s

    @property
    def bf16_speedup(self) -> float:
        return self.bf16_img_s / self.naive_img_s

    @property
    def bf16_p5_delta(self) -> float:
        return self.bf16_catalog_precision_at_k - self.fp32_catalog_precision_at_k

    @property
    def fast_equals_naive(self) -> bool:
        return self.max_abs_difference <= FP32_TOLERANCE


def write_photos(n_images: int, folder: Path) -> tuple[list[Path], list[str]]:
    """Bundled catalog photos, spread over its categories, re-encoded as 500x500 JPEG files."""
    items = load_image_folder(BUNDLED_CATALOG_DIR).items
    picked = [items[i] for i in np.linspace(0, len(items) - 1, min(n_images, len(items))).astype(int)]
    paths = []
    for number, item in enumerate(picked):
        path = folder / f"{number:05d}.jpg"
        open_image(item.image).resize((PHOTO_SIZE, PHOTO_SIZE), Image.Resampling.BICUBIC).save(path, quality=90)
        paths.append(path)
    return paths, [item.label for item in picked]


def naive_embeddings(backbone: Backbone, paths: list[Path]) -> np.ndarray:
    """decode -> transformers image processor -> PyTorch forward pass, one image at a time."""
    from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil

    p = backbone.preprocessing
    processor = BitImageProcessorPil(
        size={"shortest_edge": p.resize_shortest_edge},
        crop_size={"height": p.crop_size, "width": p.crop_size},
        resample={"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}[p.resample],
        image_mean=list(p.mean),
        image_std=list(p.std),
    )
    rows = []
    for path in paths:
        pixel_values = processor(images=open_image(path), return_tensors="pt")["pixel_values"]
        rows.append(backbone.features(pixel_values).numpy())
    return l2_normalize(np.concatenate(rows))


def matmul_gflop_s(dtype: torch.dtype = torch.float32, size: int = 2048, repeats: int = 5) -> float:
    """Peak matrix-multiply speed on all threads in `dtype`: the ceiling for any convolution network."""
    a = torch.randn(size, size).to(dtype)
    a @ a
    best = min(_timed(lambda: a @ a)[1] for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def gflop_per_image(backbone: Backbone) -> float:
    size = backbone.preprocessing.crop_size
    with FlopCounterMode(display=False) as counter:
        backbone.features(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 1e9


def _timed(function):
    """`function()`'s result and how many seconds it took."""
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def _median_ms(function, runs: int) -> float:
    function()  # warm-up
    return float(np.median([_timed(function)[1] for _ in range(runs)]) * 1e3)


def precision_at_k(embeddings: np.ndarray, labels: list[str]) -> float:
    evaluation = evaluate_embeddings(
        "", embeddings, labels, embeddings, labels, ks=(PRECISION_K,), exclude_same_row=True
    )
    return evaluation.precision_at_k[str(PRECISION_K)]


def top_k_overlap(a: np.ndarray, b: np.ndarray, k: int = OVERLAP_K) -> float:
    """Mean share of each item's k nearest neighbours (itself left out) that two embeddings agree on."""

    def neighbours(vectors: np.ndarray) -> np.ndarray:
        similarities = vectors @ vectors.T
        np.fill_diagonal(similarities, -np.inf)
        return np.argsort(-similarities, axis=1)[:, :k]

    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(neighbours(a), neighbours(b), strict=True)]))


def time_breakdown_ms(backbone: Backbone, fp32: Inference, bf16: Inference, paths: list[Path]) -> dict[str, float]:
    """Per image: decode, resize, normalise (one thread each), the model at batch 32 (fp32, bf16).

    The model is fed what the build pipeline feeds it: uint8 crops when the runtime normalises them.
    """
    preprocessing = backbone.preprocessing
    sample = [path.read_bytes() for path in paths[:16]]
    images = [open_image(data) for data in sample]
    decode = _median_ms(lambda: [open_image(data) for data in sample], 3) / len(sample)
    resize = _median_ms(lambda: [preprocessing.crop_array(image) for image in images], 3) / len(images)
    to_array = _median_ms(lambda: [preprocessing.to_array(image) for image in images], 3) / len(images)
    batch32 = (images * 2)[:32]

    def model_ms(inference: Inference) -> float:
        if accepts_uint8(inference):
            batch = np.stack([preprocessing.crop_array(image) for image in batch32])
        else:
            batch = preprocessing.batch(batch32)
        return _median_ms(lambda: inference.features(batch), 3) / len(batch)

    large = open_image(paths[0]).resize(LARGE_PHOTO_SIZE, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    large.save(buffer, format="JPEG", quality=90)
    draft_size = DRAFT_MARGIN * preprocessing.resize_shortest_edge
    return {
        "decode_ms": decode,
        "resize_ms": resize,
        "normalise_ms": max(0.0, to_array - resize),
        "model_ms": model_ms(fp32),
        "model_bf16_ms": model_ms(bf16),
        "large_decode_ms": _median_ms(lambda: open_image(buffer.getvalue()), 3),
        "large_draft_decode_ms": _median_ms(lambda: open_image(buffer.getvalue(), min_size=draft_size), 3),
    }


def bf16_agreement(backbone: Backbone, fp32: Inference, bf16: Inference) -> dict[str, float]:
    """fp32 vs bf16 retrieval on the whole bundled catalog, leave-one-out: P@5 of each, top-10 overlap."""
    catalog = load_image_folder(BUNDLED_CATALOG_DIR)
    sources = [item.image for item in catalog.items]
    exact, _ = embed_sources(fp32, backbone.preprocessing, sources)
    approximate, _ = embed_sources(bf16, backbone.preprocessing, sources)
    return {
        "agreement_n_items": len(sources),
        "fp32_catalog_precision_at_k": precision_at_k(exact, catalog.labels),
        "bf16_catalog_precision_at_k": precision_at_k(approximate, catalog.labels),
        "bf16_top10_overlap": top_k_overlap(exact, approximate),
    }


def measure_embedding(n_images: int, backbone_name: str = "efficientnet-lite0") -> EmbeddingFigures:
    backbone = load_backbone(backbone_name)
    fp32 = load_inference(backbone, InferenceConfig())
    bf16 = load_inference(backbone, InferenceConfig(precision=Precision.BF16))
    pipeline = PipelineConfig()
    with tempfile.TemporaryDirectory() as folder:
        paths, labels = write_photos(n_images, Path(folder))
        # Warm-up of every path (first-call allocations, kernel selection), untimed.
        naive_embeddings(backbone, paths[:4])
        embed_sources(fp32, backbone.preprocessing, paths[:32])
        embed_sources(bf16, backbone.preprocessing, paths[:32])
        naive_rows, naive_seconds = _timed(lambda: naive_embeddings(backbone, paths))
        (fast_rows, _), fast_seconds = _timed(lambda: embed_sources(fp32, backbone.preprocessing, paths))
        _, bf16_seconds = _timed(lambda: embed_sources(bf16, backbone.preprocessing, paths))
        breakdown = time_breakdown_ms(backbone, fp32, bf16, paths)
        query = backbone.preprocessing.batch([open_image(paths[0])])
    forward_ms = _median_ms(lambda: fp32.features(query), FORWARD_RUNS)
    gflop = gflop_per_image(backbone)
    peak, bf16_peak = matmul_gflop_s(torch.float32), matmul_gflop_s(torch.bfloat16)
    return EmbeddingFigures(
        backbone=backbone_name,
        n_images=len(paths),
        naive_img_s=len(paths) / naive_seconds,
        fast_img_s=len(paths) / fast_seconds,
        fast_inference=f"{fp32.name}, batch {pipeline.batch_size}, {pipeline.decode_workers} decode threads",
        flop_bound_img_s=peak / gflop,
        gflop_per_image=gflop,
        matmul_gflop_s=peak,
        naive_precision_at_k=precision_at_k(naive_rows, labels),
        fast_precision_at_k=precision_at_k(fast_rows, labels),
        max_abs_difference=float(np.abs(naive_rows - fast_rows).max()),
        bf16_img_s=len(paths) / bf16_seconds,
        bf16_inference=f"{bf16.name}, batch {pipeline.batch_size}, {pipeline.decode_workers} decode threads",
        bf16_flop_bound_img_s=bf16_peak / gflop,
        bf16_matmul_gflop_s=bf16_peak,
        **bf16_agreement(backbone, fp32, bf16),
        **breakdown,
        forward_p50_ms=forward_ms,
        serving_inference=fp32.name,
    )
