"""OpenVINO on CPU: a backbone converted once to OpenVINO IR (cached by weights), compiled through its cache."""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lookalike.backbones.exports import export_stem

if TYPE_CHECKING:
    from lookalike.backbones.registry import Backbone

logger = logging.getLogger(__name__)

# LATENCY = one stream on all the threads: on 2 cores it beat the THROUGHPUT hint at batch 32 too
# (143 vs 77 images/s, measured with OpenVINO 2026.4 on EfficientNet-Lite0).
PERFORMANCE_HINT = "LATENCY"


def openvino_model_path(name: str, fingerprint: str, cache_dir: Path) -> Path:
    """The IR (.xml, with its .bin beside it) of a backbone's weights."""
    return Path(cache_dir) / "openvino" / f"{export_stem(name, fingerprint)}.xml"


def compiled_cache_dir(cache_dir: Path) -> Path:
    """OpenVINO's own CACHE_DIR: compiled blobs a restart loads instead of compiling again."""
    return Path(cache_dir) / "openvino" / "compiled"


def export_openvino(backbone: Backbone, cache_dir: Path) -> Path:
    """Convert once per weights; later calls return the cached IR without building the torch module."""
    path = openvino_model_path(backbone.name, backbone.fingerprint, cache_dir)
    if path.is_file() and path.with_suffix(".bin").is_file():
        return path
    import openvino
    import torch

    from lookalike.backbones.pooling import PooledFeatures

    path.parent.mkdir(parents=True, exist_ok=True)
    size = backbone.preprocessing.crop_size
    # A copy, so that converting never touches the live model (the ONNX exporter taught us to).
    module = PooledFeatures(copy.deepcopy(backbone.model).eval())
    with torch.inference_mode(False), torch.no_grad():
        model = openvino.convert_model(module, example_input=torch.zeros(1, 3, size, size), input=[(-1, 3, size, size)])
    # Written beside the target, then renamed (.bin first, .xml last): a concurrent or killed export never
    # leaves an IR that looks complete. fp16 compression is off: the IR must hold the exact fp32 weights.
    with tempfile.TemporaryDirectory(dir=path.parent) as staging:
        staged = Path(staging) / path.name
        openvino.save_model(model, str(staged), compress_to_fp16=False)
        os.replace(staged.with_suffix(".bin"), path.with_suffix(".bin"))
        os.replace(staged, path)
    logger.info("Converted %s to OpenVINO IR at %s", backbone.name, path)
    return path


class OpenVinoInference:
    """A compiled OpenVINO model on the CPU, fp32 or (opt-in) bf16, one infer request per calling thread."""

    def __init__(self, model_path: Path, threads: int, bf16: bool, cache_dir: Path) -> None:
        import openvino

        core = openvino.Core()
        if bf16 and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise RuntimeError("this CPU has no native bfloat16 (AVX-512 BF16 or AMX); OpenVINO would emulate it")
        core.set_property({"CACHE_DIR": str(compiled_cache_dir(cache_dir))})
        config = {
            "PERFORMANCE_HINT": PERFORMANCE_HINT,
            "INFERENCE_NUM_THREADS": threads,
            # Explicit: on CPUs with AMX OpenVINO would otherwise pick bf16 by itself.
            "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32",
        }
        self.compiled = core.compile_model(str(model_path), "CPU", config)
        self.name = "openvino-bf16" if bf16 else "openvino"
        self._local = threading.local()

    def features(self, pixel_values: np.ndarray) -> np.ndarray:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        request.infer({0: np.ascontiguousarray(pixel_values, dtype=np.float32)})
        # A copy: the output tensor is the request's buffer, overwritten by its next call.
        return np.array(request.get_output_tensor(0).data, dtype=np.float32)
