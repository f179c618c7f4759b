"""The versioned JSON API beside the page (`/api/v1`): one request per answer, for shops' back ends and widgets.

A thin layer over the same `LookalikeService.search` the page calls: the parameters become one
`SearchRequest`, the answer is its results with each product's thumbnail URL. Thumbnails are served
as immutable files (content-addressed names), so caches and browsers keep them. Model work is
admitted through a bounded queue into the page's own model slots (one limit for the page and the API):
past the queue, 429 with Retry-After, the page's busy message. A catalog product's answer that the
build precomputed is a lookup, not model work: it is given at once, on the event loop, where the
build's rows are in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import re
import time
import typing
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from lookalike.app.service import Answer, LookalikeService, RequestError, SearchRequest, public_message
from lookalike.app.service import Query as SearchQuery
from lookalike.app.traffic import BUSY_MESSAGE, QueueSlots
from lookalike.app.widget import WIDGET_SCRIPT
from lookalike.images import MAX_IMAGE_BYTES, ImageError

API_PREFIX = "/api/v1"
# A thumbnail's name is the digest of its build and product (ThumbnailFiles): it never changes content.
THUMBNAIL_NAME = re.compile(r"^[0-9a-f]{32}\.jpg$")
IMMUTABLE = "public, max-age=31536000, immutable"
# The multipart envelope around one photo: boundaries, headers, the few form fields.
FORM_OVERHEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class ApiConfig:
    """The JSON API's limits and who may call it from a browser."""

    # Searches running at once when the API has slots of its own (LocalSlots); beside the page it takes the
    # page's model slots instead (QueueSlots), so the two share one limit.
    concurrency: int = 2
    # Searches waiting for a slot; past it a request is refused with 429 and Retry-After.
    max_waiting: int = 48
    retry_after_seconds: int = 2
    # Photos being received at once, and how long one may take to arrive (then 408). Their own bound:
    # slow uploads never hold places of the model's line, so they cannot refuse searches while it idles.
    max_uploading: int = 32
    upload_seconds: float = 30.0
    # Origins whose pages may call the API from the browser (CORS); none by default.
    cors_origins: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        # A line of no places would refuse every search, even with the model idle: say so at start-up.
        for name in ("concurrency", "max_waiting", "max_uploading"):
            if getattr(self, name) < 1:
                raise ValueError(f"ApiConfig.{name} must be at least 1, got {getattr(self, name)}.")


class LocalSlots:
    """`concurrency` slots of the API's own, for an API served without the page (`QueueSlots` shares the page's)."""

    def __init__(self, concurrency: int) -> None:
        self._slots = asyncio.Semaphore(concurrency)

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        async with self._slots:
            yield


class Admission:
    """A bounded queue in front of the model: a slot to run in, `max_waiting` wait for one, the rest hear 429.

    Uploads are received under a bound of their own (`receiving`), and one that arrives while the line
    is full is refused before its body is read.
    """

    def __init__(self, config: ApiConfig, slots: LocalSlots | QueueSlots) -> None:
        self.config, self.slots = config, slots
        self.waiting = 0
        self.uploading = 0

    def _busy(self) -> HTTPException:
        return HTTPException(429, BUSY_MESSAGE, headers={"Retry-After": str(self.config.retry_after_seconds)})

    @contextlib.asynccontextmanager
    async def receiving(self) -> AsyncIterator[None]:
        """Room to receive one upload within `upload_seconds`; 429 at once when the line or the uploads are full."""
        if self.waiting >= self.config.max_waiting or self.uploading >= self.config.max_uploading:
            raise self._busy()
        self.uploading += 1
        try:
            async with asyncio.timeout(self.config.upload_seconds):
                yield
        except TimeoutError:
            raise HTTPException(408, f"The photo took over {self.config.upload_seconds:g} s to arrive.") from None
        finally:
            self.uploading -= 1

    async def run(self, function, *args):
        """`function(*args)` in a worker thread, in a slot; 429 at once when `max_waiting` already wait."""
        if self.waiting >= self.config.max_waiting:
            raise self._busy()
        async with contextlib.AsyncExitStack() as slot:
            self.waiting += 1
            try:
                await slot.enter_async_context(self.slots.held())
            finally:
                self.waiting -= 1
            return await run_in_threadpool(function, *args)


def json_api(
    service: LookalikeService, config: ApiConfig = ApiConfig(), slots: LocalSlots | QueueSlots | None = None
) -> FastAPI:
    """The `/api/v1` application, to mount on the page's server (`routes=[Mount(API_PREFIX, app)]`).

    `slots`: where its searches run; the page's model slots (`QueueSlots(demo)`) so that the page and the
    API share one limit, or by default `config.concurrency` slots of its own.
    """
    api = FastAPI(
        title="Lookalike API",
        version="1",
        description="Visually similar products of the catalog, for a photo or a catalog product.",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    if config.cors_origins:
        api.add_middleware(
            CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST"], max_age=600
        )
    admission = Admission(config, slots or LocalSlots(config.concurrency))
    api.state.admission = admission  # what waits and what is being received, for tests and monitoring
    thumbnails = service.thumbnails.folder

    def answer(request: Request, found: Answer, backbone: str, started: float) -> dict:
        base = str(request.base_url).rstrip("/") + API_PREFIX + "/images/"
        products = [
            {**result, "image_url": base + Path(path).name}
            for result, (path, _) in zip(found.results, found.gallery, strict=True)
        ]
        return {
            "products": products,
            "backbone": backbone,
            "took_ms": round((time.perf_counter() - started) * 1000, 1),
            "precomputed": found.precomputed,
        }

    def search(query: SearchQuery, options: SearchRequest, find=None) -> tuple[Answer | None, str]:
        """`find`'s answer (by default the service's search; or its precomputed answers) with the served
        backbone's name, its problems as HTTP errors."""
        try:
            # The served name, which a caller can send back as `backbone` (a model id need not be one).
            return (find or service.search)(query, options), options.backbone or service.default_backbone
        except ImageError as error:
            raise HTTPException(422, public_message(str(error))) from None
        except RequestError as error:
            status = 404 if str(error).startswith("No product with id") else 400
            raise HTTPException(status, public_message(str(error))) from None

    @api.post("/similar", summary="Products similar to a photo")
    async def similar_to_photo(request: Request, options: Annotated[SearchRequest, Depends(search_options)]) -> dict:
        """Send one photo as the multipart field `image`; the answer lists the most similar products."""
        started = time.perf_counter()
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_IMAGE_BYTES + FORM_OVERHEAD_BYTES:
            raise HTTPException(413, f"The photo is over the {MAX_IMAGE_BYTES // 1024**2} MB limit.")
        async with admission.receiving(), request.form(max_files=1, max_fields=16) as form:
            image = form.get("image")
            if image is None or isinstance(image, str):
                raise HTTPException(400, "Send the photo as the multipart form field 'image'.")
            data = await image.read(MAX_IMAGE_BYTES + 1)
        if len(data) > MAX_IMAGE_BYTES:
            raise HTTPException(413, f"The photo is over the {MAX_IMAGE_BYTES // 1024**2} MB limit.")
        found, name = await admission.run(search, SearchQuery(images=(data,)), options)
        return answer(request, found, name, started)

    @api.get("/similar", summary="Products similar to a catalog product")
    async def similar_to_product(
        request: Request,
        id: Annotated[str, Query(description="a catalog product's id, as the results give it")],
        options: Annotated[SearchRequest, Depends(search_options)],
    ) -> dict:
        """A catalog product's similar products, never itself nor its variants; precomputed by the build
        where no filter asks for a live search."""
        started = time.perf_counter()
        query = SearchQuery(item_ids=(id,))
        # The build's answer is a lookup, not model work: given at once, outside the model's line, on the
        # event loop (a worker thread's hop costs more than the lookup). A large build's memory-mapped rows
        # may wait for the disk, which would stall every request: its answers run in a slot like searches.
        found, name = search(query, options, functools.partial(service.precomputed, in_memory_only=True))
        if found is None:
            found, name = await admission.run(search, query, options)
        return answer(request, found, name, started)

    @api.get("/images/{name}", summary="A product's thumbnail", response_class=FileResponse)
    async def thumbnail(name: str, request: Request) -> Response:
        path = thumbnails / name
        if not THUMBNAIL_NAME.match(name) or not path.is_file():
            raise HTTPException(404, "No such thumbnail: take image URLs from an answer.")
        # The name is the digest of the build and product: it is its own entity tag, and never goes stale.
        headers = {"Cache-Control": IMMUTABLE, "ETag": f'"{name.removesuffix(".jpg")}"'}
        if request.headers.get("if-none-match") == headers["ETag"]:
            return Response(status_code=304, headers=headers)
        return FileResponse(path, media_type="image/jpeg", headers=headers)

    @api.get("/widget.js", summary="The similar-products widget for a shop's pages", include_in_schema=False)
    async def widget() -> Response:
        return Response(WIDGET_SCRIPT, media_type="text/javascript", headers={"Cache-Control": "public, max-age=3600"})

    return api


# What a parameter does where its name does not say it; every SearchRequest field is a parameter either way.
PARAMETER_HELP = {
    "categories": "only these categories (repeat the parameter for several)",
    "exclude_own": "matching products of other categories than the query's",
    "not_wanted": "ids of products to steer away from (less like this); repeat for several",
    "collapse": "near-identical products shown once",
    "facets": '"attribute=value", e.g. brand=Acme: one attribute\'s values OR-ed, attributes AND-ed',
}


def search_options(**values) -> SearchRequest:
    """The `SearchRequest` a call's query parameters describe; FastAPI reads its signature, made below."""
    try:
        return SearchRequest.from_values(**values)
    except RequestError as error:
        raise HTTPException(400, str(error)) from None


def _options_signature() -> inspect.Signature:
    """One query parameter per `SearchRequest` field, same name, type and default: a field added there is a
    parameter here without an edit (tuples become repeated parameters, `?facets=a&facets=b`)."""
    hints = typing.get_type_hints(SearchRequest)
    parameters = []
    for option in dataclasses.fields(SearchRequest):
        hint = hints[option.name]
        if typing.get_origin(hint) is tuple:
            hint = list[typing.get_args(hint)[0]]
        annotation = Annotated[hint, Query(description=PARAMETER_HELP.get(option.name))]
        parameters.append(
            inspect.Parameter(
                option.name, inspect.Parameter.KEYWORD_ONLY, default=option.default, annotation=annotation
            )
        )
    return inspect.Signature(parameters, return_annotation=SearchRequest)


search_options.__signature__ = _options_signature()
