"""N products through the app a shop runs: build them with scale.py, serve them with `python app.py`, measure.

    python benchmarks/scale_app.py --items 30000 100000 1000000 [--json FILE] [--scratch DIR] [--keep]
    python benchmarks/scale_app.py --table FILE   # the README table of a saved run

For each N (one server at a time, on 127.0.0.1, with a temp folder of its own): scale.py writes a
build folder of N synthetic-from-real products (unless DIR/scale-N already holds one), then a light
HTTP client measures the page config and API description sizes, `/recommend` through HTTP (upload a
photo, call, read the answer, fetch the gallery's thumbnails concurrently over up to 6 connections,
as a browser does (Chromium opens 6 per host), in one Gradio session as a browser tab keeps;
requests one after another, after a warm-up; checked: each result has a title, price, link and
brand), a one-category `/search` (checked: K products, all of that category), a facet-filtered
`/search` (a brand and a colour, a price range, in stock only; checked: every result passes each
filter, as many results as the build has groups that pass, up to K, and one product per variant
group), the server's RSS afterwards (anonymous and mapped files' pages apart) and at its peak, the
load average at the start and end, and the folder's disk use per product. The build folder is
deleted afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from benchmarks import scale
from benchmarks.hostile import disk_mb, rss_mb, started_app
from lookalike.catalog import EXAMPLES_DIR, REPO_ROOT
from lookalike.catalog.product import AVAILABILITY, GROUP_ID, IN_STOCK, PRICE
from lookalike.index.serving_cache import CACHE_DIR, shard_files

K = 8
WARM_UP = 5
RECOMMENDS = 50
SEARCHES = 20
# The facet-filtered search: the brand and colour of the build's first product, this price range, in stock.
PRICE_RANGE = (20.0, 200.0)
SHOWN_FIELDS = ("title", "price", "link", "brand")  # what a shopper reads of every result
CONNECTIONS = 6  # a browser's connections per host (Chromium), over which it fetches a gallery's images
THUMBNAILS_FETCHED = f"concurrently, {CONNECTIONS} connections, as a browser"
SESSIONS = "one Gradio session per client, as a browser tab"


class HttpClient:
    """What a browser tab does for one search: upload the photo, call the endpoint, read the SSE answer,
    fetch the gallery's thumbnails concurrently over up to CONNECTIONS kept-alive connections. Like a tab,
    one client keeps one Gradio session for all its calls (a call without one makes a new session, whose
    state Gradio builds from every block of the page: ~20 ms a call at a million products)."""

    def __init__(self, url: str, backbone: str) -> None:
        # The page's backbone choices are the served build folders' names.
        self.url, self.backbone = url, backbone
        self.session_hash = secrets.token_hex(6)  # what the page makes once per tab
        limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
        self.http = httpx.Client(timeout=120, limits=limits)  # one pool, shared by the threads below
        self.fetchers = ThreadPoolExecutor(CONNECTIONS, thread_name_prefix="thumbnail")

    def upload(self, photo: Path) -> dict:
        response = self.http.post(self.url + "gradio_api/upload", files={"files": (photo.name, photo.read_bytes())})
        response.raise_for_status()
        return {"path": response.json()[0], "orig_name": photo.name, "meta": {"_type": "gradio.FileData"}}

    def call(self, endpoint: str, data: list) -> list:
        api = f"{self.url}gradio_api/call/{endpoint}"
        response = self.http.post(api, json={"data": data, "session_hash": self.session_hash})
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
        # As a browser: every thumbnail requested at once, at most CONNECTIONS of them in flight.
        for response in self.fetchers.map(self.http.get, [item["image"]["url"] for item in gallery]):
            response.raise_for_status()
        return time.perf_counter() - started, results

    def size(self, path: str) -> int:
        response = self.http.get(self.url + path)
        response.raise_for_status()
        return len(response.content)

    def close(self) -> None:
        self.fetchers.shutdown()
        self.http.close()


def percentile(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, round(q * (len(values) - 1)))]


def a_category(build: Path) -> str:
    """The category of the build's first product (a one-category filter must find K of it)."""
    return pq.ParquetFile(shard_files(build)[0]).read_row_group(0, columns=["label"]).column(0)[0].as_py()


@dataclasses.dataclass(frozen=True)
class FacetSearch:
    """A facet-filtered search and how many variant groups of the build pass it (the most it can find)."""

    brand: str
    colour: str
    price_min: float
    price_max: float
    passing_groups: int

    @classmethod
    def of(cls, build: Path) -> FacetSearch:
        """The first product's brand and colour, PRICE_RANGE, in stock; its passing groups counted over every row."""
        first = pq.ParquetFile(shard_files(build)[0]).read_row_group(0, columns=["brand", "color"])
        brand, colour = first.column("brand")[0].as_py(), first.column("color")[0].as_py()
        low, high = PRICE_RANGE
        columns = ["brand", "color", PRICE, AVAILABILITY, GROUP_ID]
        groups = set()
        for shard in shard_files(build):
            rows = pq.read_table(shard, columns=columns)
            passing = pc.and_(
                pc.and_(pc.equal(rows.column("brand"), brand), pc.equal(rows.column("color"), colour)),
                pc.and_(
                    pc.and_(pc.greater_equal(rows.column(PRICE), low), pc.less_equal(rows.column(PRICE), high)),
                    pc.equal(rows.column(AVAILABILITY), IN_STOCK),
                ),
            )
            groups.update(rows.column(GROUP_ID).filter(passing).to_pylist())
        return cls(brand, colour, low, high, len(groups))

    def filters(self) -> list:
        """The `/search` filters after K, metric and backbone, in the API's order."""
        facets = [f"brand={self.brand}", f"color={self.colour}"]
        return [[], False, [], True, facets, self.price_min, self.price_max, True]

    def problems(self, results: list[dict]) -> list[str]:
        """What is wrong with one answer: a result failing a filter, too few results, a group twice."""
        wrong = [
            f"{r.get('id')}: {field}={r.get(field)!r}"
            for r in results
            for field, passes in (
                ("brand", r.get("brand") == self.brand),
                ("color", r.get("color") == self.colour),
                ("price", isinstance(r.get("price"), float | int) and self.price_min <= r["price"] <= self.price_max),
                ("availability", r.get("availability") == IN_STOCK),
            )
            if not passes
        ]
        expected = min(K, self.passing_groups)
        if len(results) != expected:
            wrong.append(f"{len(results)} results, {expected} expected")
        groups = [r.get(GROUP_ID) for r in results]
        if None in groups or len(set(groups)) != len(groups):
            wrong.append(f"variant groups not one per result: {groups}")
        return wrong


def peak_rss_mb(pid: int) -> float:
    """The process's highest RSS since it started (VmHWM), its load of the catalog included."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {pid}")


def resident_mb(pid: int) -> dict[str, object]:
    """RSS split as the kernel splits it (/proc/PID/status RssAnon, RssFile, RssShmem), and the mapped
    files holding the most resident pages (/proc/PID/smaps: the search index, the rows, the libraries)."""
    status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines()
    kb = {line.split(":")[0]: int(line.split()[1]) for line in status if line.startswith("Rss")}
    by_file: dict[str, int] = {}
    name = None
    for line in Path(f"/proc/{pid}/smaps").read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if not fields[0].endswith(":"):  # a mapping's header: address, perms, offset, device, inode, path
            name = Path(fields[5]).name if len(fields) == 6 and fields[5].startswith("/") else None
        elif name and fields[0] == "Rss:":
            by_file[name] = by_file.get(name, 0) + int(fields[1])
    largest = sorted(by_file.items(), key=lambda item: -item[1])[:4]
    return {
        "anon_mb": round(kb["RssAnon"] / 1024),
        "file_mb": round(kb["RssFile"] / 1024),
        "shmem_mb": round(kb["RssShmem"] / 1024),
        "largest_files_mb": {file: round(size / 1024) for file, size in largest},
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def measure_app(build: Path, n_items: int, scratch: Path) -> dict[str, object]:
    photos = sorted(EXAMPLES_DIR.glob("*/*.jpg"))
    category = a_category(build)
    facet_search = FacetSearch.of(build)
    scratch.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with started_app(build, scratch, {}) as (url, pid, _):
        client = HttpClient(url, build.name)
        client.size("config")  # the first load, not timed: the server is up once it answers
        start_s = time.perf_counter() - started
        figures: dict[str, object] = {
            "thumbnails_fetched": THUMBNAILS_FETCHED,
            "sessions": SESSIONS,
            "config_bytes": client.size("config"),
            "api_info_bytes": client.size("gradio_api/info"),
            "page_bytes": client.size(""),
            "server_start_s": round(start_s, 1),
        }
        for photo in photos[:WARM_UP]:
            client.search("recommend", photo)
        latencies, without_fields = [], 0
        for n in range(RECOMMENDS):
            seconds, results = client.search("recommend", photos[n % len(photos)])
            latencies.append(seconds)
            without_fields += sum(any(r.get(name) is None for name in SHOWN_FIELDS) for r in results)
        one_category = [[category], False, [], True, [], None, None, False]
        searches, wrong = [], []
        for n in range(SEARCHES):
            seconds, results = client.search("search", photos[n % len(photos)], one_category)
            searches.append(seconds)
            if len(results) != K or any(r["label"] != category for r in results):
                wrong.append([r["label"] for r in results])
        facet_searches, facet_wrong = [], []
        for n in range(SEARCHES):
            seconds, results = client.search("search", photos[n % len(photos)], facet_search.filters())
            facet_searches.append(seconds)
            if problems := facet_search.problems(results):
                facet_wrong.append(problems)
        figures.update(
            {
                "recommend_p50_ms": round(1000 * statistics.median(latencies)),
                "recommend_p95_ms": round(1000 * percentile(latencies, 0.95)),
                "recommend_results_without_title_price_link_brand": without_fields,
                "one_category_search_p50_ms": round(1000 * statistics.median(searches)),
                "one_category": category,
                "one_category_searches_wrong": len(wrong),
                "facet_search_p50_ms": round(1000 * statistics.median(facet_searches)),
                "facet_search_p95_ms": round(1000 * percentile(facet_searches, 0.95)),
                "facet_search": facet_search.filters()[4:],
                "facet_search_passing_groups": facet_search.passing_groups,
                "facet_searches_wrong": len(facet_wrong),
                "facet_search_problems": facet_wrong[:3],  # the first few, to see what went wrong
                "server_rss_mb": round(rss_mb(pid)),
                "server_rss_split": resident_mb(pid),
                "server_peak_rss_mb": round(peak_rss_mb(pid)),
            }
        )
        client.close()
    total = disk_mb(build) * 2**20
    cache = disk_mb(build / CACHE_DIR) * 2**20
    figures["disk_bytes_per_product"] = round(total / n_items)
    figures["disk_bytes_per_product_without_serving_cache"] = round((total - cache) / n_items)
    return figures


def run(items: int, scratch: Path, keep: bool, source: Path = scale.DEFAULT_SOURCE) -> dict[str, object]:
    build, build_json = scratch / f"scale-{items}-{source.name}", scratch / f"scale-{items}-{source.name}.json"
    record: dict[str, object] = {"items": items, "source": source.name}
    if not (build / "lookalike.json").is_file():
        # In a process of its own, so that its peak RSS is the build's alone.
        command = [sys.executable, str(Path(scale.__file__)), "--items", str(items), "--output", str(build)]
        command += ["--source", str(source)]
        subprocess.run([*command, "--json", str(build_json)], check=True, stdout=subprocess.DEVNULL)
    if build_json.is_file():  # the figures of the run that wrote the folder
        record["build"] = json.loads(build_json.read_text())
    record["load_average_at_start"] = load_average()
    record["app"] = measure_app(build, items, Path(tempfile.mkdtemp(prefix=f"app-{items}-", dir=scratch)))
    record["load_average"] = load_average()
    print(
        f"{items:,} products: load average (1, 5, 15 min) {record['load_average_at_start']} at the start "
        f"of the app's measurement, {record['load_average']} at its end",
        flush=True,
    )
    if not keep:
        shutil.rmtree(build)
    return record


def measured(cell, record: dict) -> str:
    """A table cell, or a dash for a figure a run saved before it was measured."""
    try:
        return cell(record)
    except KeyError:
        return "–"


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
        ("thumbnails fetched", lambda r: r["app"]["thumbnails_fetched"]),
        ("Gradio sessions", lambda r: r["app"]["sessions"]),
        ("one-category `/search` p50 through HTTP", lambda r: f"{r['app']['one_category_search_p50_ms']} ms"),
        (
            "one-category `/search`: answers not all K of the category",
            lambda r: f"{r['app']['one_category_searches_wrong']} of {SEARCHES}",
        ),
        (
            "facet-filtered `/search` p50 / p95 (brand, colour, price range, in stock)",
            lambda r: f"{r['app']['facet_search_p50_ms']} / {r['app']['facet_search_p95_ms']} ms",
        ),
        (
            "facet-filtered `/search`: answers failing a check",
            lambda r: f"{r['app']['facet_searches_wrong']} of {SEARCHES}",
        ),
        (
            "server RSS after the run (peak)",
            lambda r: f"{r['app']['server_rss_mb']:,} MB ({r['app']['server_peak_rss_mb']:,} MB)",
        ),
        (
            "of which RssAnon / RssFile (the largest files)",
            lambda r: (
                f"{r['app']['server_rss_split']['anon_mb']:,} / {r['app']['server_rss_split']['file_mb']:,} MB ("
                + ", ".join(f"{f} {mb:,}" for f, mb in r["app"]["server_rss_split"]["largest_files_mb"].items())
                + ")"
            ),
        ),
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
    lines += [f"| {name} | " + " | ".join(measured(cell, r) for r in records) + " |" for name, cell in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, nargs="+", default=[30_000, 100_000, 1_000_000])
    parser.add_argument("--scratch", type=Path, default=REPO_ROOT / "data" / "scale")
    parser.add_argument("--keep", action="store_true", help="keep the build folders")
    parser.add_argument(
        "--source", type=Path, default=scale.DEFAULT_SOURCE, help="the build whose embeddings and backbone it scales"
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--table", type=Path, help="print the README table of a saved --json run, measure nothing")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table(json.loads(args.table.read_text())))
        return []
    records = []
    for items in args.items:
        records.append(run(items, args.scratch, args.keep, args.source))
        print(json.dumps(records[-1], indent=2), flush=True)
        if args.json:
            args.json.write_text(json.dumps(records, indent=2) + "\n")
    print(markdown_table(records))
    return records


if __name__ == "__main__":
    main()
