"""The versioned JSON API beside the page (`/api/v1`): one request per answer, for shops' back ends and widgets.

A thin layer over the same `LookalikeService.search` the page calls: the parameters become one
`SearchRequest`, the answer is its results with each product's thumbnail URL. Thumbnails are served
as immutable files (content-addressed names), so caches and browsers keep them. Model work is
admitted through a bounded queue: past it, 429 with Retry-After, the page's busy message.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from lookalike.app.service import Answer, LookalikeService, RequestError, SearchRequest, public_message
from lookalike.app.service import Query as SearchQuery
from lookalike.app.traffic import BUSY_MESSAGE
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

    # Searches running at once (the model's threads): one per core keeps them from contending.
    concurrency: int = 2
    # Searches waiting for a slot; past it a request is refused with 429 and Retry-After.
    max_waiting: int = 48
    retry_after_seconds: int = 2
    # Origins whose pages may call the API from the browser (CORS); none by default.
    cors_origins: tuple[str, ...] = field(default=())


class Admission:
    """A bounded queue in front of the model: `concurrency` run, `max_waiting` wait, the rest hear 429."""

    def __init__(self, config: ApiConfig) -> None:
        self.config = config
        self.slots = asyncio.Semaphore(config.concurrency)
        self.waiting = 0

    async def run(self, function, *args):
        if self.waiting >= self.config.max_waiting:
            raise HTTPException(429, BUSY_MESSAGE, headers={"Retry-After": str(self.config.retry_after_seconds)})
        self.waiting += 1
        try:
            await self.slots.acquire()
        finally:
            self.waiting -= 1
        try:
            return await run_in_threadpool(function, *args)
        finally:
            self.slots.release()


def json_api(service: LookalikeService, config: ApiConfig = ApiConfig()) -> FastAPI:
    """The `/api/v1` application, to mount on the page's server (`routes=[Mount(API_PREFIX, app)]`)."""
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
    admission = Admission(config)
    thumbnails = service.thumbnails.folder

    def answer(request: Request, found: Answer, recommender_name: str, started: float) -> dict:
        base = str(request.base_url).rstrip("/") + API_PREFIX + "/images/"
        products = [
            {**result, "image_url": base + Path(path).name}
            for result, (path, _) in zip(found.results, found.gallery, strict=True)
        ]
        return {
            "products": products,
            "backbone": recommender_name,
            "took_ms": round((time.perf_counter() - started) * 1000, 1),
            "precomputed": found.precomputed,
        }

    def search(query: SearchQuery, options: SearchRequest) -> tuple[Answer, str]:
        try:
            return service.search(query, options), service.recommender_for(options.backbone).name
        except ImageError as error:
            raise HTTPException(422, public_message(str(error))) from None
        except RequestError as error:
            status = 404 if str(error).startswith("No product with id") else 400
            raise HTTPException(status, public_message(str(error))) from None

    @api.post("/similar", summary="Products similar to a photo")
    async def similar_to_photo(request: Request, options: Annotated[SearchOptions, Depends()]) -> dict:
        """Send one photo as the multipart field `image`; the answer lists the most similar products."""
        started = time.perf_counter()
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_IMAGE_BYTES + FORM_OVERHEAD_BYTES:
            raise HTTPException(413, f"The photo is over the {MAX_IMAGE_BYTES // 1024**2} MB limit.")
        async with request.form(max_files=1, max_fields=16) as form:
            image = form.get("image")
            if image is None or isinstance(image, str):
                raise HTTPException(400, "Send the photo as the multipart form field 'image'.")
            data = await image.read(MAX_IMAGE_BYTES + 1)
        if len(data) > MAX_IMAGE_BYTES:
            raise HTTPException(413, f"The photo is over the {MAX_IMAGE_BYTES // 1024**2} MB limit.")
        found, name = await admission.run(search, SearchQuery(images=(data,)), options.request())
        return answer(request, found, name, started)

    @api.get("/similar", summary="Products similar to a catalog product")
    async def similar_to_product(
        request: Request,
        id: Annotated[str, Query(description="a catalog product's id, as the results give it")],
        options: Annotated[SearchOptions, Depends()],
    ) -> dict:
        """A catalog product's similar products, never itself nor its variants; precomputed by the build
        where no filter asks for a live search."""
        started = time.perf_counter()
        found, name = await admission.run(search, SearchQuery(item_ids=(id,)), options.request())
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


class SearchOptions:
    """What every search takes besides its query, as query parameters: the `SearchRequest` fields."""

    def __init__(
        self,
        k: int = SearchRequest.k,
        backbone: str | None = None,
        metric: str = SearchRequest.metric,
        categories: Annotated[list[str], Query()] = (),  # type: ignore[assignment]
        facets: Annotated[list[str], Query(description='"attribute=value", e.g. brand=Acme')] = (),  # type: ignore[assignment]
        price_min: float | None = None,
        price_max: float | None = None,
        in_stock_only: bool = False,
        exclude_own: bool = False,
        collapse: bool = True,
    ) -> None:
        self.values = {
            "k": k,
            "backbone": backbone,
            "metric": metric,
            "categories": tuple(categories),
            "facets": tuple(facets),
            "price_min": price_min,
            "price_max": price_max,
            "in_stock_only": in_stock_only,
            "exclude_own": exclude_own,
            "collapse": collapse,
        }

    def request(self) -> SearchRequest:
        try:
            return SearchRequest.from_values(**self.values)
        except RequestError as error:
            raise HTTPException(400, str(error)) from None
