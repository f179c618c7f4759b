"""What the app does, without the page: recommenders by name, searches, their answers and summaries."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from lookalike.app.gallery_files import ThumbnailFiles
from lookalike.evaluate.saved_reports import latest_report
from lookalike.images import ImageError
from lookalike.index.exact import Metric
from lookalike.index.sources import Download, download_dataset, resolve_embeddings
from lookalike.recommend.recommender import Recommendation, Recommender, average_similarity

logger = logging.getLogger(__name__)


@dataclass
class LookalikeService:
    """The recommenders the app offers, by name, and the handlers its events call."""

    recommenders: dict[str, Recommender]
    load_problems: list[str] = field(default_factory=list)
    max_k: int = 24
    thumbnails: ThumbnailFiles = field(default_factory=ThumbnailFiles)

    @classmethod
    def from_embeddings_dir(
        cls,
        embeddings: str | Path,
        max_k: int = 24,
        models_root: Path | None = None,
        download: Download = download_dataset,
    ) -> LookalikeService:
        """Serve every build `embeddings` names: folders and Hub dataset ids, comma-separated (index.sources)."""
        sources = resolve_embeddings(embeddings, download)
        recommenders, problems = {}, list(sources.problems)
        for name, path in sources.builds.items():
            try:
                recommenders[name] = Recommender.from_path(path, models_root=models_root)
            except Exception as error:  # one broken build must not take the others down
                logger.exception("Cannot serve %s", path)
                problems.append(f"{name}: {error}")
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


def checked_metric(metric: str | None) -> Metric:
    try:
        return Metric(metric or Metric.COSINE)
    except ValueError:
        raise gr.Error(f"Unknown metric {metric!r}; use cosine or euclidean.") from None
