"""What the app does, without the page: recommenders by name, one search path, its answer and summary."""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from PIL import Image

from lookalike.app.gallery_files import ThumbnailFiles
from lookalike.app.presentation import gallery_captions, summary_text
from lookalike.backbones.inference import InferenceConfig
from lookalike.backbones.registry import DEFAULT_BACKBONE
from lookalike.evaluate.saved_reports import latest_report
from lookalike.images import ImageError, ImageSource
from lookalike.index.exact import Metric
from lookalike.index.sources import Download, download_dataset, resolve_embeddings
from lookalike.recommend.explain import explain_similarity
from lookalike.recommend.feedback import MAX_SET_SIZE
from lookalike.recommend.filters import CategoryFilter, ProductFilter
from lookalike.recommend.recommender import RecommendationRequest, Recommendations, Recommender

logger = logging.getLogger(__name__)


class RequestError(ValueError):
    """A request the user has to change; its message is written for them and shown as it is."""


# An absolute file path of two or more parts that is not inside a URL (no ':' or '/' right before it).
_SERVER_PATH = re.compile(r"(?<![\w.:/])(?:/[\w.\-+@~]+){2,}/?")


# The build (folder) a search uses unless it names one: the instance fine-tuned backbone finds the very product in
# shoppers' photos (street-to-shop R@1 0.93 against 0.65 pre-trained, README) and keeps categories
# apart better too; then the registry's default, for a folder that has only that.
SERVED_DEFAULTS = (f"{DEFAULT_BACKBONE}-instance", DEFAULT_BACKBONE)


def public_message(text: str) -> str:
    """`text` with every absolute server path cut to its last part: what the public sees names no folder
    of the server (an upload's temp file, a build's location), only the file or build it is about.

    >>> public_message("No embeddings at /srv/app/embeddings/lite0. See https://hf.co/docs/hub/x.")
    'No embeddings at lite0. See https://hf.co/docs/hub/x.'
    """
    return _SERVER_PATH.sub(lambda match: match.group(0).rstrip("/").rsplit("/", 1)[-1], text)


_PRICES = ("price_min", "price_max")


def _price(name: str, value: object) -> float | None:
    """A price bound; 0 is no bound: the page's number fields hold 0 once shown, and no price is below 0
    (a shop that sells for free needs no upper bound of 0 either)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RequestError(f"{name} must be a number, got {value!r}.") from None
    return None if number == 0 else number


@dataclass(frozen=True)
class SearchRequest:
    """One search's options as the page and the API send them: K, metric, backbone, then the filters.

    The field names are the API's parameter names and the order is the page's controls' order; a new
    filter is one field here (with the name it takes in a permalink) and one control in the page.
    """

    k: int = 8
    metric: str = Metric.COSINE.value
    backbone: str | None = None
    categories: tuple[str, ...] = field(default=(), metadata={"link": "category"})
    # "Not my product's category": matching products of other kinds.
    exclude_own: bool = field(default=False, metadata={"link": "other_categories"})
    not_wanted: tuple[str, ...] = field(default=(), metadata={"link": "not_wanted"})
    collapse: bool = field(default=True, metadata={"link": "duplicates"})
    # Product attributes ("brand=Acme"): one attribute's values OR-ed, attributes AND-ed.
    facets: tuple[str, ...] = field(default=(), metadata={"link": "facet"})
    price_min: float | None = field(default=None, metadata={"link": "price_min"})
    price_max: float | None = field(default=None, metadata={"link": "price_max"})
    in_stock_only: bool = field(default=False, metadata={"link": "in_stock"})

    @classmethod
    def from_values(cls, **values) -> SearchRequest:
        """A request from what the controls hold: None and empty values mean the defaults, lists become tuples."""
        defaults = cls()
        cleaned = {}
        for name, value in values.items():
            default = getattr(defaults, name)
            if value is None or (value == "" and name != "k"):
                value = default
            elif isinstance(default, tuple):
                value = (value,) if isinstance(value, str) else tuple(value)  # one category, not its letters
            elif isinstance(default, bool):
                value = bool(value)
            elif name in _PRICES:
                value = _price(name, value)
            cleaned[name] = value
        request = cls(**cleaned)
        try:
            return dataclasses.replace(request, k=int(request.k), metric=Metric(request.metric).value)
        except ValueError:
            raise RequestError(
                f"Unknown metric {request.metric!r}; use cosine or euclidean."
                if request.metric not in {m.value for m in Metric}
                else f"K must be a whole number, got {request.k!r}."
            ) from None

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """K, metric and backbone: what every search endpoint takes right after its query."""
        return tuple(f.name for f in dataclasses.fields(cls) if "link" not in f.metadata)

    @classmethod
    def filter_names(cls) -> tuple[str, ...]:
        """The filters, taken last by every search endpoint."""
        return tuple(f.name for f in dataclasses.fields(cls) if "link" in f.metadata)

    @classmethod
    def filter_defaults(cls) -> list[object]:
        """The filters' default values as an API call sends them (lists for tuples), in their order."""
        defaults = cls()
        return [list(v) if isinstance(v, tuple) else v for v in (getattr(defaults, n) for n in cls.filter_names())]

    def link_params(self) -> list[tuple[str, object]]:
        """The query-string parameters that reproduce this request (see `from_link`)."""
        params: list[tuple[str, object]] = [("k", self.k)]
        params += [("metric", self.metric)] if self.metric != Metric.COSINE else []
        params += [("backbone", self.backbone)] if self.backbone else []
        for f in dataclasses.fields(self):
            if "link" not in f.metadata:
                continue
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                params += [(f.metadata["link"], item) for item in value]
            elif f.name in _PRICES:
                params += [(f.metadata["link"], f"{value:g}")] if value is not None else []
            elif value != f.default:  # a flag is in the link only when it differs from the default
                params.append((f.metadata["link"], "1"))
        return params

    @classmethod
    def from_link(cls, params, fallback: SearchRequest) -> SearchRequest:
        """The request a permalink's query parameters (a starlette QueryParams) describe."""
        values = {
            "k": params.get("k") or fallback.k,
            "metric": params.get("metric") or fallback.metric,
            "backbone": params.get("backbone") or fallback.backbone,
        }
        for f in dataclasses.fields(cls):
            if "link" not in f.metadata:
                continue
            name = f.metadata["link"]
            if f.name in _PRICES:
                values[f.name] = params.get(name)
            elif f.default == ():
                values[f.name] = tuple(params.getlist(name))
            else:
                values[f.name] = (params.get(name) == "1") != f.default
        if not str(values["k"]).isdigit():
            raise RequestError(f"k must be a whole number in the link, got {values['k']!r}.")
        return cls.from_values(**values)

    def recommendation(self) -> RecommendationRequest:
        return RecommendationRequest(
            k=self.k,
            metric=Metric(self.metric),
            filter=CategoryFilter(only=self.categories, exclude_query_category=self.exclude_own),
            less_like_ids=self.not_wanted,
            collapse_duplicates=self.collapse,
            products=ProductFilter(self.facets, self.price_min, self.price_max, self.in_stock_only),
        )

    def describe(self, query_categories: Sequence[str]) -> list[str]:
        notes = [f"only {', '.join(self.categories)}"] if self.categories else []
        if self.exclude_own:
            notes.append(f"not your product's category ({', '.join(query_categories)})")
        if self.not_wanted:
            notes.append(f"steered away from {len(self.not_wanted)} not wanted")
        # Grouped as the filter groups them (one attribute's values OR-ed); it has accepted them already.
        by_attribute = ProductFilter(self.facets).by_attribute()
        notes += [" or ".join(f"{name}={value}" for value in values) for name, values in by_attribute.items()]
        if self.price_min is not None or self.price_max is not None:
            low = f"{self.price_min:g}" if self.price_min is not None else "0"
            notes.append(f"price {low}–{self.price_max:g}" if self.price_max is not None else f"price from {low}")
        if self.in_stock_only:
            notes.append("in stock")
        return notes


@dataclass(frozen=True)
class Query:
    """What a search starts from: uploaded pictures (paths) and/or catalog product ids."""

    images: tuple[str, ...] = ()
    item_ids: tuple[str, ...] = ()

    def permalink(self, request: SearchRequest) -> str | None:
        """A relative link to the page that reproduces these results, filters and feedback included.

        Only searches from catalog products have one: the server keeps no uploads.

        >>> Query(item_ids=("fruit/a.jpg",)).permalink(SearchRequest(categories=("tool",)))
        '?item=fruit%2Fa.jpg&k=8&category=tool'
        """
        if self.images or not self.item_ids:
            return None
        return "?" + urlencode([("item", item_id) for item_id in self.item_ids] + request.link_params())

    def describe(self) -> str:
        n_products = len(self.images) + len(self.item_ids)
        if n_products > 1:
            return f"{n_products} products"
        return self.item_ids[0] if self.item_ids else "your photo"


@dataclass(frozen=True)
class Answer:
    """What a search shows: the gallery (thumbnail file, caption), the results as JSON, a summary."""

    gallery: list[tuple[str, str]]
    results: list[dict[str, object]]
    summary: str
    query: Query
    precomputed: bool = False  # from the build's precomputed neighbours, without a search


@dataclass
class LookalikeService:
    """The recommenders the app offers, by name, and everything the page and the API ask of them."""

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
        inference: InferenceConfig | None = None,
    ) -> LookalikeService:
        """Serve every build `embeddings` names: folders and Hub dataset ids, comma-separated (index.sources).

        `inference`: how queries run (Recommender.from_path's default unless given; a server running N
        searches at once gives N `streams`)."""
        sources = resolve_embeddings(embeddings, download)
        recommenders, problems = {}, [public_message(problem) for problem in sources.problems]
        for name, path in sources.builds.items():
            try:
                recommenders[name] = Recommender.from_path(path, inference, models_root)
            except Exception as error:  # one broken build must not take the others down
                logger.exception("Cannot serve %s", path)
                problems.append(public_message(f"{name}: {error}"))
        return cls(recommenders, problems, max_k)

    @property
    def default_backbone(self) -> str | None:
        """What a search that names no backbone uses, on the page and through every API: the first of
        SERVED_DEFAULTS that was built, else the first build served (None: nothing is served)."""
        return next(
            (name for name in SERVED_DEFAULTS if name in self.recommenders), next(iter(self.recommenders), None)
        )

    def recommender_for(self, backbone: str | None) -> Recommender:
        if not self.recommenders:
            raise RequestError("No embeddings are loaded. Build them: python build_index.py")
        if backbone is None or backbone == "":
            return self.recommenders[self.default_backbone]
        if backbone not in self.recommenders:
            raise RequestError(f"Unknown backbone {backbone!r}; choose one of {', '.join(self.recommenders)}.")
        return self.recommenders[backbone]

    def search(self, query: Query, request: SearchRequest) -> Answer:
        """The one recommend path: every search endpoint of the page and the API ends here."""
        return self._answered(query, request, lambda found_by, how: found_by.search(how, query.images, query.item_ids))

    def precomputed(self, query: Query, request: SearchRequest, in_memory_only: bool = False) -> Answer | None:
        """`search`'s answer where the build precomputed it (one catalog product, nothing that needs a
        search), without a model or a search: a lookup, for the API to give at once. Else None.

        `in_memory_only`: None also for a build whose rows are memory-mapped (Recommender.rows_in_memory),
        so that a caller on an event loop never waits for the disk."""
        if query.images or len(query.item_ids) != 1:
            return None

        def lookup(recommender: Recommender, recommendation: RecommendationRequest) -> Recommendations | None:
            if in_memory_only and not recommender.rows_in_memory:
                return None
            return recommender.precomputed(recommendation, query.item_ids[0])

        return self._answered(query, request, lookup)

    def _answered(
        self,
        query: Query,
        request: SearchRequest,
        find: Callable[[Recommender, RecommendationRequest], Recommendations | None],
    ) -> Answer | None:
        """`find(recommender, recommendation)` for a checked request, its problems as RequestErrors, and
        its recommendations as an Answer (None where `find` gave none)."""
        n_products = len(query.images) + len(query.item_ids)
        if n_products == 0:
            raise RequestError("Upload, paste or take a photo first, click an example, or pick a product.")
        if n_products > MAX_SET_SIZE:
            raise RequestError(f"Up to {MAX_SET_SIZE} products at once; you gave {n_products}. Remove some.")
        if not 1 <= request.k <= self.max_k:
            raise RequestError(f"K must be between 1 and {self.max_k}, got {request.k}.")
        recommender = self.recommender_for(request.backbone)
        started = time.perf_counter()
        try:
            found = find(recommender, request.recommendation())
        except KeyError as error:
            raise RequestError(f"{error.args[0]}. Use an id from the results' JSON.") from None
        except ImageError:
            raise
        except ValueError as error:  # e.g. a category this catalog does not have
            raise RequestError(str(error)) from None
        if found is None:
            return None
        elapsed_ms = (time.perf_counter() - started) * 1000
        metric = Metric(request.metric)
        gallery = [
            (self.thumbnails.path_for(recommender.build_stamp, r.id, r.image), caption)
            for r, caption in zip(found.items, gallery_captions(found.items, metric), strict=True)
        ]
        if found.items:
            notes = request.describe(found.query_categories)
            summary = summary_text(
                recommender, found.items, elapsed_ms, notes, query.describe(), query.permalink(request)
            )
        else:
            summary = (
                "**No product passes these filters.** Choose more categories or attributes, widen the price "
                "range, or clear the not-wanted list."
            )
        return Answer(gallery, [r.as_dict() for r in found.items], summary, query, found.precomputed)

    def compare(self, image_a: ImageSource | None, image_b: ImageSource | None, backbone: str | None) -> str:
        """A sentence giving the cosine similarity of two pictures."""
        if image_a is None or image_b is None:
            raise RequestError("Upload two photos to compare.")
        recommender = self.recommender_for(backbone)
        similarity = recommender.similarity(image_a, image_b)
        return (
            f"## Similarity: {similarity:.3f}\n\n"
            f"Cosine similarity of the two embeddings ({recommender.name}); 1 means identical."
        )

    def explain(self, image_a: ImageSource | None, image_b: ImageSource | None, backbone: str | None):
        """Heat-maps of the regions of each picture that drive their similarity, and how to read them."""
        if image_a is None or image_b is None:
            raise RequestError("Upload two photos to explain their similarity.")
        map_a, map_b = explain_similarity(self.recommender_for(backbone).embed, image_a, image_b)
        note = (
            f"**Why they match** (similarity {map_a.similarity:.3f}): the brighter a region, the more "
            "similarity is lost when it is hidden, so the more the match rests on it. Each picture is "
            "covered patch by patch (occlusion) and embedded again."
        )
        return map_a.overlay(), map_b.overlay(), note

    def product_image(self, item_id: str | None, backbone: str | None) -> Image.Image | None:
        """A catalog product's picture (the stored thumbnail), to compare it with the query."""
        if not item_id:
            return None
        recommender = self.recommender_for(backbone)
        try:
            return recommender.index.dataset[recommender.row_of(item_id)]["image"]
        except KeyError as error:
            raise RequestError(f"{error.args[0]}. Use an id from the results' JSON.") from None

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
