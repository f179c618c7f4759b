"""The JSON API against the page's protocol and the search in-process, side by side in one run.

    python benchmarks/json_api.py [--clients 16] [--requests 160] [--burst 200] [--json FILE]

One `python app.py` on the bundled builds (127.0.0.1, its own temp folder). Measured, in this order,
each with `--clients` concurrent clients of a light asyncio HTTP client on the same machine:
  - in-process: `LookalikeService.search` on the same photos' bytes, one after another (no HTTP);
  - Gradio's `/recommend`: upload the photo, call, read the event stream (what gradio_client does);
  - the JSON `POST /api/v1/similar` (multipart photo in, JSON out);
  - the JSON `GET /api/v1/similar?id=` of catalog products (precomputed neighbours).
Then `--burst` POSTs at once: every answer must be 200, or 429/503 with Retry-After; the server
must answer afterwards, and its RSS is printed before, at the peak and settled. Ratios are of
answers per second in this one run; the load average is printed with them, and each protocol's
server CPU time per answer (all its threads: the model's, BLAS's, the event loop's).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from benchmarks.figures import load_average, publish
from benchmarks.hostile import PeakRss, rss_mb, settled_rss, started_app
from lookalike.app.service import SERVED_DEFAULTS, LookalikeService, Query, SearchRequest
from lookalike.catalog import EXAMPLES_DIR, REPO_ROOT

K = 8
# What the page and the API search with when a call names none; named in every call, the burst's too, so that
# its RSS figures are not a second backbone's first use (+80 MB, its model compiled).
BACKBONE = SERVED_DEFAULTS[0]


def percentile(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, round(q * (len(values) - 1)))]


def figures(latencies: list[float], seconds: float, statuses: list[int]) -> dict[str, object]:
    return {
        "answers_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": round(1000 * statistics.median(latencies)),
        "p95_ms": round(1000 * percentile(latencies, 0.95)),
        "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
    }


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def in_process(photos: list[bytes], n: int) -> dict[str, object]:
    service = LookalikeService.from_embeddings_dir(REPO_ROOT / "embeddings")
    request = SearchRequest(k=K, backbone=BACKBONE)
    for photo in photos[:5]:
        service.search(Query(images=(photo,)), request)  # warm-up
    latencies = []
    started = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        service.search(Query(images=(photos[i % len(photos)],)), request)
        latencies.append(time.perf_counter() - t0)
    return figures(latencies, time.perf_counter() - started, [200] * n)


async def gradio_recommend(http: httpx.AsyncClient, url: str, photo: bytes) -> int:
    upload = await http.post(url + "gradio_api/upload", files={"files": ("photo.jpg", photo, "image/jpeg")})
    upload.raise_for_status()
    file = {"path": upload.json()[0], "orig_name": "photo.jpg", "meta": {"_type": "gradio.FileData"}}
    call = await http.post(url + "gradio_api/call/recommend", json={"data": [file, K, "cosine", BACKBONE]})
    call.raise_for_status()
    stream = await http.get(f"{url}gradio_api/call/recommend/{call.json()['event_id']}")
    return 200 if "event: complete" in stream.text else 500


async def json_post(http: httpx.AsyncClient, url: str, photo: bytes) -> int:
    files = {"image": ("photo.jpg", photo, "image/jpeg")}
    response = await http.post(url + "api/v1/similar", params={"k": K, "backbone": BACKBONE}, files=files)
    return response.status_code


async def json_get(http: httpx.AsyncClient, url: str, item: str) -> int:
    response = await http.get(url + "api/v1/similar", params={"id": item, "k": K, "backbone": BACKBONE})
    return response.status_code


async def concurrently(call, url: str, inputs: list, clients: int, total: int) -> dict[str, object]:
    """`total` calls shared by `clients` concurrent clients, after one warm-up call each."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        await asyncio.gather(*(call(http, url, inputs[i % len(inputs)]) for i in range(clients)))
        latencies: list[float] = []
        statuses: list[int] = []
        counter = iter(range(total))

        async def client() -> None:
            for i in counter:
                t0 = time.perf_counter()
                statuses.append(await call(http, url, inputs[i % len(inputs)]))
                latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return figures(latencies, time.perf_counter() - started, statuses)


async def burst(url: str, photo: bytes, n: int) -> dict[str, object]:
    """`n` POSTs at once: each answer's status and whether a refusal says when to come back."""
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=300, limits=limits) as http:
        files = {"image": ("photo.jpg", photo, "image/jpeg")}
        responses = await asyncio.gather(
            *(http.post(url + "api/v1/similar", params={"k": K, "backbone": BACKBONE}, files=files) for _ in range(n)),
            return_exceptions=True,
        )
        # A photo, not a catalog product: its precomputed answer would be given without the model's line.
        after = await http.post(url + "api/v1/similar", params={"k": K, "backbone": BACKBONE}, files=files)
    statuses = [r.status_code if isinstance(r, httpx.Response) else type(r).__name__ for r in responses]
    refused = [r for r in responses if isinstance(r, httpx.Response) and r.status_code in (429, 503)]
    return {
        "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses), key=str)},
        "refusals_with_retry_after": sum("retry-after" in r.headers for r in refused),
        "refusals": len(refused),
        "answers_afterwards": after.status_code,
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=160, help="calls per protocol")
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    photos = [path.read_bytes() for path in sorted(EXAMPLES_DIR.glob("*/*.jpg"))]
    items = [
        path.relative_to(REPO_ROOT / "catalog").as_posix() for path in sorted((REPO_ROOT / "catalog").glob("*/*.jpg"))
    ]
    random.Random(0).shuffle(items)
    result: dict[str, object] = {"load_average_start": load_average(), "clients": args.clients}
    result["in_process_sequential"] = in_process(photos, args.requests)
    with (
        tempfile.TemporaryDirectory() as scratch,
        started_app(REPO_ROOT / "embeddings", Path(scratch), {}) as (url, pid, _),
    ):

        def run(call, inputs: list) -> dict[str, object]:
            """One protocol's figures, with the server's CPU time (every thread) per answer, warm-ups included."""
            cpu_before = cpu_seconds(pid)
            figures = asyncio.run(concurrently(call, url, inputs, args.clients, args.requests))
            answers = args.clients + args.requests
            return {**figures, "server_cpu_ms_per_answer": round(1000 * (cpu_seconds(pid) - cpu_before) / answers, 1)}

        result["gradio_recommend"] = run(gradio_recommend, photos)
        result["json_post"] = run(json_post, photos)
        result["json_get_by_id"] = run(json_get, items)
        before = rss_mb(pid)
        with PeakRss(pid) as peak:
            result["burst"] = asyncio.run(burst(url, photos[0], args.burst))
        result["burst"]["rss_mb"] = {
            "before": round(before),
            "peak": round(peak.peak),
            "settled": round(settled_rss(pid)),
        }
    speed = {
        name: result[name]["answers_per_s"]
        for name in ("in_process_sequential", "gradio_recommend", "json_post", "json_get_by_id")
    }
    result["ratios"] = {
        "json_post_vs_gradio": round(speed["json_post"] / speed["gradio_recommend"], 2),
        "json_post_vs_in_process": round(speed["json_post"] / speed["in_process_sequential"], 2),
        "json_get_vs_json_post": round(speed["json_get_by_id"] / speed["json_post"], 2),
    }
    result["load_average_end"] = load_average()
    return publish(result, args.json)


if __name__ == "__main__":
    main()
