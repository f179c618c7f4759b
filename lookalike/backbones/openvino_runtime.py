"""OpenVINO on CPU: a backbone converted once to OpenVINO IR (cached by weights), compiled through its cache."""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lookalike.backbones.exports import export_stem
from lookalike.backbones.preprocessing import Preprocessing

if TYPE_CHECKING:
    from lookalike.backbones.registry import Backbone

logger = logging.getLogger(__name__)

# LATENCY = one stream on all the threads: on 2 cores it beat the THROUGHPUT hint at batch 32 too
# (143 vs 77 images/s, measured with OpenVINO 2026.4 on EfficientNet-Lite0).
PERFORMANCE_HINT = "LATENCY"


# The largest batch a pass that starts beside another may run on the streams compilation: a photo and
# its regions (recommend/regions.py: 1 + 9).
SIDE_BY_SIDE_MAX_BATCH = 10


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
    """A compiled OpenVINO model on the CPU, fp32 or (opt-in) bf16, one infer request per thread and input kind.

    `features` takes the float32 NCHW batch every runtime takes or, given `preprocessing`, also the
    uint8 NHWC centre crops themselves: the scaling to [0, 1] and the normalisation then run inside the
    compiled graph (fused into the first convolution) instead of in numpy on the decode threads, which
    was half of their per-image work. With `background`, compiling (from OpenVINO's cache: ~0.1 s a
    model) runs on a thread while the caller goes on, e.g. to build the app's page.
    """

    def __init__(
        self,
        model_path: Path,
        threads: int,
        bf16: bool,
        cache_dir: Path,
        background: bool = False,
        preprocessing: Preprocessing | None = None,
        streams: int = 1,
    ) -> None:
        import openvino

        self._core = openvino.Core()
        if bf16 and "BF16" not in self._core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise RuntimeError("this CPU has no native bfloat16 (AVX-512 BF16 or AMX); OpenVINO would emulate it")
        self._core.set_property({"CACHE_DIR": str(compiled_cache_dir(cache_dir))})
        self._config = {
            "PERFORMANCE_HINT": PERFORMANCE_HINT,
            "INFERENCE_NUM_THREADS": threads,
            # Explicit: on CPUs with AMX OpenVINO would otherwise pick bf16 by itself.
            "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32",
        }
        # With streams > 1 a second compilation runs that many passes at once, each on its share of the
        # threads: a pass that starts while another runs takes it (one stream would queue it behind the
        # other), a lone pass keeps every thread (a lone query: 32 ms against 46 on one thread, loaded).
        self.streams = streams
        self._side_by_side = {**self._config, "PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": streams}
        self._variants: dict[bool, Future] = {}  # by is_uint8
        self._running = 0
        self.model_path = Path(model_path)
        self.name = "openvino-bf16" if bf16 else "openvino"
        self.preprocessing = preprocessing
        self.accepts_uint8 = preprocessing is not None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._compiled: Future = Future()
        self._compiled_uint8: Future | None = None
        if background:
            # OpenVINO releases the GIL while compiling, so this overlaps with Python work for real.
            threading.Thread(target=self._compile, args=(self._compiled, str(model_path)), daemon=True).start()
        else:
            self._compile(self._compiled, str(model_path))
            self._compiled.result()  # a failure raises here, where the caller can fall back

    def _compile(self, result: Future, model, config: dict | None = None) -> None:
        try:
            result.set_result(self._core.compile_model(model, "CPU", config or self._config))
        except Exception as error:  # handed to whoever waits for the model
            logger.error("OpenVINO could not compile %s: %s", self.model_path, error)
            result.set_exception(error)

    @property
    def compiled(self):
        """The compiled float32 model (waits for a background compilation)."""
        return self._compiled.result()

    def _uint8_model(self):
        """The model behind a uint8 NHWC input with the preprocessing's normalisation, compiled on first use."""
        with self._lock:
            if self._compiled_uint8 is None:
                self._compiled_uint8 = Future()
                self._compile(self._compiled_uint8, self._uint8_processor())
        return self._compiled_uint8.result()

    def _uint8_processor(self):
        from openvino import Layout, Type
        from openvino.preprocess import PrePostProcessor

        p = self.preprocessing
        processor = PrePostProcessor(self._core.read_model(str(self.model_path)))
        processor.input().tensor().set_element_type(Type.u8).set_layout(Layout("NHWC"))
        processor.input().model().set_layout(Layout("NCHW"))
        # (x / 255 - mean) / std, as Preprocessing.to_array computes it.
        processor.input().preprocess().convert_element_type(Type.f32).mean([255 * m for m in p.mean]).scale(
            [255 * s for s in p.std]
        )
        return processor.build()

    def features(self, pixel_values: np.ndarray) -> np.ndarray:
        """Pooled features of a float32 (N, 3, H, W) batch, or with `accepts_uint8` of uint8 (N, H, W, 3) crops."""
        is_uint8 = pixel_values.dtype == np.uint8
        if is_uint8 and not self.accepts_uint8:
            raise ValueError("uint8 crops need the OpenVinoInference built with their Preprocessing")
        key = "uint8" if is_uint8 else "float32"
        with self._lock:
            # Queries only: a big batch (a heat-map's occluded copies) keeps the one-stream model, since each
            # thread's request of the streams compilation would keep that batch's buffers (+600 MB after a
            # burst of 24 heat-maps, tests/test_hostile.py).
            side_by_side = self.streams > 1 and self._running > 0 and len(pixel_values) <= SIDE_BY_SIDE_MAX_BATCH
            self._running += 1
        try:
            key += "-side-by-side" if side_by_side else ""
            request = getattr(self._local, key, None)
            if request is None:
                model = self._side_by_side_model(is_uint8) if side_by_side else None
                model = model or (self._uint8_model() if is_uint8 else self.compiled)
                request = model.create_infer_request()
                setattr(self._local, key, request)
            request.infer({0: np.ascontiguousarray(pixel_values, dtype=pixel_values.dtype if is_uint8 else np.float32)})
            # A copy: the output tensor is the request's buffer, overwritten by its next call.
            return np.array(request.get_output_tensor(0).data, dtype=np.float32)
        finally:
            with self._lock:
                self._running -= 1

    def _side_by_side_model(self, is_uint8: bool):
        """The streams compilation of the float32 or uint8 model, compiled on first use."""
        with self._lock:
            if is_uint8 not in self._variants:
                model = self._uint8_processor() if is_uint8 else str(self.model_path)
                self._variants[is_uint8] = Future()
                self._compile(self._variants[is_uint8], model, self._side_by_side)
        return self._variants[is_uint8].result()
