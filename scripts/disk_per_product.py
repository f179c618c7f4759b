"""Bytes per product on disk of build folders: what is pushed, the serving cache, or an old-layout folder.

    python scripts/disk_per_product.py embeddings/*

Loads each folder first (which derives its serving cache when missing). "Pushed" is every file
`HfApi.upload_folder` / `hf upload` sends (huggingface_hub's own ignore rules); "cache" is what the
app memory-maps. An old-layout folder (Arrow files from `save_to_disk`) is counted whole.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # run as a script from anywhere, like build_index.py

from huggingface_hub.utils import filter_repo_objects  # noqa: E402
from huggingface_hub.utils._paths import DEFAULT_IGNORE_PATTERNS  # noqa: E402

from lookalike.index.serving_cache import CACHE_DIR  # noqa: E402
from lookalike.index.store import METADATA_FILE, is_legacy_layout, load_index  # noqa: E402


def sizes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def main(folders: list[str]) -> int:
    print(f"{'build':<32} {'products':>8} {'pushed B/product':>17} {'cache B/product':>16} {'total B/product':>16}")
    for name in folders:
        folder = Path(name)
        files = sizes(folder)
        n = json.loads((folder / METADATA_FILE).read_text(encoding="utf-8"))["n_items"]
        if is_legacy_layout(folder):
            print(f"{name:<32} {n:>8} {'(old layout)':>17} {'':>16} {sum(files.values()) / n:>16,.0f}")
            continue
        load_index(folder)
        files = sizes(folder)
        pushed = sum(files[f] for f in filter_repo_objects(files, ignore_patterns=DEFAULT_IGNORE_PATTERNS))
        cache = sum(size for f, size in files.items() if f.startswith(CACHE_DIR.as_posix() + "/"))
        print(f"{name:<32} {n:>8} {pushed / n:>17,.0f} {cache / n:>16,.0f} {(pushed + cache) / n:>16,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
