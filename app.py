"""Lookalike's Gradio app: upload a product photo, get the most visually similar products."""

from __future__ import annotations

import os
from pathlib import Path

if __name__ == "__main__":
    from lookalike.runtime import reexec_with_fast_malloc

    reexec_with_fast_malloc()  # before the model loads: it restarts the process

from lookalike.app.layout import PAGE_CSS, AppConfig, build_demo
from lookalike.app.service import LookalikeService

# LOOKALIKE_EMBEDDINGS points the app at other builds: a folder of builds, one build folder or a Hub
# dataset id (USER/name), several comma-separated (lookalike/index/sources.py);
# LOOKALIKE_MODEL_CONCURRENCY suits the model queue to a machine with more cores.
here = Path(__file__).parent
embeddings = os.environ.get("LOOKALIKE_EMBEDDINGS", str(here / "embeddings"))
config = AppConfig(
    embeddings_dir=Path(embeddings),
    reports_dir=here / "reports",
    model_concurrency=int(os.environ.get("LOOKALIKE_MODEL_CONCURRENCY", AppConfig.model_concurrency)),
)
# Fine-tuned backbones are model folders named relative to the repository (models/...).
service = LookalikeService.from_embeddings_dir(embeddings, max_k=config.max_k, models_root=here)
demo = build_demo(service, config)

if __name__ == "__main__":
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        max_file_size=config.max_file_size,
        css=PAGE_CSS,
    )
