"""The Gradio app: plain handler functions (testable without a browser) wired into gr.Blocks."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from . import shopper_ui
from .catalog import EXAMPLES_DIR, load_image_folder
from .embedding_store import find_indexes
from .gallery_files import ThumbnailFiles
from .images import ImageError, open_image
from .recommend import Recommendation, Recommender, average_similarity
from .report import latest_report
from .search import Metric
from .shopper import ShopperHandlers, checked_metric

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AppConfig:
    """What the app serves and its limits."""

    embeddings_dir: Path = Path("embeddings")
    examples_dir: Path = EXAMPLES_DIR
    default_k: int = 8
    max_k: int = 24
    max_file_size: str = "10mb"
    preferred_backbone: str = "efficientnet-lite0"
    reports_dir: Path = Path("reports")
    # Model calls (recommend, compare) running at once, shared by all users; the rest queue.
    # 1 and 2 gave the same throughput on 2 cores (benchmarks/README.md); 2 keeps one slow upload
    # (a big photo decoding) from holding up everyone, and more would only contend for the cores.
    model_concurrency: int = 2


def image_input(**options) -> gr.Image:
    """A gr.Image whose undecodable uploads get a readable message instead of a bare 'Error'."""
    return with_readable_upload_errors(gr.Image(type="filepath", image_mode=None, **options))


def with_readable_upload_errors(component: gr.components.Component) -> gr.components.Component:
    """Give an image component's undecodable uploads a readable message instead of a bare 'Error'.

    Gradio opens uploads with PIL before our handler runs; its exceptions would reach the user as
    'Error'. We wrap the instance's preprocess rather than subclass, because subclassing a
    component makes gradio write a .pyi file next to this module at import time.
    """
    stock_preprocess = component.preprocess

    def preprocess(payload):
        try:
            return stock_preprocess(payload)
        except gr.Error:
            raise
        except Exception as error:  # PIL raises many types for a bad file: explain it our way
            raise gr.Error(_why_unreadable(payload, error)) from None

    component.preprocess = preprocess
    return component


def _why_unreadable(payload, error: Exception) -> str:
    # An image editor's payload holds several files; the composite is the one we search.
    upload = getattr(payload, "composite", None) or payload
    try:
        open_image(upload.path)
    except ImageError as reason:
        return str(reason)
    except Exception:
        pass
    return f"Could not read this upload as an image ({type(error).__name__}). Try a JPEG or PNG."


@dataclass
class LookalikeService:
    """The recommenders the app offers, by name, and the handlers its events call."""

    recommenders: dict[str, Recommender]
    load_problems: list[str] = field(default_factory=list)
    max_k: int = 24
    thumbnails: ThumbnailFiles = field(default_factory=ThumbnailFiles)

    @classmethod
    def from_embeddings_dir(
        cls, embeddings_dir: Path, max_k: int = 24, models_root: Path | None = None
    ) -> LookalikeService:
        recommenders, problems = {}, []
        for path in find_indexes(embeddings_dir):
            try:
                recommenders[path.name] = Recommender.from_path(path, models_root=models_root)
            except Exception as error:  # one broken build must not take the others down
                logger.exception("Cannot serve %s", path)
                problems.append(f"{path.name}: {error}")
        return cls(recommenders, problems, max_k)

    def recommender_for(self, backbone: str | None) -> Recommender:
        if not self.recommenders:
            raise gr.Error("No embeddings are loaded. Build them: python build_index.py")
        if backbone is None or backbone == "":
            return next(iter(self.recommenders.values()))
        if backbone not in self.recommenders:
            raise gr.Error(f"Unknown backbone {backbone!r}; choose one of {', '.join(self.recommenders)}.")
        return self.recommenders[backbone]

    def recommend(self, image: str | None, k: float, metric: str, backbone: str | None):
        """Gallery items, JSON results and a summary line for one query image."""
        if image is None:
            raise gr.Error("Upload, paste or take a photo first, or click an example.")
        k, metric = self.checked_k(k), checked_metric(metric)
        recommender = self.recommender_for(backbone)
        started = time.perf_counter()
        try:
            results = recommender.recommend(image, k, metric)
        except ImageError as error:
            raise gr.Error(str(error)) from None
        elapsed_ms = (time.perf_counter() - started) * 1000
        summary = (
            f"**Average similarity of the top {len(results)}: {average_similarity(results):.3f}** (cosine) · "
            f"{recommender.name} · {len(recommender.index):,} products · {elapsed_ms:.0f} ms"
        )
        return (*self.present(recommender, results, metric), summary)

    def checked_k(self, k: float) -> int:
        k = int(k)
        if not 1 <= k <= self.max_k:
            raise gr.Error(f"K must be between 1 and {self.max_k}, got {k}.")
        return k

    def present(self, recommender: Recommender, results: list[Recommendation], metric: Metric) -> tuple[list, list]:
        """Gallery items (thumbnail file, caption) and the JSON results of a list of recommendations."""
        gallery = [
            (self.thumbnails.path_for(str(recommender.index.path), r.id, r.image), caption)
            for r, caption in zip(results, gallery_captions(results, metric), strict=True)
        ]
        return gallery, [r.as_dict() for r in results]

    def compare(self, image_a: str | None, image_b: str | None, backbone: str | None) -> str:
        """A sentence giving the cosine similarity of two pictures."""
        if image_a is None or image_b is None:
            raise gr.Error("Upload two photos to compare.")
        recommender = self.recommender_for(backbone)
        try:
            similarity = recommender.similarity(image_a, image_b)
        except ImageError as error:
            raise gr.Error(str(error)) from None
        return (
            f"## Similarity: {similarity:.3f}\n\n"
            f"Cosine similarity of the two embeddings ({recommender.name}); 1 means identical."
        )

    def evaluation(self, backbone: str | None, reports_dir: Path) -> tuple[str, list[tuple[str, str]]]:
        """The latest evaluation report of a backbone's embeddings: Markdown and captioned figures."""
        if not self.recommenders:
            return "No embeddings are loaded.", []
        model_id = self.recommender_for(backbone).name
        report = latest_report(reports_dir, model_id)
        if report is None:
            return (
                f"No evaluation report covers `{model_id}` yet. Write one: "
                f"`python -m lookalike.evaluate embeddings/{model_id} --report {reports_dir}/NAME`",
                [],
            )
        heading = f"### Latest report covering `{model_id}`: `{report.path.name}`\n\n"
        return heading + report.summary, [(str(path), caption) for path, caption in report.figures]


def gallery_captions(results: list[Recommendation], metric: Metric) -> list[str]:
    name = "similarity" if metric is Metric.COSINE else "distance"
    return [
        f"{r.label} · {name} {r.score:.3f}"
        + (f" · +{len(r.near_duplicates)} near-identical" if r.near_duplicates else "")
        for r in results
    ]


def example_images(examples_dir: Path) -> list[str]:
    """The path of each example query photo, category by category; none if the folder is missing."""
    try:
        catalog = load_image_folder(examples_dir)
    except ValueError:
        return []
    return [str(item.image) for item in catalog.items]


def build_demo(service: LookalikeService, config: AppConfig) -> gr.Blocks:
    names = list(service.recommenders)
    default = config.preferred_backbone if config.preferred_backbone in names else (names[0] if names else None)
    examples = example_images(config.examples_dir)
    catalog = service.recommenders.get(default)
    item_ids, categories = (list(catalog.ids), sorted(set(catalog.labels))) if catalog else ([], [])
    # One queue for every event that runs the model, so its limit bounds them all together.
    model_queue = {"concurrency_id": "model", "concurrency_limit": config.model_concurrency}
    with gr.Blocks(title="Lookalike: visually similar products") as demo:
        gr.Markdown("# Lookalike\nShow a product you like and get the most visually similar products of the catalog.")
        if not names:
            gr.Markdown(
                "### No embeddings to serve yet\nBuild them first: `python build_index.py` "
                f"(writes `{config.embeddings_dir}/efficientnet-lite0`), then restart the app."
                + "".join(f"\n\n- {p}" for p in service.load_problems)
            )
        # Explicit, so that "Why this one?" can switch to the Compare tab.
        with gr.Tabs() as tabs:
            with gr.Tab("Recommend"):
                with gr.Row():
                    with gr.Column(scale=1):
                        query = image_input(sources=["upload", "clipboard", "webcam"], label="Your product")
                        k = gr.Slider(
                            1, config.max_k, value=config.default_k, step=1, label="How many recommendations (K)"
                        )
                        metric = gr.Radio([m.value for m in Metric], value=Metric.COSINE.value, label="Similarity")
                        backbone = gr.Dropdown(names, value=default, label="Backbone (embeddings)")
                        filters = shopper_ui.filter_controls(categories, item_ids)
                        button = gr.Button("Find lookalikes", variant="primary")
                        region = shopper_ui.region_controls()
                        product_set = shopper_ui.set_controls(item_ids)
                    with gr.Column(scale=2):
                        summary = gr.Markdown()
                        # No preview on click: a click selects a product for "more / less like this".
                        gallery = gr.Gallery(
                            label="Recommendations", columns=4, height="auto", object_fit="contain", allow_preview=False
                        )
                        feedback = shopper_ui.feedback_controls()
                        results = gr.JSON(label="Results", open=False)
                inputs, outputs = [query, k, metric, backbone], [gallery, results, summary]
                # The page's button runs `search` (filters, feedback); `recommend` stays for API clients,
                # with its original four inputs: Gradio refuses calls that send fewer inputs than declared.
                api_only = gr.Button(visible=False)
                api_only.click(service.recommend, inputs, outputs, api_name="recommend", **model_queue)
                if examples:
                    gr.Examples(
                        # Thumbnails, not category names: a shopper picks a product by its look.
                        examples=[[path] for path in examples],
                        inputs=[query],
                        label="Example photos (not in the catalog): click one",
                        examples_per_page=40,
                    )
            with gr.Tab("Compare two images", id="compare"):
                with gr.Row():
                    image_a = image_input(label="Image A")
                    image_b = image_input(label="Image B")
                compare_button = gr.Button("Compare", variant="primary")
                verdict = gr.Markdown()
                compare_button.click(
                    service.compare, [image_a, image_b, backbone], verdict, api_name="compare", **model_queue
                )
                explain = shopper_ui.explain_controls()
            with gr.Tab("Evaluation"):
                report_summary = gr.Markdown()
                report_figures = gr.Gallery(label="Figures", columns=2, height="auto", object_fit="contain")

                def show_report(name):
                    return service.evaluation(name, config.reports_dir)

                for event in (demo.load, backbone.change):
                    event(show_report, backbone, [report_summary, report_figures], api_visibility="private")
        page = shopper_ui.RecommendWidgets(
            query, k, metric, backbone, button, gallery, results, summary, image_a, image_b, tabs
        )
        shopper_ui.wire(
            ShopperHandlers(service), demo, page, filters, product_set, region, feedback, explain, model_queue
        )
    return demo
