"""Lookalike's Gradio app: upload a product photo, get the most visually similar products."""

from __future__ import annotations

import os
from pathlib import Path

# No fast-malloc restart here (lookalike/runtime.py): it keeps every freed page for good, and a
# server runs for days. Measured with benchmarks/hostile.py (docs/robustness.md): without it the
# server ended a hostile run 100 MB lower and was no slower (queries run on ONNX Runtime).
import gradio as gr
from fastapi import FastAPI

from lookalike.app.json_api import API_PREFIX, ApiConfig, json_api
from lookalike.app.layout import PAGE_CSS, AppConfig, build_demo
from lookalike.app.service import LookalikeService
from lookalike.app.traffic import QueueSlots, request_limits, share_fairly
from lookalike.backbones.inference import InferenceConfig
from lookalike.runtime import share_blas_threads

# LOOKALIKE_EMBEDDINGS points the app at other builds: a folder of builds, one build folder or a Hub
# dataset id (USER/name), several comma-separated (lookalike/index/sources.py);
# LOOKALIKE_MODEL_CONCURRENCY suits the model queue to a machine with more cores; LOOKALIKE_CORS_ORIGINS
# (comma-separated, e.g. https://shop.example) lets those sites' pages call the JSON API.
here = Path(__file__).parent
embeddings = os.environ.get("LOOKALIKE_EMBEDDINGS", str(here / "embeddings"))
config = AppConfig(
    reports_dir=here / "reports",
    model_concurrency=int(os.environ.get("LOOKALIKE_MODEL_CONCURRENCY", AppConfig.model_concurrency)),
)
# Fine-tuned backbones are model folders named relative to the repository (models/...). As many forward
# passes run side by side as searches do (one OpenVINO stream each): with one stream, the second of two
# concurrent searches waited for the first one's forward pass.
service = LookalikeService.from_embeddings_dir(
    embeddings,
    max_k=config.max_k,
    models_root=here,
    inference=InferenceConfig(shrink_arena=True, streams=config.model_concurrency),
)
share_blas_threads(config.model_concurrency)  # after loading: FAISS brings its own BLAS
# Thumbnails are written once, atomically, and never change (gallery_files.py): served from their folder
# as they are, not checked and copied into Gradio's cache for every answer (35 ms of 8 at a million products).
gr.set_static_paths([service.thumbnails.folder])
demo = share_fairly(build_demo(service, config))  # queue limits, "busy" message, temp files deleted
# The JSON API beside the page, over the same service, running its searches in the page's model slots:
# the page's searches and the API's together never run more than model_concurrency at once.
api = json_api(
    service,
    ApiConfig(
        cors_origins=tuple(o.strip() for o in os.environ.get("LOOKALIKE_CORS_ORIGINS", "").split(",") if o.strip()),
    ),
    slots=QueueSlots(demo),
)

# The page's server with the JSON API beside it, not under it: Gradio's own CORS layer lets every
# origin call a deployed app's routes (so that the page can be embedded anywhere), and the API must
# answer only the shops of LOOKALIKE_CORS_ORIGINS. Routes of the outer app come before the page's.
server = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
server.mount(API_PREFIX, api)
server = gr.mount_gradio_app(
    server,
    demo,
    path="",
    max_file_size=config.max_file_size,
    css=PAGE_CSS,
    app_kwargs={"middleware": request_limits()},  # JSON bodies over the cap refused unread
)

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(
        server,
        host=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
        port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        log_level="warning",
    )
