"""A no-CNN baseline: a joint RGB colour histogram, shaped like any other backbone."""

from __future__ import annotations

import torch
from torch import nn

from lookalike.backbones.preprocessing import COLOR_HISTOGRAM_PREPROCESSING

__all__ = ["COLOR_HISTOGRAM_PREPROCESSING", "ColorHistogram"]


class ColorHistogram(nn.Module):
    """Counts pixels in bins**3 RGB cells; the square root makes cosine a Hellinger similarity."""

    def __init__(self, bins: int = 8) -> None:
        super().__init__()
        self.bins = bins

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        cells = (pixel_values.clamp(0, 1) * (self.bins - 0.001)).long()  # (B, 3, H, W)
        codes = (cells[:, 0] * self.bins + cells[:, 1]) * self.bins + cells[:, 2]
        flat = codes.flatten(1)
        counts = torch.zeros(flat.shape[0], self.bins**3, dtype=torch.float32)
        counts.scatter_add_(1, flat, torch.ones_like(flat, dtype=torch.float32))
        return (counts / flat.shape[1]).sqrt()
