"""N products through the app a shop runs: build them with scale.py, serve them with `python app.py`, measure.

    python benchmarks/scale_app.py --items 30000 100000 1000000 [--json FILE] [--scratch DIR] [--keep]
    python benchmarks/scale_app.py --table FILE   # the README table of a saved run

For each N (one server at a time, on 127.0.0.1, with a temp folder of its own): scale.py writes a
build folder of N synthetic-from-real products (unless DIR/scale-N already holds one), then a light
HTTP client measures the page config and API description sizes, `/recommend` through HTTP (upload a
photo, call, read the answer, fetch the gallery's thumbnails; sequential, after a warm-up), a
one-category `/search` (checked: K products, all of that category), the server's RSS afterwards,
and the folder's disk use per product. The build folder is deleted afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from benchmarks import scale
from benchmarks.hostile import disk_mb, rss_mb, started_app
from lookalike.catalog import EXAMPLES_DIR, REPO_ROOT
from lookalike.index.serving_cache import CACHE_DIR, shard_files

K = 8
WARM_UP = 5
RECOMMENDS = 50
SEARCHES = 20


class HttpClient:
    """What a browser does for one search: upload the photo, call the endpoint, read the SSE answer,
    fetch the gallery's thumbnails."""

    def __init__(self, url: str, backbone: str) -> None:
        # The page's backbone choices are the served build folders' names.
        self.url, self.backbone, self.http = url, backbone, httpx.Client(timeout=120)

    def upload(self, photo: Path) -> dict:
        response = self.http.post(self.url + "gradio_api/upload", files={"files": (photo.name, photo.read_bytes())})
        response.raise_for_status()
        return {"path": response.json()[0], "orig_name": photo.name, "meta": {"_type": "gradio.FileData"}}

    def call(self, endpoint: str, data: list) -> list:
        api = f"{self.url}gradio_api/call/{endpoint}"
        response = self.http.post(api, json={"data": data})
        response.raise_for_status()
        stream = self.http.get(f"{api}/{response.json()['event_id']}").text
        for block in stream.split("\n\n"):
            kind, _, payload = block.partition("\ndata: ")
            if kind == "event: complete":
                return json.loads(payload)
        raise RuntimeError(f"/{endpoint} did not complete: {stream[:300]}")

    def search(self, endpoint: str, photo: Path, filters: list | None = None) -> tuple[float, list]:
        """Seconds for one whole search as the page does it, and its JSON results."""
        started = time.perf_counter()
        file = self.upload(photo)
        data = [file, K, "cosine", self.backbone, *(filters or [])]
        gallery, results = self.call(endpoint, data)[:2]  # the page's extra outputs (state) follow
        for item in gallery:
            self.http.get(item["image"]["url"]).raise_for_status()
        return time.perf_counter() - started, results

    def size(self, path: str) -> int:
        response = self.http.get(self.url + path)
        response.raise_for_status()
        return len(response.content)


def percentile(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, round(q * (len(values) - 1)))]


def a_category(build: Path) -> str:
    """The category of the build's first product (a one-category filter must find K of it)."""
    return pq.ParquetFile(shard_files(build)[0]).read_row_group(0, columns=["label"]).column(0)[0].as_py()


def measure_app(build: Path, n_items: int, scratch: Path) -> dict[str, object]:
    photos = sorted(EXAMPLES_DIR.glob("*/*.jpg"))
    category = a_category(build)
    scratch.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with started_app(build, scratch, {}) as (url, pid, _):
        client = HttpClient(url, build.name)
        client.size("config")  # the first load, not timed: the server is up once it answers
        start_s = time.perf_counter() - started
        figures: dict[str, object] = {
            "config_bytes": client.size("config"),
            "api_info_bytes": client.size("gradio_api/info"),
            "page_bytes": client.size(""),
            "server_start_s": round(start_s, 1),
        }
        for photo in photos[:WARM_UP]:
            client.search("recommend", photo)
        latencies = [client.search("recommend", photos[n % len(photos)])[0] for n in range(RECOMMENDS)]
        one_category = [[category], False, [], True]
        searches, wrong = [], []
        for n in range(SEARCHES):
            seconds, results = client.search("search", photos[n % len(photos)], one_category)
            searches.append(seconds)
            if len(results) != K or any(r["label"] != category for r in results):
                wrong.append([r["label"] for r in results])
        figures.update(
            {
                "recommend_p50_ms": round(1000 * statistics.median(latencies)),
                "recommend_p95_ms": round(1000 * percentile(latencies, 0.95)),
                "one_category_search_p50_ms": round(1000 * statistics.median(searches)),
                "one_category": category,
                "one_category_searches_wrong": len(wrong),
                "server_rss_mb": round(rss_mb(pid)),
            }
        )
    total = disk_mb(build) * 2**20
    cache = disk_mb(build / CACHE_DIR) * 2**20
    figures["disk_bytes_per_product"] = round(total / n_items)
    figures["disk_bytes_per_product_without_serving_cache"] = round((total - cache) / n_items)
    return figures


def run(items: int, scratch: Path, keep: bool) -> dict[str, object]:
    build, build_json = scratch / f"scale-{items}", scratch / f"scale-{items}.json"
    record: dict[str, object] = {"items": items}
    if not (build / "lookalike.json").is_file():
        # In a process of its own, so that its peak RSS is the build's alone.
        command = [sys.executable, str(Path(scale.__file__)), "--items", str(items), "--output", str(build)]
        subprocess.run([*command, "--json", str(build_json)], check=True, stdout=subprocess.DEVNULL)
    if build_json.is_file():  # the figures of the run that wrote the folder
        record["build"] = json.loads(build_json.read_text())
    record["app"] = measure_app(build, items, Path(tempfile.mkdtemp(prefix=f"app-{items}-", dir=scratch)))
    record["load_average"] = [round(x, 2) for x in os.getloadavg()]
    if not keep:
        shutil.rmtree(build)
    return record


def markdown_table(records: list[dict]) -> str:
    """The figures of a run as the table in benchmarks/README.md."""
    rows = [
        ("page config (`/config`)", lambda r: f"{r['app']['config_bytes'] / 1000:,.0f} kB"),
        ("API description (`/gradio_api/info`)", lambda r: f"{r['app']['api_info_bytes'] / 1000:,.0f} kB"),
        ("search", lambda r: r["build"]["search"]["method"]),
        (
            "`/recommend` p50 / p95 through HTTP (upload, answer, 8 thumbnails)",
            lambda r: f"{r['app']['recommend_p50_ms']} / {r['app']['recommend_p95_ms']} ms",
        ),
        ("one-category `/search` p50 through HTTP", lambda r: f"{r['app']['one_category_search_p50_ms']} ms"),
        (
            "one-category `/search`: answers not all K of the category",
            lambda r: f"{r['app']['one_category_searches_wrong']} of {SEARCHES}",
        ),
        ("server RSS after the run", lambda r: f"{r['app']['server_rss_mb']:,} MB"),
        ("server start (to the first page config)", lambda r: f"{r['app']['server_start_s']} s"),
        ("`scale.py` build time", lambda r: f"{r['build']['total_s']:,.0f} s"),
        ("`scale.py` build peak RSS", lambda r: f"{r['build']['peak_rss_mb']:,} MB"),
        (
            "disk per product (without the serving cache)",
            lambda r: (
                f"{r['app']['disk_bytes_per_product'] / 1000:.1f} kB "
                f"({r['app']['disk_bytes_per_product_without_serving_cache'] / 1000:.1f} kB)"
            ),
        ),
        ("load average (1, 5, 15 min) at the end", lambda r: ", ".join(map(str, r["load_average"]))),
    ]
    lines = ["| | " + " | ".join(f"{r['items']:,} products" for r in records) + " |"]
    lines.append("|---" * (len(records) + 1) + "|")
    lines += [f"| {name} | " + " | ".join(cell(r) for r in records) + " |" for name, cell in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, nargs="+", default=[30_000, 100_000, 1_000_000])
    parser.add_argument("--scratch", type=Path, default=REPO_ROOT / "data" / "scale")
    parser.add_argument("--keep", action="store_true", help="keep the build folders")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--table", type=Path, help="print the README table of a saved --json run, measure nothing")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table(json.loads(args.table.read_text())))
        return []
    records = []
    for items in args.items:
        records.append(run(items, args.scratch, args.keep))
        print(json.dumps(records[-1], indent=2), flush=True)
        if args.json:
            args.json.write_text(json.dumps(records, indent=2) + "\n")
    print(markdown_table(records))
    return records


if __name__ == "__main__":
    main()
