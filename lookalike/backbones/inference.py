"""Run a backbone's forward pass fast on CPU: ONNX Runtime (exported once, cached) or PyTorch."""

from __future__ import annotations

import copy
import logging
import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from lookalike.backbones.registry import Backbone, pooled_features

logger = logging.getLogger(__name__)


class InferenceKind(StrEnum):
    AUTO = "auto"  # ONNX Runtime when it is installed and the model exports, else PyTorch fp32
    ONNX = "onnx"  # ONNX Runtime fp32: matches PyTorch to ~1e-6 (measured in benchmarks/)
    TORCH = "torch"  # the reference: PyTorch fp32
    TORCH_BF16 = "torch-bf16"  # PyTorch under bfloat16 autocast (AVX-512 BF16); cosine to fp32 ~0.9995


def default_cache_dir() -> Path:
    """Where exported models are kept: $LOOKALIKE_CACHE, else ~/.cache/lookalike."""
    return Path(os.environ.get("LOOKALIKE_CACHE", Path.home() / ".cache" / "lookalike"))


@dataclass(frozen=True)
class InferenceConfig:
    """Which runtime runs the forward pass, with how many threads, caching exports where."""

    kind: InferenceKind = InferenceKind.AUTO
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    cache_dir: Path = field(default_factory=default_cache_dir)
    # Hand ONNX Runtime's memory arena back after every run. Its arena otherwise keeps the peak of
    # the largest batch for good (+800 MB after one heat-map, a batch of 32): right for a
    # long-running server, not for builds, which run batch after batch.
    shrink_arena: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", InferenceKind(self.kind))
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")


class Inference(Protocol):
    """Pooled features (before normalisation) of a float32 NCHW batch."""

    name: str

    def features(self, pixel_values: np.ndarray) -> np.ndarray: ...


@dataclass
class TorchInference:
    """PyTorch in channels-last layout; with `bf16`, under bfloat16 autocast."""

    backbone: Backbone
    bf16: bool = False

    def __post_init__(self) -> None:
        self.backbone.model.to(memory_format=torch.channels_last)
        self.name = InferenceKind.TORCH_BF16.value if self.bf16 else InferenceKind.TORCH.value

    @torch.inference_mode()
    def features(self, pixel_values: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(pixel_values).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            return self.backbone.features(batch).to(torch.float32).numpy()


@dataclass
class OnnxInference:
    """An ONNX Runtime session over a model exported from the backbone."""

    model_path: Path
    threads: int
    shrink_arena: bool = False

    def __post_init__(self) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = onnxruntime.InferenceSession(str(self.model_path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.name = InferenceKind.ONNX.value
        self.run_options = onnxruntime.RunOptions()
        if self.shrink_arena:
            self.run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def features(self, pixel_values: np.ndarray) -> np.ndarray:
        pixel_values = np.ascontiguousarray(pixel_values, dtype=np.float32)
        return self.session.run(None, {self.input_name: pixel_values}, self.run_options)[0]


class _PooledFeatures(nn.Module):
    """The backbone's pooled output as a plain tensor, which is what the exporter can trace."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return pooled_features(self.model, pixel_values)


def onnx_model_path(backbone: Backbone, cache_dir: Path) -> Path:
    """The cache file of a backbone's export; the weights fingerprint in the name keeps it honest."""
    safe_name = re.sub(r"[^A-Za-z0-9._-]+", "_", backbone.name)
    return Path(cache_dir) / "onnx" / f"{safe_name}-{backbone.fingerprint}.onnx"


def export_onnx(backbone: Backbone, cache_dir: Path) -> Path:
    """Export once per weights; later calls return the cached file."""
    path = onnx_model_path(backbone, cache_dir)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    size = backbone.preprocessing.crop_size
    # Written beside the target, then renamed: a concurrent or killed export never leaves half a file.
    with tempfile.TemporaryDirectory(dir=path.parent) as staging:
        staged = Path(staging) / path.name
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            # The exporter's constant-folding notes are about its own internals, not our model.
            warnings.simplefilter("ignore", UserWarning)
            torch.onnx.export(
                # A copy: the exporter folds batch norms into the conv weights in place, which would
                # silently corrupt the live model (measured: cosine to the true features fell to 0.3).
                _PooledFeatures(copy.deepcopy(backbone.model).eval()),
                torch.zeros(1, 3, size, size),
                str(staged),
                input_names=["pixel_values"],
                output_names=["features"],
                dynamic_axes={"pixel_values": {0: "batch"}, "features": {0: "batch"}},
                dynamo=False,  # the TorchScript exporter needs no onnxscript and exports these CNNs in ~1 s
            )
        os.replace(staged, path)
    logger.info("Exported %s to %s", backbone.name, path)
    return path


def load_inference(backbone: Backbone, config: InferenceConfig | None = None) -> Inference:
    """The runtime `config.kind` asks for; AUTO falls back to PyTorch when ONNX Runtime cannot serve."""
    config = config or InferenceConfig()
    torch.set_num_threads(config.threads)
    if config.kind is InferenceKind.TORCH:
        return TorchInference(backbone)
    if config.kind is InferenceKind.TORCH_BF16:
        return TorchInference(backbone, bf16=True)
    try:
        return OnnxInference(export_onnx(backbone, config.cache_dir), config.threads, config.shrink_arena)
    except Exception as error:  # missing onnxruntime, an unexportable op, a read-only cache: all mean fall back
        if config.kind is InferenceKind.ONNX:
            raise RuntimeError(
                f"ONNX Runtime cannot run {backbone.name}: {error}. Use --inference torch, "
                "or pip install onnxruntime onnx (versions in requirements.txt)."
            ) from error
        logger.warning("ONNX Runtime unavailable for %s (%s); using PyTorch", backbone.name, error)
        return TorchInference(backbone)
