"""What the server's BLAS thread share (`runtime.share_blas_threads`) costs and buys, side by side in one run.

    python benchmarks/blas_threads.py [--items 200000] [--json FILE]

In-process, on random unit vectors of the default backbone's 1280 dimensions:
  - a lone exact search over `--items` products (the largest exact builds are just under the ANN
    threshold): with every core in BLAS, and with one thread, the share of each of two concurrent searches;
  - a by-id answer's pairwise product of 32 candidates (`collapse_near_duplicates`), run by two threads at
    once as the server's two model slots do: CPU time per product, the process's, all threads.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from benchmarks.figures import load_average, publish
from lookalike.index.exact import ExactSearch

DIM, K, CANDIDATES = 1280, 10, 32


def unit_rows(n: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, DIM), dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def lone_search_ms(search: ExactSearch, query: np.ndarray, repeats: int = 20) -> float:
    search.top_k(query, K)  # warm
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        search.top_k(query, K)
        times.append(time.perf_counter() - started)
    return round(1000 * statistics.median(times), 1)


def pairwise_cpu_us(candidates: np.ndarray, per_thread: int = 2000) -> float:
    """CPU time of the whole process per pairwise product, two threads running them at once."""

    def work() -> None:
        for _ in range(per_thread):
            (candidates @ candidates.T).tolist()

    before = resource.getrusage(resource.RUSAGE_SELF)
    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return round(1e6 * cpu / (2 * per_thread), 1)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    result: dict[str, object] = {"load_average_start": load_average(), "cores": cores}
    search, query = ExactSearch(unit_rows(args.items, 0)), unit_rows(1, 1)
    candidates = unit_rows(CANDIDATES, 2)
    for threads in (cores, 1):
        with threadpool_limits(threads, user_api="blas"):
            result[f"blas_threads_{threads}"] = {
                f"lone_exact_search_{args.items}_ms": lone_search_ms(search, query),
                f"pairwise_{CANDIDATES}_cpu_us_two_threads_at_once": pairwise_cpu_us(candidates),
            }
    result["load_average_end"] = load_average()
    return publish(result, args.json)


if __name__ == "__main__":
    main()
