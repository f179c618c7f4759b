"""Fetch a product feed's image URLs concurrently into a revalidated download cache, or say why not."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from lookalike.images import MAX_IMAGE_PIXELS

logger = logging.getLogger(__name__)

# A server may ask for a pause (Retry-After), but a build of many thousand images cannot wait a minute
# per image on one server's say-so: we honour it up to this many seconds.
RETRY_AFTER_CAP = 5.0
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def default_cache_dir() -> Path:
    """$LOOKALIKE_DOWNLOAD_CACHE, else $XDG_CACHE_HOME/lookalike/downloads, else ~/.cache/lookalike/downloads."""
    if explicit := os.environ.get("LOOKALIKE_DOWNLOAD_CACHE"):
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "lookalike" / "downloads"


@dataclass(frozen=True)
class DownloadConfig:
    """How catalog images are fetched: concurrency, time and size limits, retries, where they are cached."""

    # A factory, not a default value: the environment is read when a config is made, not at import.
    cache_dir: Path = field(default_factory=default_cache_dir, metadata={"help": "download cache folder"})
    workers: int = field(default=16, metadata={"help": "concurrent downloads (network-bound: threads)"})
    connect_timeout: float = field(default=5.0, metadata={"help": "seconds to open a connection"})
    read_timeout: float = field(default=15.0, metadata={"help": "seconds between two bytes"})
    # Whole attempt, redirects included, so a server dripping a byte a second cannot hold a worker forever.
    deadline: float = field(default=30.0, metadata={"help": "seconds for one whole attempt"})
    max_bytes: int = field(default=20 * 1024 * 1024, metadata={"help": "largest image body accepted"})
    retries: int = field(default=2, metadata={"help": "extra attempts on 5xx, 429, timeouts, dropped connections"})
    backoff: float = field(default=0.5, metadata={"help": "seconds before the first retry, doubled per retry"})
    max_redirects: int = field(default=5, metadata={"help": "redirect hops followed per attempt"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "cache_dir", Path(self.cache_dir).expanduser())
        # Written as `not value > bound` so that NaN, which fails every comparison, is refused too.
        for name in ("connect_timeout", "read_timeout", "deadline"):
            if not getattr(self, name) > 0:
                raise ValueError(f"DownloadConfig.{name} must be > 0 seconds, got {getattr(self, name)!r}.")
        for name, low in (("workers", 1), ("max_bytes", 1), ("retries", 0), ("backoff", 0), ("max_redirects", 0)):
            if not getattr(self, name) >= low:
                raise ValueError(f"DownloadConfig.{name} must be >= {low}, got {getattr(self, name)!r}.")


@dataclass(frozen=True)
class Fetched:
    """One URL's outcome: the cached file holding its image, or a short readable reason why there is none."""

    url: str
    path: Path | None
    error: str | None
    downloaded: bool = False  # a body was transferred by this call (False when the cache answered)
    outcome: str = ""  # "downloaded", "revalidated" (304), "stale" (server unreachable, cache used), "failed"

    def __post_init__(self) -> None:
        if not self.outcome:
            outcome = "downloaded" if self.downloaded else "failed" if self.path is None else "revalidated"
            object.__setattr__(self, "outcome", outcome)


class _Failure(Exception):
    """An attempt that did not yield an image; `transient` ones are retried and may fall back on the cache."""

    def __init__(self, reason: str, transient: bool = False, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.transient, self.retry_after = reason, transient, retry_after


class _DownloadCache:
    """Bodies as `<key>`, their validators as `<key>.json`; a body without a matching record is not an entry."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, url: str) -> Path:
        return self.root / hashlib.blake2b(url.encode("utf-8"), digest_size=20).hexdigest()

    def lookup(self, url: str) -> dict | None:
        """The record of `url`'s cached body (url, etag, last_modified, content_type, size), if it is whole."""
        body = self.path(url)
        try:
            meta = json.loads(body.with_name(body.name + ".json").read_text(encoding="utf-8"))
            # The size check catches a body that does not belong to its record (a crash between the two
            # writes, a power cut leaving an empty file).
            if meta.get("url") == url and body.stat().st_size == meta.get("size"):
                return meta
        except (OSError, ValueError, AttributeError):
            pass
        return None

    def store(self, url: str, data: bytes, response: httpx.Response) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        body = self.path(url)
        record = body.with_name(body.name + ".json")
        validators = ("etag", "last-modified", "content-type")
        meta = {"url": url, "size": len(data)} | {
            name.replace("-", "_"): response.headers.get(name) for name in validators
        }
        # Record gone first, then body, then record: an interruption anywhere leaves no record that
        # vouches for the wrong body, and the next run downloads afresh.
        record.unlink(missing_ok=True)
        _write_atomically(body, data)
        _write_atomically(record, json.dumps(meta).encode("utf-8"))
        return body


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename: readers see the old file or the whole new one."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class ImageDownloader:
    """Fetches catalog images over http(s) with one shared connection pool; failures come back as `Fetched.error`.

    Counters readable after a run: `n_downloaded` (bodies transferred), `n_revalidated` (304: the cache was
    current), `n_stale` (server unreachable, the cached copy used unchecked), `n_failed`.
    """

    def __init__(self, config: DownloadConfig | None = None) -> None:
        self.config = config or DownloadConfig()
        self.cache = _DownloadCache(self.config.cache_dir)
        self.n_downloaded = self.n_revalidated = self.n_stale = self.n_failed = 0
        self._lock = threading.Lock()
        cfg = self.config
        self._client = httpx.Client(
            # No request body is sent, so write and pool waits get the connect budget; the pool holds a
            # connection per worker, so no worker waits for another's.
            timeout=httpx.Timeout(
                connect=cfg.connect_timeout, read=cfg.read_timeout, write=cfg.connect_timeout, pool=cfg.connect_timeout
            ),
            limits=httpx.Limits(max_connections=cfg.workers, max_keepalive_connections=cfg.workers),
            follow_redirects=False,  # followed by hand: each hop's scheme is checked and counted
            # identity: a gzip-encoded body could inflate a thousandfold within one chunk, past max_bytes.
            headers={"Accept": "image/*,*/*;q=0.8", "Accept-Encoding": "identity", "User-Agent": "lookalike/0.1"},
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ImageDownloader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def fetch_all(self, urls: Sequence[str], show_progress: bool = True) -> list[Fetched]:
        """Concurrently, on config.workers threads; results in the order of `urls`; each distinct URL fetched once."""
        distinct = list(dict.fromkeys(urls))
        results: dict[str, Fetched] = {}
        with (
            ThreadPoolExecutor(max_workers=max(1, min(self.config.workers, len(distinct)))) as pool,
            tqdm(total=len(distinct), desc="Downloading images", unit="img", disable=not show_progress) as bar,
        ):
            futures = {pool.submit(self.fetch, url): url for url in distinct}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                bar.update(1)
        return [results[url] for url in urls]

    def fetch(self, url: str) -> Fetched:
        """The image at `url` as a cached file, revalidated if cached before; never raises."""
        try:
            result = self._fetch(url)
        except Exception as error:  # a bug or an unforeseen library error must not stop a whole build
            logger.exception("Unexpected error while fetching %s", url)
            result = Fetched(url, None, f"unexpected error ({type(error).__name__}: {error})")
        if result.error:
            self._count("n_failed")
        return result

    def _fetch(self, url: str) -> Fetched:
        if (reason := _unfetchable(url)) is not None:
            return Fetched(url, None, reason)
        cached = self.cache.lookup(url)
        attempt = 0
        while True:
            try:
                return self._attempt(url, cached)
            except _Failure as failure:
                if failure.transient and attempt < self.config.retries:
                    delay = self.config.backoff * 2**attempt
                    if failure.retry_after is not None:
                        delay = max(delay, min(failure.retry_after, RETRY_AFTER_CAP))
                    time.sleep(delay)
                    attempt += 1
                    continue
                if failure.transient and cached is not None:
                    # The server cannot answer now but we hold its last copy: a build can run offline.
                    self._count("n_stale")
                    return Fetched(url, self.cache.path(url), None, outcome="stale")
                return Fetched(url, None, failure.reason)
            except OSError as error:  # the cache folder, not the network (httpx wraps its own errors)
                return Fetched(url, None, f"could not write to the download cache ({error})")

    def _attempt(self, url: str, cached: dict | None) -> Fetched:
        """One attempt, redirects included, within config.deadline."""
        cfg = self.config
        # A cached entry without validators is revalidated by a plain GET (which transfers the body).
        conditions = (("If-None-Match", "etag"), ("If-Modified-Since", "last_modified"))
        headers = {name: cached[key] for name, key in conditions if cached and cached.get(key)}
        deadline = time.monotonic() + cfg.deadline
        location = url
        for _hop in range(cfg.max_redirects + 1):
            try:
                with self._client.stream("GET", location, headers=headers, timeout=self._timeout(deadline)) as response:
                    if response.status_code in _REDIRECT_STATUSES and "location" in response.headers:
                        location = str(response.url.join(response.headers["location"]))
                        if _unfetchable(location) is not None:
                            raise _Failure("redirected to a URL that is not http or https")
                        continue
                    if response.status_code == 304 and cached is not None:
                        self._count("n_revalidated")
                        return Fetched(url, self.cache.path(url), None)
                    _check_status(response)
                    _check_content_type(response.headers.get("content-type"))
                    data = self._read_body(response, deadline)
                    if (reason := _undecodable(data)) is not None:
                        raise _Failure(reason)
                    path = self.cache.store(url, data, response)
                    self._count("n_downloaded")
                    return Fetched(url, path, None, downloaded=True)
            except httpx.TimeoutException as error:
                raise _Failure("timed out", transient=True) from error
            except httpx.ConnectError as error:
                raise _Failure("could not connect", transient=True) from error
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.CloseError) as error:
                raise _Failure("connection dropped", transient=True) from error
            except (httpx.HTTPError, httpx.InvalidURL) as error:
                raise _Failure(f"request failed ({type(error).__name__}: {error})") from error
        raise _Failure("too many redirects")

    def _timeout(self, deadline: float) -> httpx.Timeout:
        """The client's timeouts, cut to what is left of the attempt's deadline."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Failure("timed out", transient=True)
        cfg = self.config
        connect = min(cfg.connect_timeout, left)
        return httpx.Timeout(connect=connect, read=min(cfg.read_timeout, left), write=connect, pool=connect)

    def _read_body(self, response: httpx.Response, deadline: float) -> bytes:
        limit = self.config.max_bytes
        too_large = f"too large (over {_size_text(limit)})"
        with contextlib.suppress(ValueError):  # a malformed Content-Length: the streamed count still applies
            if int(response.headers.get("content-length", "")) > limit:
                raise _Failure(too_large)
        chunks, total = [], 0
        for chunk in response.iter_bytes():
            total += len(chunk)
            if total > limit:
                raise _Failure(too_large)  # leaving the stream closes the connection: the rest is never read
            # Between chunks only: a single read is bounded by read_timeout, the attempt by this check.
            if time.monotonic() > deadline:
                raise _Failure("timed out", transient=True)
            chunks.append(chunk)
        return b"".join(chunks)

    def _count(self, counter: str) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + 1)


def _unfetchable(url: str) -> str | None:
    """Why `url` is not even tried (a feed may carry file:, ftp:, javascript: or data: links), else None."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "not a valid URL"
    if parts.scheme.lower() not in ("http", "https"):
        return "not http or https"
    return None if parts.hostname else "not a valid URL"


def _check_status(response: httpx.Response) -> None:
    status = response.status_code
    if status == 200:
        return
    retry_after = None
    if status in (429, 503):  # the answers that may say when to come back
        with contextlib.suppress(ValueError):  # an HTTP date instead of seconds: plain backoff
            retry_after = max(0.0, float(response.headers.get("retry-after", "")))
    raise _Failure(f"HTTP {status}", transient=status >= 500 or status == 429, retry_after=retry_after)


def _check_content_type(content_type: str | None) -> None:
    """Refuse a declared type that is clearly no image; image/*, octet-stream, others and none go to the bytes."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind.startswith("image/"):
        return
    family = kind.split("/", 1)[0]
    if family in ("text", "audio", "video") or any(word in kind for word in ("html", "json", "xml", "javascript")):
        raise _Failure(f"not an image ({kind})")


def _undecodable(data: bytes) -> str | None:
    """Why Pillow would not read `data` as an image, else None.

    `verify` reads the structure, not the pixels: the build decodes every image anyway and reports damage
    then; here we only keep error pages and other non-images out of the cache. A body cut short in transit
    fails earlier, on its Content-Length or chunk framing.
    """
    # No `warnings.catch_warnings` for Pillow's bomb warning: it swaps process-wide state, which is not
    # thread-safe; the explicit pixel cap below refuses those images anyway.
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            image.verify()
    except Image.DecompressionBombError:
        return "too many pixels"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        return "not a decodable image"
    if width * height > MAX_IMAGE_PIXELS:
        return f"too many pixels ({width}x{height})"
    return None if width >= 1 and height >= 1 else "not a decodable image"


def _size_text(size: int) -> str:
    return f"{size / 1024**2:.3g} MB" if size >= 1024**2 else f"{size / 1024:.3g} KB" if size >= 1024 else f"{size} B"
