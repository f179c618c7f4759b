"""Embed pictures with a backbone: preprocessing, forward pass, L2 normalisation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from lookalike.backbones.registry import Backbone

if TYPE_CHECKING:
    from lookalike.backbones.inference import Inference


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def embed_images(
    backbone: Backbone, images: Sequence[Image.Image], batch_size: int = 32, inference: Inference | None = None
) -> np.ndarray:
    """Unit-norm float32 embeddings, one row per RGB picture.

    Without `inference` the backbone's own PyTorch forward pass runs: the reference every faster
    runtime is tested against.
    """
    if not images:
        return np.zeros((0, backbone.embedding_dim), dtype=np.float32)
    chunks = []
    for start in range(0, len(images), batch_size):
        pixel_values = backbone.preprocessing.batch(list(images[start : start + batch_size]))
        if inference is None:
            import torch

            chunks.append(backbone.features(torch.from_numpy(pixel_values)).to(torch.float32).numpy())
        else:
            chunks.append(inference.features(pixel_values))
    return l2_normalize(np.concatenate(chunks))
