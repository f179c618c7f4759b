"""Metric-learning objectives for fine-tuning the embedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ProxyCosFaceLoss(nn.Module):
    """Normalised softmax over one learnable proxy per category, with an additive cosine margin.

    Each embedding is pulled towards its category's proxy and pushed from the others, on the unit
    sphere and by cosine: the same geometry the recommender searches in, so the backbone's pooled
    features improve directly and the proxies are thrown away after training (CosFace, Wang et
    al. 2018; normalised softmax, Zhai & Wu 2019). Unlike pair or triplet losses it needs no
    mining and sees every category in every step, which matters with small CPU batches.
    """

    def __init__(self, n_classes: int, dim: int, temperature: float = 0.05, margin: float = 0.1) -> None:
        super().__init__()
        if n_classes < 2 or temperature <= 0 or not 0 <= margin < 1:
            raise ValueError(
                f"need >= 2 classes, temperature > 0, 0 <= margin < 1; got {n_classes}, {temperature}, {margin}"
            )
        self.proxies = nn.Parameter(F.normalize(torch.randn(n_classes, dim), dim=1))
        self.temperature = temperature
        self.margin = margin

    @torch.no_grad()
    def init_proxies(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """Start each proxy at its category's mean embedding: training then starts from a sensible place."""
        for label in labels.unique():
            self.proxies[label] = F.normalize(embeddings[labels == label].mean(0), dim=0)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cosines = F.normalize(embeddings, dim=1) @ F.normalize(self.proxies, dim=1).T
        margins = F.one_hot(labels, cosines.shape[1]).to(cosines.dtype) * self.margin
        return F.cross_entropy((cosines - margins) / self.temperature, labels)
