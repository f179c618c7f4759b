"""A catalog's photos at URLs made local: fetched through the download cache, unfetchable rows listed."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lookalike.catalog.download import DownloadConfig, Fetched, ImageDownloader
from lookalike.catalog.product import Catalog, RejectedRow

URL_SCHEMES = ("http://", "https://")


def is_url(source: object) -> bool:
    return isinstance(source, str) and source.lower().startswith(URL_SCHEMES)


@dataclass(frozen=True)
class DownloadCounts:
    """What fetching a catalog's photos took: bodies transferred, answered unchanged (304), failed."""

    downloaded: int = 0
    revalidated: int = 0
    failed: int = 0
    stale: int = 0  # the server could not be reached; the cached copy was used


# Fetches URLs (in their order) into the download cache: here on threads, or on a build engine's workers.
Fetcher = Callable[[Sequence[str], DownloadConfig, bool], tuple[list[Fetched], DownloadCounts]]


def fetch_here(
    urls: Sequence[str], config: DownloadConfig, show_progress: bool
) -> tuple[list[Fetched], DownloadCounts]:
    """On `config.workers` threads of this process."""
    with ImageDownloader(config) as downloader:
        fetched = downloader.fetch_all(urls, show_progress)
        return fetched, DownloadCounts(
            downloader.n_downloaded, downloader.n_revalidated, downloader.n_failed, downloader.n_stale
        )


def fetch_remote_images(
    catalog: Catalog, config: DownloadConfig, show_progress: bool = True, fetcher: Fetcher = fetch_here
) -> tuple[Catalog, DownloadCounts]:
    """The catalog with every URL photo replaced by its cached file; a row whose photo cannot be
    fetched is left out and listed in `rejected` with the reason (HTTP 404, not an image, too large...).

    A build run again revalidates each URL (ETag, Last-Modified) and downloads only what changed.
    """
    urls = list(dict.fromkeys(item.image for item in catalog.items if is_url(item.image)))
    if not urls:
        return catalog, DownloadCounts()
    results, counts = fetcher(urls, config, show_progress)
    fetched = {result.url: result for result in results}
    items, splits, rejected = [], [], list(catalog.rejected)
    for position, item in enumerate(catalog.items):
        if is_url(item.image):
            result = fetched[item.image]
            if result.path is None:
                rejected.append(RejectedRow(item.id, f"{result.error}: {item.image}"))
                continue
            item = dataclasses.replace(item, image=result.path)
        items.append(item)
        if catalog.given_splits is not None:
            splits.append(catalog.given_splits[position])
    given = splits if catalog.given_splits is not None else None
    return Catalog(catalog.source, items, given, rejected), counts
