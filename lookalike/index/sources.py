"""Where the app's builds come from: `LOOKALIKE_EMBEDDINGS` as local folders and Hub dataset ids.

LOOKALIKE_EMBEDDINGS=embeddings                      a folder of build folders
LOOKALIKE_EMBEDDINGS=embeddings/efficientnet-lite0   one build folder
LOOKALIKE_EMBEDDINGS=USER/name                       a pushed build (a Hub dataset repository)
LOOKALIKE_EMBEDDINGS=USER/shop-lite0,embeddings      several, comma-separated
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lookalike.index.store import METADATA_FILE, find_indexes

logger = logging.getLogger(__name__)

Download = Callable[[str], Path]


@dataclass
class EmbeddingSources:
    """The builds to serve, by the name the app shows, and why any part of the setting gave none."""

    builds: dict[str, Path] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def download_dataset(repo_id: str) -> Path:
    """A Hub dataset repository's snapshot in the Hugging Face cache (reused offline once fetched)."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id, repo_type="dataset"))


def looks_like_hub_id(spec: str) -> bool:
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "~")) and " " not in spec


def resolve_embeddings(spec: str | Path, download: Download = download_dataset) -> EmbeddingSources:
    """Every build a `LOOKALIKE_EMBEDDINGS` value names; an existing local path wins over a Hub id.

    A Hub build is named by its repo id, a local one by its folder name.
    """
    sources = EmbeddingSources()
    for part in (p.strip() for p in str(spec).split(",")):
        if not part:
            continue
        path = Path(part).expanduser()
        if (path / METADATA_FILE).is_file():
            _add(sources, path.name, path)
        elif path.is_dir():
            found = find_indexes(path)
            if not found:
                sources.problems.append(f"{part}: no build folders in it. Build one: python build_index.py")
            for build in found:
                _add(sources, build.name, build)
        elif looks_like_hub_id(part):
            _add_hub_build(sources, part, download)
        else:
            sources.problems.append(
                f"{part}: no such folder, and not a Hub dataset id (USER/name). Build one: "
                f"python build_index.py --output {part}"
            )
    return sources


def _add_hub_build(sources: EmbeddingSources, repo_id: str, download: Download) -> None:
    try:
        folder = download(repo_id)
    except Exception as error:  # offline, unknown repo, no access: all mean "not available here"
        logger.warning("Cannot fetch %s: %s", repo_id, error)
        sources.problems.append(
            f"{repo_id}: could not fetch this Hub dataset, and it is not in the local Hugging Face cache "
            f"({type(error).__name__}). Start the app once with network access (and HF_TOKEN for a private "
            f"dataset), or download it where the Hub is reachable with `hf download {repo_id} --repo-type "
            "dataset` and copy the cache, or point LOOKALIKE_EMBEDDINGS at a local build folder "
            f"(there is no folder {repo_id} here)."
        )
        return
    if not (folder / METADATA_FILE).is_file():
        sources.problems.append(
            f"{repo_id}: this Hub dataset has no {METADATA_FILE}, so it is not a Lookalike build. Push one with "
            f"python build_index.py FOLDER --output DIR --push-to-hub {repo_id}"
        )
        return
    _add(sources, repo_id, folder)


def _add(sources: EmbeddingSources, name: str, path: Path) -> None:
    if name in sources.builds and sources.builds[name] != path:
        # Two folders of the same name: told apart by their parent folder's name (never the server's
        # whole path, which the page would show).
        name = f"{path.parent.name}/{name}"
    sources.builds[name] = path
