"""Peak memory of `build_index.py` against catalog size: the streaming build should stay flat.

    python benchmarks/build_memory.py --items 1000 4000 [--repo .]

Writes synthetic product photos (noise-textured 320x320 JPEGs, so thumbnails do not compress
away; 10 categories) into a temporary folder, builds each catalog size with the colour-histogram
backbone (cheap to run, so the memory of the rows dominates) in a fresh process, and prints its
wall time and peak RSS. `--repo` runs another checkout's `build_index.py`, to compare versions.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

# Runs build_index.py as a child and reports the child's peak resident set (Linux: kB).
MEASURE = (
    "import resource, subprocess, sys; "
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
    "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def write_catalog(root: Path, n_items: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for item in range(n_items):
        category = root / f"category-{item % 10}"
        category.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 256, size=3)
        pixels = np.clip(base + rng.normal(0, 60, size=(320, 320, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(category / f"product-{item:07d}.jpg", quality=85)


def measure(repo: Path, catalog: Path, output: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one from-scratch build in a fresh process."""
    command = [sys.executable, "build_index.py", str(catalog), "--model", "color-histogram", "--output", str(output)]
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, *command], cwd=repo, capture_output=True, text=True, check=True
    )
    code, peak_kb = result.stdout.split()
    if code != "0":
        raise RuntimeError(f"build failed with code {code}: {result.stderr}")
    return time.perf_counter() - started, int(peak_kb) / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, nargs="+", default=[1000, 4000])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args(argv)
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    print(f"{'products':>9} {'build s':>8} {'peak RSS MB':>12}")
    with tempfile.TemporaryDirectory() as scratch:
        for n_items in args.items:
            catalog = Path(scratch) / f"catalog-{n_items}"
            write_catalog(catalog, n_items)
            seconds, peak_mb = measure(args.repo.resolve(), catalog, Path(scratch) / f"build-{n_items}")
            print(f"{n_items:>9,} {seconds:>8.1f} {peak_mb:>12,.0f}")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
