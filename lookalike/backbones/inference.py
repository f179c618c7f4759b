"""Run a backbone's forward pass fast on CPU: OpenVINO or ONNX Runtime (exported once, cached), or PyTorch."""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

import numpy as np

from lookalike.backbones.exports import default_cache_dir, export_stem, write_manifest
from lookalike.backbones.openvino_runtime import OpenVinoInference, export_openvino, openvino_model_path
from lookalike.backbones.registry import Backbone

__all__ = ["default_cache_dir"]  # re-exported: callers found it here before exports.py existed

logger = logging.getLogger(__name__)


class InferenceKind(StrEnum):
    AUTO = "auto"  # the fastest exact runtime that is installed and runs the model: AUTO_ORDER
    OPENVINO = "openvino"  # OpenVINO: matches PyTorch to ~1e-6 in fp32; bf16 with --precision bf16
    ONNX = "onnx"  # ONNX Runtime fp32: matches PyTorch to ~1e-6 (measured in benchmarks/)
    TORCH = "torch"  # the reference: PyTorch fp32
    TORCH_BF16 = "torch-bf16"  # PyTorch under bfloat16 autocast (AVX-512 BF16); cosine to fp32 ~0.9995


class Precision(StrEnum):
    FP32 = "fp32"  # exact: every runtime gives the PyTorch embeddings to ~1e-6
    BF16 = "bf16"  # opt-in: ~2x faster where the CPU has native bfloat16; top-10 neighbours ~97 % the same


# What AUTO tries, fastest first, as measured on a 2-core AVX-512 CPU with EfficientNet-Lite0
# (benchmarks/README.md): OpenVINO fp32 143 images/s at batch 32 and 6.1 ms at batch 1, ONNX Runtime
# 122 and 15 ms, PyTorch below both. ONNX Runtime has no bf16 path for these convolutions.
AUTO_ORDER = {
    Precision.FP32: (InferenceKind.OPENVINO, InferenceKind.ONNX, InferenceKind.TORCH),
    Precision.BF16: (InferenceKind.OPENVINO, InferenceKind.TORCH),
}

_INSTALL_HINTS = {
    InferenceKind.OPENVINO: "pip install openvino (version in requirements.txt)",
    InferenceKind.ONNX: "pip install onnxruntime onnx (versions in requirements.txt)",
}


@dataclass(frozen=True)
class InferenceConfig:
    """Which runtime runs the forward pass, at which precision, with how many threads, caching exports where."""

    kind: InferenceKind = InferenceKind.AUTO
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    cache_dir: Path = field(default_factory=default_cache_dir)
    precision: Precision = Precision.FP32
    # Hand ONNX Runtime's memory arena back after every run. Its arena otherwise keeps the peak of
    # the largest batch for good (+800 MB after one heat-map, a batch of 32): right for a
    # long-running server, not for builds, which run batch after batch.
    shrink_arena: bool = False
    # Forward passes that run side by side (OpenVINO streams, the threads split between them). One, for a
    # build's batches and a lone query: every thread on one pass (the LATENCY hint). A server running N
    # searches at once wants N: with one stream, two concurrent requests queue behind each other.
    streams: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", InferenceKind(self.kind))
        object.__setattr__(self, "precision", Precision(self.precision))
        if self.threads < 1 or self.streams < 1:
            raise ValueError(f"threads and streams must be >= 1, got {self.threads} and {self.streams}")
        if self.kind is InferenceKind.TORCH_BF16:  # the older spelling of torch at bf16
            object.__setattr__(self, "kind", InferenceKind.TORCH)
            object.__setattr__(self, "precision", Precision.BF16)
        if self.kind is InferenceKind.ONNX and self.precision is Precision.BF16:
            raise ValueError("ONNX Runtime runs these models in fp32 only: use --inference openvino or auto for bf16")


def accepts_uint8(inference: Inference) -> bool:
    """Whether a runtime normalises uint8 crops itself (see `Inference`)."""
    return bool(getattr(inference, "accepts_uint8", False))


def config_named(runtime: str, **fields) -> InferenceConfig:
    """The config that loads the runtime an `Inference.name` names ("openvino-bf16", "onnx", ...) again."""
    kind, _, precision = runtime.partition("-")
    if precision:
        return InferenceConfig(kind=kind, precision=precision, **fields)
    return InferenceConfig(kind=runtime, **fields)


class Inference(Protocol):
    """Pooled features (before normalisation) of a float32 NCHW batch.

    A runtime with `accepts_uint8` also takes the uint8 NHWC centre crops (`Preprocessing.crop_array`)
    and normalises them itself; `accepts_uint8(inference)` reads that for any runtime.
    """

    name: str

    def features(self, pixel_values: np.ndarray) -> np.ndarray: ...


@dataclass
class TorchInference:
    """PyTorch in channels-last layout; with `bf16`, under bfloat16 autocast."""

    backbone: Backbone
    bf16: bool = False

    def __post_init__(self) -> None:
        import torch

        self.backbone.model.to(memory_format=torch.channels_last)
        self.name = InferenceKind.TORCH_BF16.value if self.bf16 else InferenceKind.TORCH.value

    def features(self, pixel_values: np.ndarray) -> np.ndarray:
        import torch

        batch = torch.from_numpy(pixel_values).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
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


def onnx_model_path(backbone: Backbone, cache_dir: Path) -> Path:
    """The cache file of a backbone's export; the weights fingerprint in the name keeps it honest."""
    return Path(cache_dir) / "onnx" / f"{export_stem(backbone.name, backbone.fingerprint)}.onnx"


def export_onnx(backbone: Backbone, cache_dir: Path) -> Path:
    """Export once per weights; later calls return the cached file."""
    path = onnx_model_path(backbone, cache_dir)
    if path.is_file():
        return path
    import torch

    from lookalike.backbones.pooling import PooledFeatures

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
                PooledFeatures(copy.deepcopy(backbone.model).eval()),
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


def _load(kind: InferenceKind, backbone: Backbone, config: InferenceConfig) -> Inference:
    bf16 = config.precision is Precision.BF16
    if kind is InferenceKind.TORCH:
        import torch

        torch.set_num_threads(config.threads)
        return TorchInference(backbone, bf16=bf16)
    if kind is InferenceKind.OPENVINO:
        # An IR converted by an earlier run was compiled by it too (into OpenVINO's cache): compiling it again
        # can run in the background. A first conversion compiles here, where a failure can still fall back.
        converted_before = openvino_model_path(backbone.name, backbone.fingerprint, config.cache_dir).is_file()
        path = export_openvino(backbone, config.cache_dir)
        inference = OpenVinoInference(
            path, config.threads, bf16, config.cache_dir, converted_before, backbone.preprocessing, config.streams
        )
    else:
        inference = OnnxInference(export_onnx(backbone, config.cache_dir), config.threads, config.shrink_arena)
    _remember(backbone, config.cache_dir)
    return inference


def _remember(backbone: Backbone, cache_dir: Path) -> None:
    """Write the manifest that lets a restart serve this export without building the torch module."""
    if not backbone.is_built:
        return  # restored from that very manifest
    manifest = backbone.manifest()
    if manifest is not None:
        try:
            write_manifest(cache_dir, manifest)
        except OSError as error:  # a read-only cache only costs the next start its speed
            logger.warning("Cannot write the manifest of %s in %s: %s", backbone.name, cache_dir, error)


def load_inference(backbone: Backbone, config: InferenceConfig | None = None) -> Inference:
    """The runtime `config.kind` asks for; AUTO takes the first of AUTO_ORDER that runs, logging why others did not.

    An explicit kind that cannot run raises, naming the fix.
    """
    config = config or InferenceConfig()
    if config.kind is not InferenceKind.AUTO:
        try:
            return _load(config.kind, backbone, config)
        except Exception as error:
            hint = _INSTALL_HINTS.get(config.kind, "")
            raise RuntimeError(
                f"{config.kind.value} cannot run {backbone.name}: {error}. Use --inference auto or torch"
                + (f", or {hint}." if hint else ".")
            ) from error
    for kind in AUTO_ORDER[config.precision]:
        if kind is InferenceKind.TORCH:
            break
        try:
            return _load(kind, backbone, config)
        # Not installed, an unconvertible operator, a read-only cache: all mean try the next runtime.
        except Exception as error:
            logger.warning(
                "%s unavailable for %s (%s: %s); falling back to the next runtime. Fix: %s",
                kind.value,
                backbone.name,
                type(error).__name__,
                error,
                _INSTALL_HINTS[kind],
            )
    return _load(InferenceKind.TORCH, backbone, dataclasses.replace(config, kind=InferenceKind.TORCH))
