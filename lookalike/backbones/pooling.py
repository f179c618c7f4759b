"""A vision model's pooled penultimate output as one module: what the exporters trace and fine-tuning trains."""

from __future__ import annotations

import torch
from torch import nn

# transformers' EfficientNet pools with AvgPool2d(kernel=hidden_dim=1280, ceil_mode=True): a single
# window larger than any feature map (inputs up to ~40,000 px), i.e. the global mean. OpenVINO's
# converter rejects a kernel larger than its input, so such a pooler becomes the adaptive global
# mean, which computes the same numbers (tests/test_inference.py compares them).
_GLOBAL_WINDOW = 1024


def _is_global_average(pooler: object) -> bool:
    if not isinstance(pooler, nn.AvgPool2d) or not pooler.ceil_mode:
        return False
    kernel = pooler.kernel_size if isinstance(pooler.kernel_size, tuple) else (pooler.kernel_size,) * 2
    padding = pooler.padding if isinstance(pooler.padding, tuple) else (pooler.padding,) * 2
    return min(kernel) >= _GLOBAL_WINDOW and padding == (0, 0)


def convertible_pooling(model: nn.Module) -> nn.Module:
    """`model` with a whole-map AvgPool2d pooler replaced by AdaptiveAvgPool2d(1) (same output)."""
    if _is_global_average(getattr(model, "pooler", None)):
        model.pooler = nn.AdaptiveAvgPool2d(1)
    return model


def pooled_features(model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """The pooled penultimate output of a transformers vision model, as (batch, dim).

    CNNs expose it as `pooler_output` (ResNet's is (B, C, 1, 1), hence the flatten); models without
    a pooler get the spatial or token mean of their last hidden state. Never the classifier.
    """
    output = model(pixel_values)
    if isinstance(output, torch.Tensor):
        return output.flatten(1)
    pooled = getattr(output, "pooler_output", None)
    if pooled is not None:
        return pooled.flatten(1)
    hidden = output.last_hidden_state
    return hidden.mean(dim=(2, 3)) if hidden.dim() == 4 else hidden.mean(dim=1)


class PooledFeatures(nn.Module):
    """Pixels in, pooled (batch, dim) features out, as a plain tensor the ONNX and OpenVINO exporters trace.

    Fine-tuning uses it too, as the single block of an architecture it cannot split.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = convertible_pooling(model)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return pooled_features(self.model, pixel_values)
