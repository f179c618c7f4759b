"""Where exported backbones are cached, and the manifest that lets a restart serve one without torch.

An export (ONNX file, OpenVINO IR) is named by the backbone and its weights fingerprint. Beside it a
manifest records what the index check needs (embedding size, preprocessing) and a signature of the
weights' source files; while that signature holds, the backbone can be rebuilt from the manifest
alone and its torch module is only built if something asks for it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from lookalike.backbones.preprocessing import Preprocessing

MANIFEST_FOLDER = "backbones"
# The model code that turns weights into numbers: a new version may compute differently.
_CODE_PACKAGES = ("torch", "transformers")


def default_cache_dir() -> Path:
    """Where exported models are kept: $LOOKALIKE_CACHE, else ~/.cache/lookalike."""
    return Path(os.environ.get("LOOKALIKE_CACHE", Path.home() / ".cache" / "lookalike"))


def export_stem(name: str, fingerprint: str) -> str:
    """The file name (without suffix) of every export of these weights."""
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', name)}-{fingerprint}"


def source_signature(files: list[Path]) -> str:
    """A cheap signature of the weights' files (path, size, mtime) and the model code's versions.

    Reading stat() instead of hashing the weights keeps a restart fast; any rewrite of a file changes it.
    """
    parts = []
    for path in sorted(files):
        stat = Path(path).stat()
        parts.append(f"{Path(path).resolve()}:{stat.st_size}:{stat.st_mtime_ns}")
    for package in _CODE_PACKAGES:
        try:
            parts.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{package} missing")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Manifest:
    """What is known of a backbone without building it: enough to check it against an index."""

    name: str
    fingerprint: str
    embedding_dim: int
    preprocessing: Preprocessing
    signature: str


def manifest_path(cache_dir: Path, name: str, fingerprint: str) -> Path:
    return Path(cache_dir) / MANIFEST_FOLDER / f"{export_stem(name, fingerprint)}.json"


def write_manifest(cache_dir: Path, manifest: Manifest) -> None:
    path = manifest_path(cache_dir, manifest.name, manifest.fingerprint)
    path.parent.mkdir(parents=True, exist_ok=True)
    values = {**manifest.__dict__, "preprocessing": manifest.preprocessing.to_dict()}
    staged = path.with_suffix(f".{os.getpid()}.tmp")
    staged.write_text(json.dumps(values, indent=2), encoding="utf-8")
    os.replace(staged, path)


def read_manifest(cache_dir: Path, name: str, fingerprint: str, signature: str) -> Manifest | None:
    """The manifest of these weights, or None when there is none or the weights' files changed since."""
    path = manifest_path(cache_dir, name, fingerprint)
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
        manifest = Manifest(**{**values, "preprocessing": Preprocessing.from_dict(values["preprocessing"])})
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return manifest if manifest.signature == signature else None
