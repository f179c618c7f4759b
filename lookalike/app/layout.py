"""The Gradio app: plain handler functions (testable without a browser) wired into gr.Blocks."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from lookalike.app import shopper_controls
from lookalike.app.components import image_input
from lookalike.app.handlers import Handlers
from lookalike.app.service import LookalikeService
from lookalike.backbones.registry import DEFAULT_BACKBONE
from lookalike.catalog import EXAMPLES_DIR, load_image_folder
from lookalike.index.exact import Metric

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AppConfig:
    """What the app serves and its limits."""

    examples_dir: Path = EXAMPLES_DIR
    default_k: int = 8
    max_k: int = 24
    max_file_size: str = "10mb"
    reports_dir: Path = Path("reports")
    # Model calls (recommend, compare) running at once, shared by all users; the rest queue.
    # 1 and 2 gave the same throughput on 2 cores (benchmarks/README.md); 2 keeps one slow upload
    # (a big photo decoding) from holding up everyone, and more would only contend for the cores.
    model_concurrency: int = 2


# Four rows of three on a phone, three of four on a desktop, before the page's own controls.
EXAMPLES_PER_PAGE = 12
# Phone widths: a two-column gallery with captions under the pictures, and no sideways scrolling.
PAGE_CSS = """
#lookalike-results .grid-container { grid-template-columns: repeat(var(--grid-cols), minmax(0, 1fr)); }
#lookalike-results .grid-container { grid-auto-rows: auto; }
#lookalike-results .thumbnail-item { display: flex; flex-direction: column; aspect-ratio: auto; height: auto; }
#lookalike-results .thumbnail-item img { aspect-ratio: 1; min-height: 0; }
#lookalike-results .caption-label {
  position: static; max-width: 100%; white-space: normal; opacity: 1; border: none; border-radius: 0;
  font-size: var(--text-sm); line-height: 1.3; padding-bottom: 4px; overflow-wrap: anywhere;
}
@media (max-width: 640px) {
  #lookalike-results .grid-container { grid-template-columns: repeat(2, minmax(0, 1fr)) !important; }
  .gradio-container { padding-left: 8px !important; padding-right: 8px !important; }
}
"""


def example_images(examples_dir: Path) -> list[str]:
    """The path of each example query photo, category by category; none if the folder is missing."""
    try:
        catalog = load_image_folder(examples_dir)
    except ValueError:
        return []
    return [str(item.image) for item in catalog.items]


def catalog_filters(recommender) -> shopper_controls.CatalogFilters:
    """What the default build's catalog can be filtered on (nothing when no build is served)."""
    if recommender is None:
        return shopper_controls.CatalogFilters([], [])
    products = recommender.products
    return shopper_controls.CatalogFilters(
        sorted(recommender.categories.names),
        products.offered_facets(),
        has_prices=products.price is not None,
        has_stock=products.in_stock is not None,
    )


def build_demo(service: LookalikeService, config: AppConfig) -> gr.Blocks:
    names = list(service.recommenders)
    default = service.default_backbone
    examples = example_images(config.examples_dir)
    catalog = service.recommenders.get(default)
    filters = catalog_filters(catalog)
    # One queue for every event that runs the model, so its limit bounds them all together.
    model_queue = {"concurrency_id": "model", "concurrency_limit": config.model_concurrency}
    handlers = Handlers(service)
    with gr.Blocks(title="Lookalike: visually similar products") as demo:
        gr.Markdown("# Lookalike\nShow a product you like and get the most visually similar products of the catalog.")
        if not names:
            gr.Markdown(
                "### No embeddings to serve yet\nBuild them first: `python build_index.py` "
                f"(writes `embeddings/{DEFAULT_BACKBONE}`), then restart the app."
                + "".join(f"\n\n- {p}" for p in service.load_problems)
            )
        # Explicit, so that "Why this one?" can switch to the Compare tab.
        with gr.Tabs() as tabs:
            with gr.Tab("Recommend"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=280):
                        query = image_input(sources=["upload", "clipboard", "webcam"], label="Your product")
                        if examples:
                            gr.Examples(
                                # Thumbnails, not category names: a shopper picks a product by its look.
                                # Right under the photo, so a phone reaches them before the controls.
                                examples=[[path] for path in examples],
                                inputs=[query],
                                label="Or click an example photo (not in the catalog)",
                                examples_per_page=EXAMPLES_PER_PAGE,
                            )
                        button = gr.Button("Find lookalikes", variant="primary")
                        k = gr.Slider(
                            1, config.max_k, value=config.default_k, step=1, label="How many recommendations (K)"
                        )
                        metric = gr.Radio([m.value for m in Metric], value=Metric.COSINE.value, label="Similarity")
                        backbone = gr.Dropdown(names, value=default, label="Backbone (embeddings)")
                        search = shopper_controls.SearchControls(
                            k, metric, backbone, **shopper_controls.filter_controls(filters)
                        )
                        region = shopper_controls.region_controls()
                        product_set = shopper_controls.set_controls()
                    with gr.Column(scale=2, min_width=280):
                        summary = gr.Markdown()
                        # No preview on click: a click selects a product for "more / less like this".
                        gallery = gr.Gallery(
                            label="Recommendations",
                            columns=4,
                            height="auto",
                            object_fit="contain",
                            allow_preview=False,
                            elem_id="lookalike-results",
                        )
                        feedback = shopper_controls.feedback_controls()
                        with gr.Accordion("Results as JSON", open=False):
                            results = gr.JSON(label="Results", open=True)
                # The page's button runs `search` (filters, feedback); `recommend` stays for API clients,
                # with its original four inputs: Gradio refuses calls that send fewer inputs than declared.
                # Both end in the same service method.
                api_only = gr.Button(visible=False)
                api_only.click(
                    handlers.recommend,
                    [query, k, metric, backbone],
                    [gallery, results, summary],
                    api_name="recommend",
                    **model_queue,
                )
            with gr.Tab("Compare two images", id="compare"):
                with gr.Row():
                    image_a = image_input(label="Image A")
                    image_b = image_input(label="Image B")
                compare_button = gr.Button("Compare", variant="primary")
                verdict = gr.Markdown()
                compare_button.click(
                    handlers.compare, [image_a, image_b, backbone], verdict, api_name="compare", **model_queue
                )
                explain = shopper_controls.explain_controls()
            with gr.Tab("Evaluation"):
                report_summary = gr.Markdown()
                report_figures = gr.Gallery(label="Figures", columns=2, height="auto", object_fit="contain")

                def show_report(name):
                    return service.evaluation(name, config.reports_dir)

                for event in (demo.load, backbone.change):
                    event(show_report, backbone, [report_summary, report_figures], api_visibility="private")
        page = shopper_controls.RecommendWidgets(query, button, gallery, results, summary, image_a, image_b, tabs)
        shopper_controls.wire(handlers, demo, page, search, product_set, region, feedback, explain, model_queue)
    return demo
