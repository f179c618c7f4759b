"""Catalog image downloads against HTTP servers on 127.0.0.1: caching, limits, retries, redirects, hostile servers."""

from __future__ import annotations

import io
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from lookalike.catalog.download import DownloadConfig, Fetched, ImageDownloader, default_cache_dir


def image_bytes(fmt: str = "JPEG", color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 12), color).save(buffer, format=fmt)
    return buffer.getvalue()


JPEG = image_bytes("JPEG")
PNG = image_bytes("PNG", (10, 120, 200))
HTML = b"<!doctype html><html><body>Not found, but here is our shop!</body></html>"
ETAG = '"v1"'
LAST_MODIFIED = "Wed, 01 Jan 2025 00:00:00 GMT"
HUGE = 40 * 1024 * 1024


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked bodies, as real image servers speak

    def do_GET(self) -> None:
        server: LoopbackServer = self.server  # type: ignore[assignment]
        with server.lock:
            server.requests.append((self.path, dict(self.headers)))
            server.hits[self.path] += 1
            hit = server.hits[self.path]
        route = ROUTES.get(self.path.split("?")[0]) or ROUTES.get("/" + self.path.split("/")[1] + "/")
        try:
            if route is None:
                reply(self, 404, b"no route")
            else:
                route(self, hit)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client hung up on purpose: that is what some tests check

    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass


class LoopbackServer(ThreadingHTTPServer):
    request_queue_size = 64  # the concurrency test opens 16 connections at once

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.hits: Counter[str] = Counter()
        self.bytes_sent: Counter[str] = Counter()
        self.finished: dict[str, threading.Event] = {}
        self.stop = threading.Event()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def headers_of(self, path: str) -> list[dict[str, str]]:
        return [headers for seen, headers in self.requests if seen == path]

    def done(self, path: str) -> threading.Event:
        with self.lock:
            return self.finished.setdefault(path, threading.Event())


def reply(handler: Handler, status: int, body: bytes = b"", **headers: str) -> None:
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
    handler.server.bytes_sent[handler.path] += len(body)


def etag_image(handler: Handler, hit: int) -> None:
    if handler.headers.get("If-None-Match") == ETAG:
        reply(handler, 304, ETag=ETAG)
    else:
        reply(handler, 200, JPEG, Content_Type="image/jpeg", ETag=ETAG)


def last_modified_image(handler: Handler, hit: int) -> None:
    if handler.headers.get("If-Modified-Since") == LAST_MODIFIED:
        reply(handler, 304)
    else:
        reply(handler, 200, PNG, Content_Type="image/png", Last_Modified=LAST_MODIFIED)


def versioned(handler: Handler, hit: int) -> None:
    """Version 1 (a JPEG) on the first request, version 2 (a PNG) after."""
    etag, body = (ETAG, JPEG) if hit == 1 else ('"v2"', PNG)
    if handler.headers.get("If-None-Match") == etag:
        reply(handler, 304, ETag=etag)
    else:
        reply(handler, 200, body, Content_Type="image/jpeg" if hit == 1 else "image/png", ETag=etag)


def flaky(handler: Handler, hit: int) -> None:
    if hit <= 2:
        reply(handler, 500, b"oops")
    else:
        reply(handler, 200, JPEG, Content_Type="image/jpeg")


def busy_once(handler: Handler, hit: int) -> None:
    if hit == 1:
        reply(handler, 429, Retry_After="1")
    else:
        reply(handler, 200, JPEG, Content_Type="image/jpeg")


def endless(handler: Handler, declared: bool) -> None:
    """Up to 40 MB of image-typed zeros, counting what actually left; stops when the client hangs up."""
    server: LoopbackServer = handler.server  # type: ignore[assignment]
    handler.send_response(200)
    handler.send_header("Content-Type", "image/jpeg")
    handler.send_header("Content-Length" if declared else "Transfer-Encoding", str(HUGE) if declared else "chunked")
    handler.end_headers()
    chunk = b"\0" * 65536
    try:
        for _ in range(HUGE // len(chunk)):
            handler.wfile.write(chunk if declared else b"%x\r\n%s\r\n" % (len(chunk), chunk))
            server.bytes_sent[handler.path] += len(chunk)
        if not declared:
            handler.wfile.write(b"0\r\n\r\n")
    finally:
        server.done(handler.path).set()


def slow(handler: Handler, hit: int) -> None:
    handler.server.stop.wait(2.0)  # longer than the tests' read timeout; returns at once on teardown
    reply(handler, 200, JPEG, Content_Type="image/jpeg")


def drip(handler: Handler, hit: int) -> None:
    """A byte every 0.2 s: never idle past the read timeout, never done within the deadline."""
    handler.send_response(200)
    handler.send_header("Content-Type", "image/jpeg")
    handler.send_header("Content-Length", "100")
    handler.end_headers()
    for byte in JPEG[:100]:
        if handler.server.stop.wait(0.2):
            return
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()


def dropped(handler: Handler, hit: int) -> None:
    """Promises 1000 bytes, sends 100, hangs up."""
    handler.send_response(200)
    handler.send_header("Content-Type", "image/jpeg")
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    handler.wfile.write(JPEG[:100])
    handler.wfile.flush()
    handler.close_connection = True


def redirect_chain(handler: Handler, hit: int) -> None:
    hops = int(handler.path.rsplit("/", 1)[1])
    reply(handler, 302, Location=f"/chain/{hops - 1}" if hops > 1 else "/image.jpg")


def sleepy(handler: Handler, hit: int) -> None:
    time.sleep(0.3)
    reply(handler, 200, image_bytes("PNG"), Content_Type="image/png")


ROUTES: dict[str, Callable[[Handler, int], None]] = {
    "/image.jpg": etag_image,
    "/dated.png": last_modified_image,
    "/versioned": versioned,
    "/plain.jpg": lambda h, hit: reply(h, 200, JPEG, Content_Type="image/jpeg"),
    "/octet": lambda h, hit: reply(h, 200, PNG, Content_Type="application/octet-stream"),
    "/untyped": lambda h, hit: reply(h, 200, PNG),
    "/missing.jpg": lambda h, hit: reply(h, 404, b"gone", Content_Type="text/plain"),
    "/flaky.jpg": flaky,
    "/down.jpg": lambda h, hit: reply(h, 503, b"maintenance"),
    "/busy.jpg": busy_once,
    "/page.html": lambda h, hit: reply(h, 200, HTML, Content_Type="text/html; charset=utf-8"),
    "/liar.jpg": lambda h, hit: reply(h, 200, HTML, Content_Type="image/jpeg"),
    "/huge.jpg": lambda h, hit: endless(h, declared=True),
    "/chunked.jpg": lambda h, hit: endless(h, declared=False),
    "/slow.jpg": slow,
    "/drip.jpg": drip,
    "/dropped.jpg": dropped,
    "/redirect": lambda h, hit: reply(h, 302, Location="/image.jpg"),
    "/loop-a": lambda h, hit: reply(h, 302, Location="/loop-b"),
    "/loop-b": lambda h, hit: reply(h, 301, Location="/loop-a"),
    "/to-file": lambda h, hit: reply(h, 302, Location="file:///etc/passwd"),
    "/to-ftp": lambda h, hit: reply(h, 307, Location="ftp://127.0.0.1/image.jpg"),
    "/chain/": redirect_chain,
    "/sleepy/": sleepy,
}


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """httpx honours proxy variables: loopback requests must not be sent through one."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    server = LoopbackServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.stop.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def config(tmp_path) -> DownloadConfig:
    return DownloadConfig(
        cache_dir=tmp_path / "cache",
        workers=4,
        connect_timeout=1.0,
        read_timeout=1.0,
        deadline=3.0,
        max_bytes=1024 * 1024,
        retries=2,
        backoff=0.01,
    )


def fetch(config: DownloadConfig, url: str) -> tuple[Fetched, ImageDownloader]:
    with ImageDownloader(config) as downloader:
        return downloader.fetch(url), downloader


# --- cache and revalidation ---------------------------------------------------------------------------


def test_an_image_is_downloaded_then_revalidated_with_its_etag(server, config):
    url = server.url("/image.jpg")
    first, downloader = fetch(config, url)
    assert first.error is None and first.downloaded
    assert first.path.read_bytes() == JPEG and first.path.parent == config.cache_dir
    assert downloader.n_downloaded == 1

    second, downloader = fetch(config, url)  # a later run on the same cache
    assert (second.path, second.error, second.downloaded) == (first.path, None, False)
    assert (downloader.n_downloaded, downloader.n_revalidated, downloader.n_failed) == (0, 1, 0)
    assert server.headers_of("/image.jpg")[1]["If-None-Match"] == ETAG
    assert server.bytes_sent["/image.jpg"] == len(JPEG)  # the 304 carried no body


def test_last_modified_alone_revalidates(server, config):
    url = server.url("/dated.png")
    assert fetch(config, url)[0].downloaded
    again, downloader = fetch(config, url)
    assert again.error is None and not again.downloaded and again.path.read_bytes() == PNG
    assert downloader.n_revalidated == 1
    headers = server.headers_of("/dated.png")[1]
    assert headers["If-Modified-Since"] == LAST_MODIFIED and "If-None-Match" not in headers


def test_a_changed_image_replaces_the_cached_one(server, config):
    url = server.url("/versioned")
    first, _ = fetch(config, url)
    second, downloader = fetch(config, url)  # If-None-Match "v1" no longer matches: a 200 with the new body
    assert second.downloaded and second.path == first.path and second.path.read_bytes() == PNG
    third, downloader = fetch(config, url)
    assert not third.downloaded and third.path.read_bytes() == PNG and downloader.n_revalidated == 1
    assert [headers.get("If-None-Match") for headers in server.headers_of("/versioned")] == [None, ETAG, '"v2"']


def test_an_entry_without_validators_is_fetched_again_plainly(server, config):
    url = server.url("/plain.jpg")
    fetch(config, url)
    again, downloader = fetch(config, url)
    assert again.error is None and again.downloaded and again.path.read_bytes() == JPEG
    assert downloader.n_downloaded == 1 and server.hits["/plain.jpg"] == 2
    assert not {"If-None-Match", "If-Modified-Since"} & set(server.headers_of("/plain.jpg")[1])


def test_an_unreachable_server_is_answered_from_the_cache(config):
    own = LoopbackServer()
    threading.Thread(target=own.serve_forever, args=(0.05,), daemon=True).start()
    url = own.url("/image.jpg")
    first, _ = fetch(config, url)
    own.shutdown()
    own.server_close()  # the port now refuses connections: a build running offline

    again, downloader = fetch(config, url)
    assert (again.path, again.error, again.downloaded) == (first.path, None, False)
    assert (downloader.n_stale, downloader.n_failed) == (1, 0)
    other, _ = fetch(config, own.url("/never-cached.jpg"))
    assert other.error == "could not connect"


def test_an_interrupted_write_is_not_taken_for_a_cached_image(server, config):
    url = server.url("/plain.jpg")
    first, _ = fetch(config, url)
    key = first.path.name
    assert sorted(p.name for p in config.cache_dir.iterdir()) == [key, f"{key}.json"]  # no temp file left

    # A crash mid-write: a half temp file, no record; then a body whose record is gone.
    first.path.unlink()
    first.path.with_name(f"{key}.json").unlink()
    first.path.with_name(f"{key}.abc123.part").write_bytes(JPEG[:50])
    second, _ = fetch(config, url)
    assert second.downloaded and second.path == first.path and second.path.read_bytes() == JPEG

    second.path.with_name(f"{key}.json").unlink()
    third, _ = fetch(config, url)
    assert third.downloaded and server.hits["/plain.jpg"] == 3

    first.path.write_bytes(JPEG[:50])  # a body cut short under its record
    fourth, _ = fetch(config, url)
    assert fourth.downloaded and fourth.path.read_bytes() == JPEG


def test_failures_are_not_cached(server, config):
    fetch(config, server.url("/missing.jpg"))
    fetch(config, server.url("/liar.jpg"))
    assert not config.cache_dir.exists() or not any(config.cache_dir.iterdir())


# --- status codes and retries -------------------------------------------------------------------------


def test_a_404_fails_at_once(server, config):
    result, downloader = fetch(config, server.url("/missing.jpg"))
    assert (result.path, result.error, result.downloaded) == (None, "HTTP 404", False)
    assert server.hits["/missing.jpg"] == 1 and downloader.n_failed == 1


def test_server_errors_are_retried_until_the_image_comes(server, config):
    result, _ = fetch(config, server.url("/flaky.jpg"))
    assert result.error is None and result.path.read_bytes() == JPEG
    assert server.hits["/flaky.jpg"] == 3


def test_a_server_that_stays_down_fails_after_all_retries(server, config):
    result, downloader = fetch(config, server.url("/down.jpg"))
    assert result.error == "HTTP 503" and result.path is None
    assert server.hits["/down.jpg"] == config.retries + 1 and downloader.n_failed == 1


def test_retry_after_is_honoured(server, config):
    started = time.monotonic()
    result, _ = fetch(config, server.url("/busy.jpg"))
    assert result.error is None and server.hits["/busy.jpg"] == 2
    assert time.monotonic() - started >= 0.9  # Retry-After: 1, not the 0.01 s backoff


# --- content checks -----------------------------------------------------------------------------------


def test_an_html_page_is_not_an_image(server, config):
    result, _ = fetch(config, server.url("/page.html"))
    assert result.error == "not an image (text/html)" and result.path is None


def test_html_labelled_as_jpeg_fails_the_decode_check(server, config):
    assert fetch(config, server.url("/liar.jpg"))[0].error == "not a decodable image"


@pytest.mark.parametrize("path", ["/octet", "/untyped"])
def test_octet_stream_and_untyped_bodies_are_judged_by_their_bytes(server, config, path):
    result, _ = fetch(config, server.url(path))
    assert result.error is None and result.path.read_bytes() == PNG


@pytest.mark.parametrize("path", ["/huge.jpg", "/chunked.jpg"])
def test_a_huge_body_is_refused_without_reading_it_all(server, config, path):
    started = time.monotonic()
    result, _ = fetch(config, server.url(path))
    assert result.error == "too large (over 1 MB)" and result.path is None
    assert time.monotonic() - started < 10
    assert server.done(path).wait(10)  # the server's writes failed once the client hung up
    assert server.bytes_sent[path] < HUGE // 2
    assert server.hits[path] == 1  # a definite answer: not retried


# --- time limits and dropped connections --------------------------------------------------------------


def test_a_silent_server_times_out_and_is_retried(server, tmp_path):
    config = DownloadConfig(cache_dir=tmp_path, read_timeout=0.3, deadline=5, retries=1, backoff=0.01)
    started = time.monotonic()
    result, _ = fetch(config, server.url("/slow.jpg"))
    assert result.error == "timed out" and result.path is None
    assert server.hits["/slow.jpg"] == 2
    assert time.monotonic() - started < 1.9  # two 0.3 s waits, far from the server's 2 s


def test_a_dripping_server_is_cut_off_at_the_deadline(server, tmp_path):
    config = DownloadConfig(cache_dir=tmp_path, read_timeout=0.5, deadline=1.0, retries=0)
    started = time.monotonic()
    result, _ = fetch(config, server.url("/drip.jpg"))
    assert result.error == "timed out"
    assert time.monotonic() - started < 3  # the whole body would take 20 s


def test_a_dropped_connection_is_retried_then_reported(server, config):
    result, downloader = fetch(config, server.url("/dropped.jpg"))
    assert result.error == "connection dropped" and result.path is None
    assert server.hits["/dropped.jpg"] == config.retries + 1 and downloader.n_failed == 1


# --- redirects and schemes ----------------------------------------------------------------------------


def test_a_redirect_to_an_image_is_followed(server, config):
    result, _ = fetch(config, server.url("/redirect"))
    assert result.error is None and result.path.read_bytes() == JPEG
    assert server.hits["/image.jpg"] == 1


def test_redirects_are_counted(server, config):
    assert fetch(config, server.url(f"/chain/{config.max_redirects}"))[0].error is None
    assert fetch(config, server.url(f"/chain/{config.max_redirects + 1}"))[0].error == "too many redirects"
    result, _ = fetch(config, server.url("/loop-a"))
    assert result.error == "too many redirects" and server.hits["/loop-a"] + server.hits["/loop-b"] == 6


@pytest.mark.parametrize("path", ["/to-file", "/to-ftp"])
def test_a_redirect_off_http_is_refused(server, config, path):
    result, _ = fetch(config, server.url(path))
    assert result.path is None and "not http or https" in result.error


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "file:///etc/passwd",
        "ftp://127.0.0.1/image.jpg",
        "data:image/png;base64,iVBORw0KGgo=",
        "",
        "127.0.0.1/image.jpg",
    ],
)
def test_only_http_and_https_are_fetched(server, config, url):
    result, downloader = fetch(config, url)
    assert (result.url, result.path, result.error) == (url, None, "not http or https")
    assert server.requests == [] and downloader.n_failed == 1


def test_a_url_without_a_host_is_refused(config):
    assert fetch(config, "http:///image.jpg")[0].error == "not a valid URL"


# --- many at once -------------------------------------------------------------------------------------


def test_fetch_all_keeps_order_fetches_each_url_once_and_runs_concurrently(server, tmp_path):
    config = DownloadConfig(cache_dir=tmp_path, workers=16)
    distinct = [server.url(f"/sleepy/{n}") for n in range(20)]
    urls = distinct + distinct[::2] + [server.url("/missing.jpg")]
    started = time.monotonic()
    with ImageDownloader(config) as downloader:
        results = downloader.fetch_all(urls, show_progress=False)
    elapsed = time.monotonic() - started
    assert [result.url for result in results] == urls
    assert all(result.error is None for result in results[:-1]) and results[-1].error == "HTTP 404"
    assert all(server.hits[f"/sleepy/{n}"] == 1 for n in range(20))
    assert (downloader.n_downloaded, downloader.n_failed) == (20, 1)
    assert elapsed < 20 * 0.3 / 2  # two waves of 16 take ~0.6 s; one at a time, 6 s


def test_fetch_all_shows_a_progress_bar(server, config, capsys):
    with ImageDownloader(config) as downloader:
        results = downloader.fetch_all([server.url("/plain.jpg"), server.url("/octet")])
    assert all(result.error is None for result in results)
    assert "Downloading images" in capsys.readouterr().err


def test_fetch_all_of_nothing(config):
    with ImageDownloader(config) as downloader:
        assert downloader.fetch_all([], show_progress=False) == []


# --- configuration ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("workers", 0),
        ("connect_timeout", 0),
        ("read_timeout", -1.0),
        ("deadline", float("nan")),
        ("max_bytes", 0),
        ("retries", -1),
        ("backoff", -0.5),
        ("max_redirects", -1),
    ],
)
def test_bad_settings_are_refused_by_name(tmp_path, name, value):
    with pytest.raises(ValueError, match=name):
        DownloadConfig(cache_dir=tmp_path, **{name: value})


def test_zero_retries_backoff_and_redirects_are_allowed(tmp_path):
    config = DownloadConfig(cache_dir=str(tmp_path), retries=0, backoff=0, max_redirects=0)
    assert config.cache_dir == tmp_path


def test_the_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("LOOKALIKE_DOWNLOAD_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert default_cache_dir() == Path.home() / ".cache" / "lookalike" / "downloads"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert DownloadConfig().cache_dir == tmp_path / "xdg" / "lookalike" / "downloads"
    monkeypatch.setenv("LOOKALIKE_DOWNLOAD_CACHE", str(tmp_path / "mine"))
    assert DownloadConfig().cache_dir == tmp_path / "mine"
