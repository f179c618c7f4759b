"""Hostile traffic against a local `python app.py`: fuzzed uploads, bombs, big pictures, a heat-map burst.

    python benchmarks/hostile.py --json benchmarks/hostile.json           # the figures of docs/robustness.md
    python benchmarks/hostile.py --recommend 40 --per-endpoint 8 --burst 12 --big 2   # a small run

Starts the app on 127.0.0.1 with its own GRADIO_TEMP_DIR and sends raw HTTP, as any client can:
uploads through /gradio_api/upload, calls through /gradio_api/call/<endpoint>. Every answer is
sorted into answered (results), refused (an error with a readable message, or a readable HTTP
refusal such as 413 or 503 "busy") and failed: unreadable (an error event with no message) or
server error (HTTP 5xx without a message, a dropped connection, a timeout). Then it measures what a
refusal costs (data: URL over the cap and pixel bomb through every image endpoint), the RSS over
six 49-Mpx pictures, the temp folder's growth, and /recommend latency during a burst of heat-map
calls. Traffic goes to 127.0.0.1 only, bounded in count and time. Not a test: it measures.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

import httpx

from benchmarks.hostile_inputs import Upload, big_picture, data_url_over_cap, fuzzed_uploads, pixel_bomb, seed_files
from lookalike.app.service import SearchRequest
from lookalike.catalog import REPO_ROOT
from tests.local_server import running_app_process

BACKBONE = "efficientnet-lite0"
ENDPOINTS = ("recommend", "search", "recommend_set", "recommend_region", "compare", "explain")
# Every way a client can run an endpoint: the API's queue (/gradio_api/call), the page's queue
# (/gradio_api/queue/join), and the direct route (/gradio_api/run), which must not skip the limits.
ROUTES = ("call", "queue", "run")
FILTERS = SearchRequest.filter_defaults()  # every filter at its default, as the page sends them


@dataclass
class Tally:
    answered: int = 0
    refused: int = 0
    unreadable: list[str] = field(default_factory=list)
    server_errors: list[str] = field(default_factory=list)
    messages: dict[str, int] = field(default_factory=dict)

    def add(self, outcome: Outcome) -> None:
        if outcome.kind == "answered":
            self.answered += 1
        elif outcome.kind == "refused":
            self.refused += 1
            key = outcome.detail[:70]
            self.messages[key] = self.messages.get(key, 0) + 1
        elif outcome.kind == "unreadable":
            self.unreadable.append(outcome.detail)
        else:
            self.server_errors.append(outcome.detail)

    def summary(self) -> dict:
        return {
            "answered": self.answered,
            "refused_readably": self.refused,
            "unreadable_errors": len(self.unreadable),
            "server_errors": len(self.server_errors),
            "failures_sample": (self.unreadable + self.server_errors)[:5],
            "messages": dict(sorted(self.messages.items(), key=lambda item: -item[1])[:12]),
        }


@dataclass(frozen=True)
class Outcome:
    kind: str  # answered | refused | unreadable | server_error
    detail: str = ""
    seconds: float = 0.0


class App:
    """Raw HTTP calls to one running app."""

    def __init__(self, url: str, timeout: float = 120):
        self.url = url
        self.http = httpx.Client(timeout=timeout)

    def upload(self, upload: Upload) -> dict | Outcome:
        """The FileData of an uploaded file, or the outcome of a refused upload."""
        if upload.data_url is not None:
            return {"url": upload.data_url, "meta": {"_type": "gradio.FileData"}}
        files = {"files": (upload.filename, upload.data, upload.mime)}
        response = self.http.post(self.url + "gradio_api/upload", files=files)
        if response.status_code != 200:
            return http_refusal(response)
        path = response.json()[0]
        return {"path": path, "orig_name": upload.filename, "meta": {"_type": "gradio.FileData"}}

    def call(self, endpoint: str, data: list, route: str = "call") -> Outcome:
        """One call through one of the routes a client can take (ROUTES)."""
        if route == "run":
            return self._run(endpoint, data)
        if route == "queue":
            return self._queue(endpoint, data)
        api = f"{self.url}gradio_api/call/{endpoint}"
        response = self.http.post(api, json={"data": data})
        if response.status_code != 200:
            return http_refusal(response)
        stream = self.http.get(f"{api}/{response.json()['event_id']}").text
        return sse_outcome(stream)

    def _run(self, endpoint: str, data: list) -> Outcome:
        """POST /gradio_api/run/<endpoint>: one request, answered with the outputs (where the route is open)."""
        response = self.http.post(f"{self.url}gradio_api/run/{endpoint}", json={"data": data})
        return Outcome("answered") if response.status_code == 200 else http_refusal(response)

    def _queue(self, endpoint: str, data: list) -> Outcome:
        """What the page does: join the queue with a session, then read that session's event stream."""
        session = uuid.uuid4().hex
        body = {"data": data, "fn_index": self.fn_index(endpoint), "session_hash": session, "event_data": None}
        response = self.http.post(f"{self.url}gradio_api/queue/join", json=body)
        if response.status_code != 200:
            return http_refusal(response)
        with self.http.stream("GET", f"{self.url}gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                message = json.loads(line[len("data: ") :]) if line.startswith("data: ") else {}
                if message.get("msg") == "process_completed":
                    if message.get("success"):
                        return Outcome("answered")
                    error = (message.get("output") or {}).get("error")
                    return error_outcome(error, "process_completed with no message")
        return Outcome("server_error", "the event stream ended without an answer")

    @functools.cache  # noqa: B019 (one App per client, a handful of endpoints)
    def fn_index(self, endpoint: str) -> int:
        config = self.http.get(f"{self.url}config").json()
        return next(d["id"] for d in config["dependencies"] if d.get("api_name") == endpoint)

    def send(self, endpoint: str, upload: Upload, good: dict | None = None) -> Outcome:
        """One fuzzed upload through one endpoint (with a good second picture where it takes two)."""
        started = time.perf_counter()
        try:
            file = self.upload(upload)
            outcome = file if isinstance(file, Outcome) else self.call(endpoint, payload(endpoint, file, good))
        except httpx.HTTPError as error:
            outcome = Outcome("server_error", f"{type(error).__name__}: {error}")
        return Outcome(outcome.kind, f"{endpoint} {upload.name}: {outcome.detail}", time.perf_counter() - started)


def payload(endpoint: str, file: dict, good: dict | None) -> list:
    if endpoint == "recommend":
        return [file, 3, "cosine", BACKBONE]
    if endpoint == "search":
        return [file, 3, "cosine", BACKBONE, *FILTERS]
    if endpoint == "recommend_set":
        return [[file, good], 3, "cosine", BACKBONE, [], *FILTERS]
    if endpoint == "recommend_region":
        editor = {"background": file, "layers": [], "composite": file, "id": None}
        return [editor, 3, "cosine", BACKBONE, *FILTERS]
    return [file, good, BACKBONE]  # compare, explain


def http_refusal(response: httpx.Response) -> Outcome:
    try:
        detail = response.json().get("detail") or response.json().get("error")
    except ValueError:
        detail = response.text
    detail = str(detail or "").strip()
    readable = bool(detail) and (response.status_code < 500 or response.status_code == 503)  # 503: "busy"
    return Outcome("refused" if readable else "server_error", f"HTTP {response.status_code} {detail[:200]}")


def sse_outcome(stream: str) -> Outcome:
    """Sort a /gradio_api/call stream: results, a readable error message, or an error with none."""
    events = [block for block in stream.split("\n\n") if block.startswith("event:")]
    if not events:
        return Outcome("server_error", f"no event in {stream[:200]!r}")
    last = events[-1]
    kind, _, data = last.partition("\ndata: ")
    if kind == "event: complete":
        return Outcome("answered")
    try:
        message = json.loads(data) if data else None
    except ValueError:
        message = data
    if isinstance(message, dict):  # {"error": text or None, "title": ..., ...}
        message = message.get("error")
    return error_outcome(message, f"{kind} with no message")


def error_outcome(message: object, missing: str) -> Outcome:
    """An error event's outcome: refused when it carries a message a user can read, else unreadable."""
    message = str(message).strip() if message is not None else ""
    # Gradio sends `null` for an exception that is not a gr.Error: the user would see a bare "Error".
    readable = len(message) > 12 and message.lower() not in ("error", "none", "null")
    return Outcome("refused" if readable else "unreadable", message[:200] or missing)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def disk_mb(folder: Path) -> float:
    """Disk space the folder takes (files and directories), as `du` counts it."""
    total = 0
    for root, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            with suppress(FileNotFoundError):  # deleted by the app meanwhile
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total / 1024**2


class PeakRss:
    """The highest RSS of a process while the block runs, sampled every 20 ms."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, rss_mb(pid), threading.Event()

    def __enter__(self) -> PeakRss:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mb(self.pid))

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb(self.pid))


@contextmanager
def started_app(embeddings: Path, scratch: Path, env: dict[str, str]):
    """`python app.py` on a free 127.0.0.1 port with its own temp folder: (url, pid, temp folder)."""
    temp_dir = scratch / "gradio-temp"
    temp_dir.mkdir()
    with running_app_process(embeddings, scratch / "app.log", {**env, "GRADIO_TEMP_DIR": str(temp_dir)}) as (url, app):
        yield url, app.pid, temp_dir


@dataclass(frozen=True)
class HostileConfig:
    recommend_uploads: int = 1000
    per_endpoint_uploads: int = 100
    workers: int = 4
    burst: int = 50
    big_pictures: int = 6
    seed: int = 0


def fuzz(app: App, config: HostileConfig, temp_dir: Path, good: dict) -> dict:
    """The fuzzed uploads through every image endpoint, with the temp folder's growth over /recommend's."""
    rng = random.Random(config.seed)
    seeds = seed_files()
    figures = {}
    for endpoint in ENDPOINTS:
        count = config.recommend_uploads if endpoint == "recommend" else config.per_endpoint_uploads
        uploads = fuzzed_uploads(seeds, count, rng)
        tally, temp_before, started = Tally(), disk_mb(temp_dir), time.monotonic()
        workers = 1 if endpoint == "explain" else config.workers  # heat-maps queue one at a time anyway
        with ThreadPoolExecutor(workers) as pool:
            for outcome in pool.map(lambda upload, e=endpoint: app.send(e, upload, good), uploads):
                tally.add(outcome)
        figures[endpoint] = {
            "uploads": count,
            **tally.summary(),
            "wall_s": round(time.monotonic() - started, 1),
            "temp_growth_mb": round(disk_mb(temp_dir) - temp_before, 1),
        }
        print(f"  {endpoint}: {json.dumps({k: v for k, v in figures[endpoint].items() if k != 'messages'})}")
    return figures


def refusal_costs(app: App, pid: int, good: dict) -> dict:
    """A data: URL over the cap and a pixel bomb through every image endpoint: time and extra RSS."""
    figures = {}
    for name, upload in (("data_url_over_cap", data_url_over_cap()), ("pixel_bomb", pixel_bomb())):
        for endpoint in ENDPOINTS:
            before = rss_mb(pid)
            with PeakRss(pid) as peak:
                outcome = app.send(endpoint, upload, good)
            figures[f"{name} {endpoint}"] = {
                "outcome": outcome.kind,
                "seconds": round(outcome.seconds, 3),
                "extra_rss_mb": round(peak.peak - before, 1),
                "message": outcome.detail[-120:],
            }
    return figures


def settled_rss(pid: int, seconds: float = 5) -> float:
    """The server's RSS once the work it was handed has had `seconds` to finish and give memory back."""
    time.sleep(seconds)
    return rss_mb(pid)


def big_pictures(app: App, pid: int, count: int) -> dict:
    """RSS before, at its peak during, and settled after `count` 49-Mpx pictures through /recommend."""
    upload = big_picture()
    start = rss_mb(pid)
    outcomes = []
    with PeakRss(pid) as peak:
        for _ in range(count):
            outcomes.append(app.send("recommend", upload))
    settled = settled_rss(pid)
    return {
        "pictures": count,
        "file_mb": round(len(upload.data) / 1024**2, 1),
        "answered": sum(o.kind == "answered" for o in outcomes),
        "seconds_each": [round(o.seconds, 2) for o in outcomes],
        "rss_start_mb": round(start),
        "rss_peak_mb": round(peak.peak),
        "rss_settled_mb": round(settled),
        "settled_above_start_mb": round(settled - start),
        "failures": [o.detail for o in outcomes if o.kind != "answered"][:3],
    }


def explain_burst(app_url: str, pid: int, good: dict, burst: int, route: str) -> dict:
    """`burst` concurrent explain calls through `route` while /recommend is timed, one call after another,
    and the server's RSS before, at its peak and once it has settled."""
    recommend = App(app_url)
    latencies, stop = [], threading.Event()

    def time_recommend() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            outcome = recommend.call("recommend", [good, 3, "cosine", BACKBONE])
            latencies.append((time.perf_counter() - started, outcome.kind))
            time.sleep(0.2)

    timer = threading.Thread(target=time_recommend, daemon=True)
    tally = Tally()
    rss_before = rss_mb(pid)
    started = time.monotonic()
    timer.start()
    with PeakRss(pid) as peak, ThreadPoolExecutor(burst) as pool:
        outcomes = list(pool.map(lambda _: App(app_url).call("explain", [good, good, BACKBONE], route), range(burst)))
    stop.set()
    timer.join()
    for outcome in outcomes:
        tally.add(outcome)
    seconds = sorted(s for s, _ in latencies)
    return {
        "route": route,
        "explain_calls": burst,
        **tally.summary(),
        "burst_wall_s": round(time.monotonic() - started, 1),
        "recommend_calls": len(latencies),
        "recommend_answered": sum(kind == "answered" for _, kind in latencies),
        "recommend_p50_s": round(statistics.median(seconds), 2) if seconds else None,
        "recommend_p95_s": round(seconds[max(0, int(len(seconds) * 0.95) - 1)], 2) if seconds else None,
        "recommend_max_s": round(seconds[-1], 2) if seconds else None,
        "rss_before_mb": round(rss_before),
        "rss_peak_mb": round(peak.peak),
        "rss_settled_above_before_mb": round(settled_rss(pid) - rss_before),
    }


def run(url: str, pid: int, temp_dir: Path, config: HostileConfig) -> dict:
    app = App(url)
    good_upload = seed_files()[0]
    good = app.upload(good_upload)
    warm = app.call("recommend", [good, 3, "cosine", BACKBONE])  # model warm before anything is measured
    figures: dict = {"config": config.__dict__, "warm_up": warm.kind, "rss_at_start_mb": round(rss_mb(pid))}
    print("refusal costs ...", flush=True)
    figures["refusals"] = refusal_costs(app, pid, good)
    print("big pictures ...", flush=True)
    figures["big_pictures"] = big_pictures(app, pid, config.big_pictures)
    print("fuzzing ...", flush=True)
    temp_before = disk_mb(temp_dir)
    figures["fuzz"] = fuzz(app, config, temp_dir, good)
    figures["explain_burst"] = {}
    for route in ROUTES:
        print(f"explain burst through /gradio_api/{route} ...", flush=True)
        figures["explain_burst"][route] = explain_burst(url, pid, good, config.burst, route)
    figures["temp_growth_total_mb"] = round(disk_mb(temp_dir) - temp_before, 1)
    final = app.call("recommend", [good, 3, "cosine", BACKBONE])
    figures["still_answers"] = final.kind == "answered"
    figures["rss_at_end_mb"] = round(rss_mb(pid))
    figures["load_average_1min"] = round(os.getloadavg()[0], 2)
    return figures


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recommend", type=int, default=HostileConfig.recommend_uploads, help="fuzzed /recommend")
    parser.add_argument("--per-endpoint", type=int, default=HostileConfig.per_endpoint_uploads, help="each other")
    parser.add_argument("--burst", type=int, default=HostileConfig.burst, help="concurrent explain calls")
    parser.add_argument("--big", type=int, default=HostileConfig.big_pictures, help="49-Mpx pictures")
    parser.add_argument("--seed", type=int, default=HostileConfig.seed)
    parser.add_argument("--embeddings", type=Path, default=REPO_ROOT / "embeddings", help="what the app serves")
    parser.add_argument("--glibc-tunables", help="GLIBC_TUNABLES for the app ('' for glibc's defaults)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = HostileConfig(args.recommend, args.per_endpoint, burst=args.burst, big_pictures=args.big, seed=args.seed)
    env = {} if args.glibc_tunables is None else {"GLIBC_TUNABLES": args.glibc_tunables}
    scratch = Path(tempfile.mkdtemp(prefix="lookalike-hostile-"))
    try:
        with started_app(args.embeddings, scratch, env) as (url, pid, temp_dir):
            figures = run(url, pid, temp_dir, config)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    figures["glibc_tunables"] = args.glibc_tunables if args.glibc_tunables is not None else "app default"
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    failed = sum(f["unreadable_errors"] + f["server_errors"] for f in figures["fuzz"].values())
    return 0 if failed == 0 and figures["still_answers"] else 1


if __name__ == "__main__":
    sys.exit(main())
