"""Figures of retrieval quality: Matplotlib/Seaborn, written as PNG files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers, Spaces or CI

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from PIL import Image

from lookalike.evaluate.scoring import Evaluation

sns.set_theme(style="whitegrid", context="notebook")


def _save(figure: plt.Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def precision_curves(evaluations: Sequence[Evaluation], path: Path) -> Path:
    """Precision@K against K, one line per model."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for evaluation in evaluations:
        ks = sorted(evaluation.precision_at_k, key=int)
        axis.plot([int(k) for k in ks], [evaluation.precision_at_k[k] for k in ks], marker="o", label=evaluation.model)
    axis.set_xticks(sorted({int(k) for e in evaluations for k in e.precision_at_k}))
    axis.set(xlabel="K (recommendations shown)", ylabel="Precision@K", ylim=(0, 1.02), title="Precision@K by backbone")
    axis.legend(loc="lower left", fontsize=9)
    return _save(figure, path)


def per_category_precision(evaluations: Sequence[Evaluation], k: int, path: Path) -> Path:
    """Grouped horizontal bars: Precision@k of each category, one colour per model."""
    rows = [
        {"category": category, "model": evaluation.model, "precision": figures["precision_at_k"][str(k)]}
        for evaluation in evaluations
        for category, figures in evaluation.per_category.items()
    ]
    categories = sorted({row["category"] for row in rows})
    figure, axis = plt.subplots(figsize=(8, 0.32 * len(categories) * max(2, len(evaluations)) + 1.5))
    sns.barplot(
        x=[r["precision"] for r in rows],
        y=[r["category"] for r in rows],
        hue=[r["model"] for r in rows],
        order=categories,
        orient="h",
        ax=axis,
    )
    axis.set(xlabel=f"Precision@{k}", ylabel="", xlim=(0, 1), title=f"Precision@{k} per category")
    axis.legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    return _save(figure, path)


def hit_miss_similarities(hit_scores: np.ndarray, miss_scores: np.ndarray, model: str, path: Path) -> Path:
    """How similar the retrieved products are when they are of the right category, and when not."""
    figure, axis = plt.subplots(figsize=(7, 4))
    bins = np.linspace(min(hit_scores.min(initial=1), miss_scores.min(initial=1)), 1, 40)
    for scores, name in [(hit_scores, "same category"), (miss_scores, "other category")]:
        if len(scores):  # a density of no values is undefined: a perfect run has no misses
            axis.hist(scores, bins=bins, alpha=0.6, density=True, label=f"{name} ({len(scores):,})")
    axis.set(xlabel="cosine similarity of a recommendation", ylabel="density", title=f"Hits vs misses: {model}")
    axis.legend()
    return _save(figure, path)


def query_grid(
    queries: Sequence[Image.Image],
    query_labels: Sequence[str],
    results: Sequence[Sequence[tuple[Image.Image, str, float]]],
    path: Path,
) -> Path:
    """Each row: a query, then its top-K with their category and score; green hits, red misses."""
    n_rows, n_cols = len(queries), 1 + max(len(r) for r in results)
    figure, axes = plt.subplots(n_rows, n_cols, figsize=(1.7 * n_cols, 1.95 * n_rows), squeeze=False)
    for row, (query, label, retrieved) in enumerate(zip(queries, query_labels, results, strict=True)):
        axes[row, 0].imshow(query)
        axes[row, 0].set_title(f"query\n{label}", fontsize=8, fontweight="bold")
        for col, (image, result_label, score) in enumerate(retrieved, start=1):
            axes[row, col].imshow(image)
            hit = result_label == label
            axes[row, col].set_title(f"{result_label}\n{score:.2f}", fontsize=7, color="green" if hit else "red")
            for spine in axes[row, col].spines.values():
                spine.set(visible=True, color="green" if hit else "red", linewidth=3)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    return _save(figure, path)


def embedding_map(embeddings: np.ndarray, labels: Sequence[str], model: str, path: Path, seed: int = 0) -> Path:
    """A 2-D t-SNE map of the catalog's embeddings, coloured by category."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    # PCA to 50 first is the usual t-SNE recipe: it removes noise and makes t-SNE much faster.
    reduced = PCA(n_components=min(50, *embeddings.shape), random_state=seed).fit_transform(embeddings)
    perplexity = float(min(30, max(2, (len(embeddings) - 1) // 3)))
    points = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(reduced)
    figure, axis = plt.subplots(figsize=(8, 6.5))
    categories = sorted(set(labels))
    # tab10 for few categories; husl beyond (tab20 pairs similar shades), with markers cycling so
    # that neighbouring hues stay distinguishable.
    palette = sns.color_palette("tab10" if len(categories) <= 10 else "husl", len(categories))
    markers = "o^sD"
    for position, (colour, category) in enumerate(zip(palette, categories, strict=True)):
        mask = np.asarray(labels) == category
        marker = markers[position % len(markers)]
        axis.scatter(points[mask, 0], points[mask, 1], s=16, color=colour, marker=marker, label=category, alpha=0.85)
    axis.set(xticks=[], yticks=[], title=f"Catalog embeddings (t-SNE): {model}")
    axis.legend(fontsize=7, markerscale=1.5, bbox_to_anchor=(1.01, 1), loc="upper left")
    return _save(figure, path)


def training_curves(history: Sequence, field_name: str, label: str, title: str, path: Path) -> Path:
    """Training loss and a quality figure per epoch (epoch 0: the pre-trained backbone): `field_name`
    of each record, e.g. the test split's precision_at_k, drawn under `label`."""
    epochs = [record.epoch for record in history]
    figure, (loss_axis, quality_axis) = plt.subplots(1, 2, figsize=(10, 3.8))
    trained = [record for record in history if record.loss is not None]
    loss_axis.plot([r.epoch for r in trained], [r.loss for r in trained], marker="o")
    loss_axis.set(xlabel="epoch", ylabel="training loss", title="Loss", xticks=epochs)
    values = [getattr(record, field_name) for record in history]
    quality_axis.plot(epochs, values, marker="o", color="C1")
    quality_axis.axhline(values[0], color="grey", linestyle="--", label="pre-trained")
    quality_axis.set(xlabel="epoch", ylabel=label, title=label, xticks=epochs)
    quality_axis.legend()
    figure.suptitle(title)
    return _save(figure, path)


def street_grid(outcomes: Sequence, folder: Path, thumbnail_of, path: Path, n: int = 24, columns: int = 8) -> Path:
    """Street-to-shop at a glance: `n` query photos (an even sample of `outcomes`), each above the
    first result the search gave it, framed green (the very product first), orange (in the first 5)
    or red (not). `thumbnail_of(product_id)` is a catalog product's picture."""
    picked = [outcomes[int(i)] for i in np.linspace(0, len(outcomes) - 1, min(n, len(outcomes)))]
    rows = -(-len(picked) // columns)
    figure, axes = plt.subplots(2 * rows, columns, figsize=(1.6 * columns, 3.3 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for position, outcome in enumerate(picked):
        top, bottom = (
            axes[2 * (position // columns), position % columns],
            axes[2 * (position // columns) + 1, position % columns],
        )
        colour = "green" if outcome.rank == 1 else "orange" if outcome.rank and outcome.rank <= 5 else "red"
        with Image.open(Path(folder) / outcome.query) as photo:
            top.imshow(photo.convert("RGB"))
        top.set_title(
            "first" if outcome.rank == 1 else f"rank {outcome.rank}" if outcome.rank else "missed",
            color=colour,
            fontsize=8,
        )
        if outcome.top_ids:
            bottom.imshow(thumbnail_of(outcome.top_ids[0]))
            bottom.set_title(f"{outcome.top_score:.2f}", fontsize=7)
        for axis in (top, bottom):
            axis.axis("on")
            axis.set(xticks=[], yticks=[])
            for spine in axis.spines.values():
                spine.set(color=colour, linewidth=2.5)
    figure.suptitle("Shoppers' photos (above) and the first result (below)")
    return _save(figure, path)
