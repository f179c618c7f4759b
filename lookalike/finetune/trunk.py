"""A CNN backbone as a sequence of blocks and a pooling head, so lower blocks can be frozen and cached.

Fine-tuning on a 2-core CPU is practical when only the top blocks train: the frozen lower blocks
then run once per image (their output cached), not once per step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from lookalike.backbones.pooling import PooledFeatures

CACHE_BATCH = 32  # images through the frozen blocks at a time while caching their outputs


@dataclass
class Trunk:
    """`blocks[0]` takes pixels; `head` turns the last block's output into pooled (batch, dim) features."""

    blocks: list[nn.Module]
    head: Callable[[torch.Tensor], torch.Tensor]

    def __len__(self) -> int:
        return len(self.blocks)

    def lower(self, pixel_values: torch.Tensor, n_frozen: int) -> torch.Tensor:
        """The output of the first `n_frozen` blocks (the pixels themselves when 0)."""
        hidden = pixel_values
        for block in self.blocks[:n_frozen]:
            hidden = block(hidden)
        return hidden

    def cached_lower(self, batches: Iterable[torch.Tensor], n_frozen: int) -> torch.Tensor:
        """`lower` of batches of pixels, joined, in fp16: what fine-tuning keeps of each view (half the
        memory of fp32; the trainable blocks read it back as fp32). Its callers run it under
        `torch.inference_mode()`: the frozen blocks never learn."""
        return torch.cat([self.lower(pixels, n_frozen).to(torch.float16) for pixels in batches])

    def upper(self, hidden: torch.Tensor, n_frozen: int) -> torch.Tensor:
        """Pooled features from the output of the first `n_frozen` blocks."""
        for block in self.blocks[n_frozen:]:
            hidden = block(hidden)
        return self.head(hidden)

    def trainable_parameters(self, n_frozen: int) -> list[nn.Parameter]:
        return [p for block in self.blocks[n_frozen:] for p in block.parameters()]


def _flat_pool(pooler: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda hidden: pooler(hidden).flatten(1)


def trunk_of(model: nn.Module) -> Trunk:
    """Split a transformers vision CNN exactly as its own forward pass runs it."""
    kind = type(model).__name__
    if kind == "EfficientNetModel":
        encoder = model.encoder
        top = nn.Sequential(encoder.top_conv, encoder.top_bn, encoder.top_activation)
        return Trunk([model.embeddings, *encoder.blocks, top], _flat_pool(model.pooler))
    if kind == "MobileNetV2Model":
        return Trunk([model.conv_stem, *model.layer, model.conv_1x1], _flat_pool(model.pooler))
    if kind == "ResNetModel":
        return Trunk([model.embedder, *model.encoder.stages], _flat_pool(model.pooler))
    # An architecture we cannot split: one block (the same module the exporters trace), nothing to cache.
    return Trunk([PooledFeatures(model)], lambda features: features)
