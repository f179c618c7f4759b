"""Handlers of the shopper features: several products, more/less like this, filters, crops, heat-maps, permalinks.

Plain functions over a LookalikeService, testable without a browser; `shopper_controls` wires them into
the page. Every search handler answers like the `recommend` endpoint (gallery, JSON list of
{"id", "label", "score"}, Markdown summary) plus the query it ran, kept in a gr.State so that
"less like this" can run it again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

import gradio as gr
from PIL import Image

from lookalike.app.service import LookalikeService, checked_metric
from lookalike.images import ImageError
from lookalike.index.exact import Metric
from lookalike.recommend.explain import explain_similarity
from lookalike.recommend.feedback import MAX_SET_SIZE
from lookalike.recommend.filters import CategoryFilter
from lookalike.recommend.recommender import RecommendationRequest, Recommender, average_similarity


@dataclass(frozen=True)
class Query:
    """What a search started from: uploaded pictures (paths) and/or catalog product ids."""

    images: tuple[str, ...] = ()
    item_ids: tuple[str, ...] = ()

    def permalink(self, k: int, metric: Metric, backbone: str | None, options: SearchOptions) -> str | None:
        """A relative link to the page that reproduces these results, filters and feedback included.

        Only searches from catalog products have one: the server keeps no uploads.

        >>> Query(item_ids=("fruit/a.jpg",)).permalink(8, Metric.COSINE, None, SearchOptions(categories=("tool",)))
        '?item=fruit%2Fa.jpg&k=8&category=tool'
        """
        if self.images or not self.item_ids:
            return None
        params: list[tuple[str, object]] = [("item", item_id) for item_id in self.item_ids] + [("k", k)]
        params += [("metric", metric.value)] if metric is not Metric.COSINE else []
        params += [("backbone", backbone)] if backbone else []
        params += [("category", category) for category in options.categories]
        params += [("other_categories", "1")] if options.exclude_own_category else []
        params += [("not_wanted", item_id) for item_id in options.not_wanted]
        params += [("duplicates", "1")] if not options.collapse_duplicates else []
        return "?" + urlencode(params)


@dataclass(frozen=True)
class SearchOptions:
    """The filter and feedback controls, as the page holds them."""

    categories: tuple[str, ...] = ()
    exclude_own_category: bool = False
    not_wanted: tuple[str, ...] = ()
    collapse_duplicates: bool = True

    @classmethod
    def from_controls(cls, categories, exclude_own_category, not_wanted, collapse_duplicates) -> SearchOptions:
        return cls(
            tuple(categories or ()),
            bool(exclude_own_category),
            tuple(not_wanted or ()),
            True if collapse_duplicates is None else bool(collapse_duplicates),
        )

    def request(self, k: int, metric: Metric) -> RecommendationRequest:
        return RecommendationRequest(
            k=k,
            metric=metric,
            filter=CategoryFilter(only=self.categories, exclude_query_category=self.exclude_own_category),
            less_like_ids=self.not_wanted,
            collapse_duplicates=self.collapse_duplicates,
        )

    def describe(self, query_categories: Sequence[str]) -> list[str]:
        notes = [f"only {', '.join(self.categories)}"] if self.categories else []
        if self.exclude_own_category:
            notes.append(f"not your product's category ({', '.join(query_categories)})")
        if self.not_wanted:
            notes.append(f"steered away from {len(self.not_wanted)} not wanted")
        return notes


@dataclass
class ShopperHandlers:
    """The shopper features' event handlers, over the app's recommenders and its answer format."""

    service: LookalikeService

    def search(self, image, k, metric, backbone, categories=(), exclude_own=False, not_wanted=(), collapse=True):
        """Recommendations for one photo, with the filters and "not wanted" feedback applied."""
        if image is None:
            raise gr.Error("Upload, paste or take a photo first, or click an example.")
        return self._run(Query(images=(image,)), k, metric, backbone, categories, exclude_own, not_wanted, collapse)

    def recommend_set(
        self, images, k, metric, backbone, picked_ids=(), categories=(), exclude_own=False, not_wanted=(), collapse=True
    ):
        """Recommendations for up to 5 liked products at once (uploads and/or picked catalog products)."""
        paths = tuple(_path(image) for image in images or ())
        query = Query(images=paths, item_ids=tuple(picked_ids or ()))
        n_products = len(query.images) + len(query.item_ids)
        if n_products == 0:
            raise gr.Error("Upload or pick the products you like first (up to 5).")
        if n_products > MAX_SET_SIZE:
            raise gr.Error(f"Up to {MAX_SET_SIZE} products at once; you gave {n_products}. Remove some.")
        return self._run(query, k, metric, backbone, categories, exclude_own, not_wanted, collapse)

    def recommend_item(
        self, item_id, k, metric, backbone, categories=(), exclude_own=False, not_wanted=(), collapse=True
    ):
        """Recommendations for a catalog product: "more like this", and what a permalink reproduces."""
        if not item_id:
            raise gr.Error("Click a recommended product first, or give a catalog product id.")
        query = Query(item_ids=(str(item_id),))
        return self._run(query, k, metric, backbone, categories, exclude_own, not_wanted, collapse)

    def recommend_region(
        self, editor_value, k, metric, backbone, categories=(), exclude_own=False, not_wanted=(), collapse=True
    ):
        """Recommendations for the cropped region of a photo (the image editor's composite)."""
        image = region_of_interest(editor_value)
        return self.search(image, k, metric, backbone, categories, exclude_own, not_wanted, collapse)

    def search_again(self, query, k, metric, backbone, categories, exclude_own, not_wanted, collapse):
        """The last search with the filters as they are now; nothing before a first search."""
        if query is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return self._run(query, k, metric, backbone, categories, exclude_own, not_wanted, collapse)

    def less_like_this(self, query, selected_id, k, metric, backbone, categories, exclude_own, not_wanted, collapse):
        """Mark the selected product as not wanted and run the last search again, steered away from it."""
        if not selected_id:
            raise gr.Error("Click a recommended product first, then say you want less like it.")
        if query is None:
            raise gr.Error("Search for something first.")
        not_wanted = list(dict.fromkeys([*(not_wanted or ()), selected_id]))
        answer = self._run(query, k, metric, backbone, categories, exclude_own, not_wanted, collapse)
        return (*answer, gr.update(value=not_wanted))

    def open_permalink(self, k, metric, backbone, request: gr.Request):
        """On page load, a link from `Query.permalink` (`?item=ID&k=8...`) shows its recommendations again.

        Returns the search's answer, then the values of the controls it set: K, metric, backbone,
        categories, "not my product's category", not wanted, collapse duplicates.
        """
        params = request.query_params if request is not None else None
        items = params.getlist("item") if params is not None else []
        if not items:
            return tuple(gr.skip() for _ in range(4 + 7))
        k = _int_param(params.get("k"), k)
        metric, backbone = params.get("metric") or metric, params.get("backbone") or backbone
        controls = (params.getlist("category"), params.get("other_categories") == "1", params.getlist("not_wanted"))
        collapse = params.get("duplicates") != "1"
        if len(items) == 1:
            answer = self.recommend_item(items[0], k, metric, backbone, *controls, collapse)
        else:
            answer = self.recommend_set(None, k, metric, backbone, items, *controls, collapse)
        return (*answer, *(gr.update(value=value) for value in (k, metric, backbone, *controls, collapse)))

    def explain(self, image_a, image_b, backbone):
        """Heat-maps of the regions of each picture that drive their similarity, and how to read them."""
        if image_a is None or image_b is None:
            raise gr.Error("Upload two photos to explain their similarity.")
        recommender = self.service.recommender_for(backbone)
        try:
            map_a, map_b = explain_similarity(recommender.embed, image_a, image_b)
        except ImageError as error:
            raise gr.Error(str(error)) from None
        note = (
            f"**Why they match** (similarity {map_a.similarity:.3f}): the brighter a region, the more "
            "similarity is lost when it is hidden, so the more the match rests on it. Each picture is "
            "covered patch by patch (occlusion) and embedded again."
        )
        return map_a.overlay(), map_b.overlay(), note

    def selected_product(self, results, evt: gr.SelectData):
        """The id of the gallery item just clicked, read from the JSON results shown beside it."""
        if not results or evt.index is None or evt.index >= len(results):
            return None, ""
        chosen = results[evt.index]
        return chosen["id"], f"Selected: **{chosen['id']}** ({chosen['label']})"

    def product_image(self, item_id, backbone) -> Image.Image | None:
        """A catalog product's picture (the stored thumbnail), to compare it with the query."""
        recommender = self.service.recommender_for(backbone)
        return recommender.index.dataset[recommender.row_of(item_id)]["image"] if item_id else None

    def _run(self, query: Query, k, metric, backbone, categories, exclude_own, not_wanted, collapse):
        k = self.service.checked_k(k)
        metric = checked_metric(metric)
        options = SearchOptions.from_controls(categories, exclude_own, not_wanted, collapse)
        recommender = self.service.recommender_for(backbone)
        started = time.perf_counter()
        try:
            found = recommender.search(options.request(k, metric), images=query.images, item_ids=query.item_ids)
        except ImageError as error:
            raise gr.Error(str(error)) from None
        except KeyError as error:
            raise gr.Error(f"{error.args[0]}. Use an id from the results' JSON.") from None
        except ValueError as error:
            raise gr.Error(str(error)) from None
        elapsed_ms = (time.perf_counter() - started) * 1000
        gallery, as_json = self.service.present(recommender, found.items, metric)
        link = query.permalink(k, metric, recommender.name, options)
        summary = _summary(recommender, found.items, elapsed_ms, options.describe(found.query_categories), query, link)
        if not found.items:
            summary = "**No product passes these filters.** Choose more categories or clear the not-wanted list."
        return gallery, as_json, summary, query


def _summary(
    recommender: Recommender, items, elapsed_ms: float, notes: list[str], query: Query, link: str | None
) -> str:
    searched = (
        f"{len(query.images) + len(query.item_ids)} products"
        if len(query.images) + len(query.item_ids) > 1
        else (query.item_ids[0] if query.item_ids else "your photo")
    )
    text = (
        f"**Average similarity of the top {len(items)}: {average_similarity(items):.3f}** (cosine) · "
        f"for {searched} · {recommender.name} · {len(recommender.index):,} products · {elapsed_ms:.0f} ms"
    )
    if notes:
        text += "\n\nFilters: " + " · ".join(notes)
    if link:
        text += f"\n\n[Link to these results]({link})"
    return text


def region_of_interest(editor_value) -> str | Image.Image | None:
    """The picture the image editor shows after cropping: its composite, not its uncropped background."""
    if editor_value is None:
        return None
    if isinstance(editor_value, dict):
        return editor_value.get("composite") or editor_value.get("background")
    return editor_value


def _path(upload) -> str:
    # gr.File hands over paths (str) or, from some clients, objects with a .name or .path.
    return str(getattr(upload, "path", None) or getattr(upload, "name", None) or upload)


def _int_param(value: str | None, default) -> int:
    try:
        return int(value) if value else int(default)
    except ValueError:
        raise gr.Error(f"k must be a whole number in the link, got {value!r}.") from None
