"""The page's and the API's event handlers: Gradio values in, one SearchRequest to the service, its answer out.

Every search handler takes its query first, then K, metric and backbone, then its own inputs, then
the filters: the signature Gradio reads (and the API documents) is made from `SearchRequest`'s
fields, so a new filter is a field there and a control on the page, not an edit per endpoint.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields

import gradio as gr

from lookalike.app.service import Answer, LookalikeService, Query, RequestError, SearchRequest, public_message
from lookalike.images import ImageError
from lookalike.recommend.feedback import MAX_SET_SIZE

NO_PHOTO = "Upload, paste or take a photo first, or click an example."


def shown_to_user(handler: Callable) -> Callable:
    """Turn the service's messages for the user (bad request, unreadable image) into Gradio's error notice."""

    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except (RequestError, ImageError) as error:
            raise gr.Error(public_message(str(error))) from None

    return wrapper


def search_endpoint(handler: Callable) -> Callable:
    """`handler(query_input, *own_inputs, request)` as the function Gradio calls with the controls' values.

    Its signature is the query input, K, metric and backbone, the handler's own inputs, then the
    filters, with the defaults of `SearchRequest`; the values are gathered into one SearchRequest.
    """
    own = [p for p in inspect.signature(handler).parameters.values() if p.name != "request"]
    defaults = SearchRequest()

    def option(name: str) -> inspect.Parameter:
        return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=getattr(defaults, name))

    options = [option(name) for name in SearchRequest.option_names()]
    filters = [option(name) for name in SearchRequest.filter_names()]
    if any(p.default is inspect.Parameter.empty for p in own[1:]):
        own = own[:1] + [p.replace(default=None) for p in own[1:]]  # they follow parameters with defaults
    signature = inspect.Signature([*own[:1], *options, *own[1:], *filters])

    @shown_to_user
    @functools.wraps(handler)
    def endpoint(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        request = SearchRequest.from_values(**{f.name: values.pop(f.name) for f in fields(SearchRequest)})
        return handler(*values.values(), request=request)

    endpoint.__signature__ = signature
    return endpoint


def as_outputs(answer: Answer) -> tuple:
    """The page's search outputs: gallery, results JSON, summary, and the query kept for feedback."""
    return answer.gallery, answer.results, answer.summary, answer.query


@dataclass
class Handlers:
    """Every event handler of the page and the API, over one LookalikeService."""

    service: LookalikeService

    def __post_init__(self) -> None:
        for name in ("search", "recommend_set", "recommend_item", "recommend_region", "search_again"):
            setattr(self, name, search_endpoint(getattr(self, name)))
        self.less_like_this = search_endpoint(self.less_like_this)
        for name in ("recommend", "compare", "explain", "open_permalink", "product_image"):
            setattr(self, name, shown_to_user(getattr(self, name)))

    def recommend(self, image, k: float = 8, metric: str = "cosine", backbone: str | None = None):
        """The first endpoint's answer for one photo: gallery, results as JSON and a summary."""
        if image is None:
            raise RequestError(NO_PHOTO)
        answer = self.service.search(
            Query(images=(image,)), SearchRequest.from_values(k=k, metric=metric, backbone=backbone)
        )
        return answer.gallery, answer.results, answer.summary

    def search(self, image, request: SearchRequest):
        """Recommendations for one photo, with the filters and "not wanted" feedback applied."""
        if image is None:
            raise RequestError(NO_PHOTO)
        return as_outputs(self.service.search(Query(images=(image,)), request))

    def recommend_set(self, images, picked_ids=(), *, request: SearchRequest):
        """Recommendations for up to 5 liked products at once (uploads and/or picked catalog products)."""
        query = Query(images=tuple(_path(image) for image in images or ()), item_ids=tuple(picked_ids or ()))
        if not query.images and not query.item_ids:
            raise RequestError(f"Upload or pick the products you like first (up to {MAX_SET_SIZE}).")
        return as_outputs(self.service.search(query, request))

    def recommend_item(self, item_id, request: SearchRequest):
        """Recommendations for a catalog product: "more like this", and what a permalink reproduces."""
        if not item_id:
            raise RequestError("Click a recommended product first, or give a catalog product id.")
        return as_outputs(self.service.search(Query(item_ids=(str(item_id),)), request))

    def recommend_region(self, editor_value, request: SearchRequest):
        """Recommendations for the cropped region of a photo (the image editor's composite)."""
        image = region_of_interest(editor_value)
        if image is None:
            raise RequestError(NO_PHOTO)
        return as_outputs(self.service.search(Query(images=(image,)), request))

    def search_again(self, query, request: SearchRequest):
        """The last search with the filters as they are now; nothing before a first search."""
        if query is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return as_outputs(self.service.search(query, request))

    def less_like_this(self, query, selected_id=None, *, request: SearchRequest):
        """Mark the selected product as not wanted and run the last search again, steered away from it."""
        if not selected_id:
            raise RequestError("Click a recommended product first, then say you want less like it.")
        if query is None:
            raise RequestError("Search for something first.")
        not_wanted = tuple(dict.fromkeys([*request.not_wanted, selected_id]))
        answer = self.service.search(query, SearchRequest.from_values(**{**vars(request), "not_wanted": not_wanted}))
        return (*as_outputs(answer), gr.update(value=list(not_wanted)))

    def open_permalink(self, k, metric, backbone, request: gr.Request):
        """On page load, a link from `Query.permalink` (`?item=ID&k=8...`) shows its recommendations again.

        Returns the search's answer, then the values of the controls it set, in `SearchRequest`'s order.
        """
        params = request.query_params if request is not None else None
        items = params.getlist("item") if params is not None else []
        if not items:
            return tuple(gr.skip() for _ in range(4 + len(fields(SearchRequest))))
        fallback = SearchRequest.from_values(k=k, metric=metric, backbone=backbone)
        search = SearchRequest.from_link(params, fallback)
        answer = self.service.search(Query(item_ids=tuple(items)), search)
        controls = [getattr(search, f.name) for f in fields(SearchRequest)]
        return (*as_outputs(answer), *(gr.update(value=_control_value(value)) for value in controls))

    def compare(self, image_a, image_b, backbone):
        """A sentence giving the cosine similarity of two pictures."""
        return self.service.compare(image_a, image_b, backbone)

    def explain(self, image_a, image_b, backbone):
        """Heat-maps of the regions of each picture that drive their similarity, and how to read them."""
        return self.service.explain(image_a, image_b, backbone)

    def product_image(self, item_id, backbone):
        return self.service.product_image(item_id, backbone)

    def selected_product(self, results, evt: gr.SelectData):
        """The id of the gallery item just clicked, read from the JSON results shown beside it."""
        if not results or evt.index is None or evt.index >= len(results):
            return None, ""
        chosen = results[evt.index]
        return chosen["id"], f"Selected: **{chosen['id']}** ({chosen['label']})"


def region_of_interest(editor_value):
    """The picture the image editor shows after cropping: its composite, not its uncropped background."""
    if editor_value is None:
        return None
    if isinstance(editor_value, dict):
        return editor_value.get("composite") or editor_value.get("background")
    return editor_value


def _path(upload) -> str:
    # gr.File hands over paths (str) or, from some clients, objects with a .name or .path.
    return str(getattr(upload, "path", None) or getattr(upload, "name", None) or upload)


def _control_value(value):
    return list(value) if isinstance(value, tuple) else value
