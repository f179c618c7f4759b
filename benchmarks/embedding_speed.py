"""Catalog embedding throughput, naive loop vs the fast path, side by side, with their quality."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from lookalike.backbones.embedding import l2_normalize
from lookalike.backbones.inference import InferenceConfig, InferenceKind, load_inference
from lookalike.backbones.registry import Backbone, load_backbone
from lookalike.build.pipeline import PipelineConfig, embed_sources
from lookalike.catalog import BUNDLED_CATALOG_DIR, load_image_folder
from lookalike.evaluate.scoring import evaluate_embeddings
from lookalike.images import open_image

# Product photos are larger than the bundled 224 px stamps; 500x500 is what the notes measured.
PHOTO_SIZE = 500
PRECISION_K = 5


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

    @property
    def speedup(self) -> float:
        return self.fast_img_s / self.naive_img_s


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


def matmul_gflop_s(size: int = 2048, repeats: int = 5) -> float:
    """Peak fp32 matrix-multiply speed on all threads: the ceiling for any convolution network."""
    a = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
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


def precision_at_k(embeddings: np.ndarray, labels: list[str]) -> float:
    evaluation = evaluate_embeddings(
        "", embeddings, labels, embeddings, labels, ks=(PRECISION_K,), exclude_same_row=True
    )
    return evaluation.precision_at_k[str(PRECISION_K)]


def measure_embedding(n_images: int, backbone_name: str = "efficientnet-lite0") -> EmbeddingFigures:
    backbone = load_backbone(backbone_name)
    inference = load_inference(backbone, InferenceConfig(kind=InferenceKind.AUTO))
    with tempfile.TemporaryDirectory() as folder:
        paths, labels = write_photos(n_images, Path(folder))
        # Warm-up of both paths (first-call allocations, ONNX Runtime's kernel selection), untimed.
        naive_embeddings(backbone, paths[:4])
        embed_sources(inference, backbone.preprocessing, paths[:32])
        naive_rows, naive_seconds = _timed(lambda: naive_embeddings(backbone, paths))
        (fast_rows, _), fast_seconds = _timed(lambda: embed_sources(inference, backbone.preprocessing, paths))
    gflop = gflop_per_image(backbone)
    peak = matmul_gflop_s()
    pipeline = PipelineConfig()
    return EmbeddingFigures(
        backbone=backbone_name,
        n_images=len(paths),
        naive_img_s=len(paths) / naive_seconds,
        fast_img_s=len(paths) / fast_seconds,
        fast_inference=f"{inference.name}, batch {pipeline.batch_size}, {pipeline.decode_workers} decode threads",
        flop_bound_img_s=peak / gflop,
        gflop_per_image=gflop,
        matmul_gflop_s=peak,
        naive_precision_at_k=precision_at_k(naive_rows, labels),
        fast_precision_at_k=precision_at_k(fast_rows, labels),
        max_abs_difference=float(np.abs(naive_rows - fast_rows).max()),
    )
