"""Pooling made for instance retrieval, on the street-to-shop photos: GeM and learned whitening.

Both change how the backbone's last feature map becomes an embedding, for the catalog as for the
queries, so they are measured here on the feature maps themselves (PyTorch, the app's
preprocessing, exact cosine search over the bundled catalog) rather than through builds:

- average pooling: what every build stores (the baseline of this table);
- GeM, p = 3 (Radenovic et al. 2018): the mean of the cubed activations, a cube root: between the
  average and the maximum, favouring the strongest responses;
- whitening learned on the catalog's packshots (PCA, the leading 256 directions, each scaled by
  1 / sqrt(its variance + the mean variance), Jegou & Chum 2012), applied to average-pooled
  features of both sides.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lookalike.backbones.registry import load_backbone
from lookalike.images import open_image
from lookalike.index.store import load_index

WHITENED_DIMENSIONS = 256


def feature_maps(backbone, images) -> np.ndarray:
    model, chunks = backbone.model.eval(), []
    with torch.inference_mode():
        for start in range(0, len(images), 32):
            pixels = backbone.preprocessing(images[start : start + 32])
            chunks.append(model(pixels).last_hidden_state.numpy())
    return np.concatenate(chunks)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def gem(maps: np.ndarray, p: float = 3.0) -> np.ndarray:
    return _unit(np.mean(np.clip(maps, 1e-6, None) ** p, axis=(2, 3)) ** (1 / p))


def learned_whitening(catalog: np.ndarray, dimensions: int = WHITENED_DIMENSIONS):
    """A whitening fitted on the catalog's own embeddings, as a function of any embeddings."""
    mean = catalog.mean(0)
    _, values, vectors = np.linalg.svd(catalog - mean, full_matrices=False)
    variances = values[:dimensions] ** 2 / len(catalog)
    projection = vectors[:dimensions].T / np.sqrt(variances + variances.mean())
    return lambda x: _unit((x - mean) @ projection)


def _scores(queries: np.ndarray, catalog: np.ndarray, targets: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    similarities = queries @ catalog.T
    ranks = (similarities > similarities[np.arange(len(targets)), targets][:, None]).sum(1)
    loo = catalog @ catalog.T
    np.fill_diagonal(loo, -np.inf)
    top5 = np.argsort(-loo, axis=1)[:, :5]
    return {
        "R@1": float(np.mean(ranks < 1)),
        "R@5": float(np.mean(ranks < 5)),
        "R@10": float(np.mean(ranks < 10)),
        "catalog_loo_p_at_5": float(np.mean(labels[top5] == labels[:, None])),
    }


def pooling_experiment(build_dir: Path, queries) -> dict[str, dict[str, float]]:
    index = load_index(build_dir)
    backbone = load_backbone(index.metadata.model_id)
    ids = list(index.ids)
    labels = np.asarray(index.labels)
    catalog_maps = feature_maps(backbone, [index.dataset[row]["image"] for row in range(len(ids))])
    query_maps = feature_maps(backbone, [open_image(q.image) for q in queries])
    targets = np.array([ids.index(q.product_id) for q in queries])
    average_catalog, average_queries = _unit(catalog_maps.mean((2, 3))), _unit(query_maps.mean((2, 3)))
    whiten = learned_whitening(average_catalog)
    figures = {
        "average pooling": _scores(average_queries, average_catalog, targets, labels),
        "GeM p=3": _scores(gem(query_maps), gem(catalog_maps), targets, labels),
        "average + learned whitening": _scores(whiten(average_queries), whiten(average_catalog), targets, labels),
    }
    print(figures, flush=True)
    return figures
