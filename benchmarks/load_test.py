"""Bounded load test: many gradio_client users sending /recommend to a local app for a fixed time.

    python benchmarks/load_test.py --clients 16 --duration 60 --json benchmarks/load_test.json

Starts `python app.py` on 127.0.0.1 (or uses --url), then each client thread sends example photos
in turn until the time is up. Every answer is checked (K gallery items, K JSON results of the
right shape, best first); a request that errors, times out or answers wrongly counts as failed.
Reports p50/p95 latency and throughput of the correct answers. Not a test: it measures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from gradio_client import Client, handle_file

from lookalike.catalog import EXAMPLES_DIR, REPO_ROOT
from tests.local_server import running_app


@dataclass(frozen=True)
class LoadConfig:
    clients: int = 16
    duration_s: float = 60.0
    k: int = 8
    backbone: str = "efficientnet-lite0"

    def __post_init__(self) -> None:
        if self.clients < 1 or self.duration_s <= 0 or self.k < 1:
            raise ValueError(f"need clients >= 1, duration > 0 and k >= 1, got {self}")


@dataclass
class ClientTally:
    latencies_s: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def check_answer(answer, k: int) -> str | None:
    """Why an answer is wrong, or None if it is a correct /recommend answer for K results."""
    gallery, results, summary = answer
    if len(gallery) != k or not all(item.get("caption") for item in gallery):
        return f"gallery has {len(gallery)} items, expected {k} captioned"
    if len(results) != k or any(set(r) != {"id", "label", "score"} for r in results):
        return f"JSON results malformed: {results!r:.200}"
    scores = [r["score"] for r in results]
    if scores != sorted(scores, reverse=True):
        return f"results not best first: {scores}"
    if f"top {k}" not in summary:
        return f"summary unexpected: {summary!r:.200}"
    return None


def run_client(url: str, photos: list[Path], config: LoadConfig, deadline: float, offset: int) -> ClientTally:
    client, tally = Client(url, verbose=False), ClientTally()
    sent = offset
    while time.monotonic() < deadline:
        photo = photos[sent % len(photos)]
        sent += 1
        started = time.monotonic()
        try:
            answer = client.predict(handle_file(str(photo)), config.k, "cosine", config.backbone, api_name="/recommend")
            problem = check_answer(answer, config.k)
        except Exception as error:  # a lost or failed request is what we are counting
            problem = f"{type(error).__name__}: {error}"
        if problem:
            tally.failures.append(f"{photo.name}: {problem}")
        else:
            tally.latencies_s.append(time.monotonic() - started)
    return tally


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def run_load(url: str, config: LoadConfig) -> dict:
    photos = sorted(EXAMPLES_DIR.glob("*/*.jpg"))
    Client(url, verbose=False).predict(  # warm-up: first-call costs are not load
        handle_file(str(photos[0])), config.k, "cosine", config.backbone, api_name="/recommend"
    )
    started = time.monotonic()
    deadline = started + config.duration_s
    with ThreadPoolExecutor(config.clients) as pool:
        futures = [pool.submit(run_client, url, photos, config, deadline, i * 3) for i in range(config.clients)]
        tallies = [future.result() for future in futures]
    wall_s = time.monotonic() - started
    latencies = sorted(t for tally in tallies for t in tally.latencies_s)
    failures = [f for tally in tallies for f in tally.failures]
    return {
        **asdict(config),
        "cpu_count": os.cpu_count(),
        # Other work on the machine skews every figure: read them beside this.
        "load_average_1min": round(os.getloadavg()[0], 2),
        "answered_correctly": len(latencies),
        "failed": len(failures),
        "failures_sample": failures[:10],
        "wall_s": round(wall_s, 2),
        "throughput_rps": round(len(latencies) / wall_s, 2),
        "latency_p50_s": round(percentile(latencies, 50), 3) if latencies else None,
        "latency_p95_s": round(percentile(latencies, 95), 3) if latencies else None,
        "latency_max_s": round(latencies[-1], 3) if latencies else None,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=LoadConfig.clients, help="concurrent gradio_client users")
    parser.add_argument("--duration", type=float, default=LoadConfig.duration_s, help="seconds of load")
    parser.add_argument("--k", type=int, default=LoadConfig.k, help="recommendations per request")
    parser.add_argument("--url", help="an app already running (default: start app.py on a free port)")
    parser.add_argument("--embeddings", type=Path, default=REPO_ROOT / "embeddings", help="what the started app serves")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = LoadConfig(clients=args.clients, duration_s=args.duration, k=args.k)
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "app.log"
        with nullcontext(args.url) if args.url else running_app(args.embeddings, log_path=log) as url:
            print(f"{config.clients} clients for {config.duration_s:.0f} s against {url} ...", flush=True)
            figures = run_load(url, config)
    print(
        f"answered correctly {figures['answered_correctly']}, failed {figures['failed']} in {figures['wall_s']} s: "
        f"{figures['throughput_rps']} requests/s, latency p50 {figures['latency_p50_s']} s, "
        f"p95 {figures['latency_p95_s']} s, max {figures['latency_max_s']} s "
        f"(load average {figures['load_average_1min']})"
    )
    for failure in figures["failures_sample"]:
        print(f"  failed: {failure}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 1 if figures["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
