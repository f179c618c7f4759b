"""Embeddings as a `datasets` dataset on disk: metadata, atomic writes, loading, Hub publishing."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from lookalike.backbones.preprocessing import Preprocessing
from lookalike.hub import upload_or_explain
from lookalike.index.ann import ANN_FILE, ANN_SEARCH, EXACT_SEARCH, AnnConfig, AnnIndex
from lookalike.index.exact import Metric, SearchResults, top_k

METADATA_FILE = "lookalike.json"
PARQUET_FILE = "embeddings.parquet"
# The embedding column again as one float32 matrix, memory-mapped by readers: every process serving
# the folder shares the page cache instead of holding its own copy (5.1 GB at 1M items).
EMBEDDINGS_FILE = "embeddings.npy"


class MissingIndexError(FileNotFoundError):
    """No complete embeddings dataset where one was expected."""


class IndexMismatchError(ValueError):
    """Embeddings and a backbone that do not belong together."""


@dataclass(frozen=True)
class IndexMetadata:
    """What produced a set of embeddings; a query must be embedded the same way."""

    model_id: str
    embedding_dim: int
    preprocessing: Preprocessing
    weights_fingerprint: str
    source: str
    split_seed: int
    test_fraction: float
    n_items: int
    split_column: str | None = None  # set when the source's own split was kept instead of the seeded one
    skipped: list[dict[str, str]] = field(default_factory=list)
    inference: str | None = None  # what ran the model (openvino, onnx, torch, ...); None: built before it was recorded
    precision: str = "fp32"  # the model's arithmetic: "fp32" (exact), or the opt-in "bf16"; older builds were fp32
    search: str = EXACT_SEARCH  # how queries search these embeddings: "exact", or "ivf-sq8" with ANN_FILE
    ann: dict[str, int] | None = None  # the AnnConfig of ANN_FILE, when there is one
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def to_json(self) -> str:
        values = asdict(self)
        values["preprocessing"] = self.preprocessing.to_dict()
        return json.dumps(values, indent=2)

    @classmethod
    def from_json(cls, text: str) -> IndexMetadata:
        values = json.loads(text)
        values["preprocessing"] = Preprocessing.from_dict(values["preprocessing"])
        return cls(**values)

    @property
    def ann_config(self) -> AnnConfig | None:
        return AnnConfig(**self.ann) if self.ann else None

    def check_matches(self, model_id: str, embedding_dim: int, preprocessing: Preprocessing, fingerprint: str) -> None:
        """Raise IndexMismatchError unless a backbone embeds exactly as these embeddings were."""
        differences = [
            f"{what}: embeddings have {ours!r}, backbone has {theirs!r}"
            for what, ours, theirs in [
                ("model", self.model_id, model_id),
                ("embedding size", self.embedding_dim, embedding_dim),
                ("preprocessing", self.preprocessing, preprocessing),
                ("weights", self.weights_fingerprint, fingerprint),
            ]
            if ours != theirs
        ]
        if differences:
            raise IndexMismatchError(
                "These embeddings were not made by this backbone ("
                + "; ".join(differences)
                + f"). Either load them with --model {self.model_id}, or rebuild them for this backbone: "
                f"python build_index.py --model {model_id} --output DIR"
            )


@dataclass
class EmbeddingIndex:
    """A loaded embeddings dataset: rows (id, label, split, image), the matrix, and metadata."""

    path: Path
    dataset: object  # datasets.Dataset; typed loosely to keep `datasets` out of import time
    embeddings: np.ndarray  # read-only, memory-mapped when the folder has EMBEDDINGS_FILE
    metadata: IndexMetadata
    ann: AnnIndex | None = None  # the approximate index, when the build wrote one

    @property
    def ids(self) -> list[str]:
        return self.dataset["id"]

    @property
    def labels(self) -> list[str]:
        return self.dataset["label"]

    @property
    def splits(self) -> list[str]:
        return self.dataset["split"]

    def __len__(self) -> int:
        return len(self.embeddings)

    @property
    def search_method(self) -> str:
        return ANN_SEARCH if self.ann is not None else EXACT_SEARCH

    def top_k(
        self,
        queries: np.ndarray,
        k: int,
        metric: Metric | str = Metric.COSINE,
        exclude: Sequence[Sequence[int]] | None = None,
        allowed: np.ndarray | None = None,
    ) -> SearchResults:
        """`search.top_k` over these embeddings, through the approximate index when there is one."""
        if self.ann is None:
            return top_k(self.embeddings, queries, k, metric, exclude, allowed)
        return self.ann.top_k(queries, k, metric, exclude, allowed)


def save_index(dataset, metadata: IndexMetadata, output_dir: str | Path) -> Path:
    """Write dataset + metadata to a temporary sibling folder, then swap it into place.

    A reader (or a crash) only ever sees the old complete folder or the new complete one.
    """
    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = output_dir.with_name(f".{output_dir.name}.writing")
    shutil.rmtree(staging, ignore_errors=True)
    dataset.save_to_disk(str(staging))
    # The same rows as one parquet file, for tools that read parquet (pandas, DuckDB, the Hub viewer).
    dataset.to_parquet(str(staging / PARQUET_FILE))
    embeddings = _write_embedding_matrix(dataset, metadata.embedding_dim, staging / EMBEDDINGS_FILE)
    if metadata.ann_config is not None:
        AnnIndex.build(embeddings, metadata.ann_config).save(staging / ANN_FILE)
    (staging / METADATA_FILE).write_text(metadata.to_json())
    _swap_into_place(staging, output_dir)
    return output_dir


def _write_embedding_matrix(dataset, dim: int, path: Path, batch_rows: int = 10_000) -> np.ndarray:
    """Copy the embedding column into a .npy file batch by batch; return it memory-mapped."""
    matrix = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(len(dataset), dim))
    rows = dataset.with_format("numpy", columns=["embedding"])
    for start in range(0, len(dataset), batch_rows):
        matrix[start : start + batch_rows] = rows[start : start + batch_rows]["embedding"]
    matrix.flush()
    del matrix
    return np.load(path, mmap_mode="r")


def _swap_into_place(staging: Path, target: Path) -> None:
    if not target.exists():
        os.rename(staging, target)
        return
    if _exchange(staging, target):
        shutil.rmtree(staging)
        return
    retired = target.with_name(f".{target.name}.old")
    shutil.rmtree(retired, ignore_errors=True)
    os.rename(target, retired)
    os.rename(staging, target)
    shutil.rmtree(retired)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux renameat2(RENAME_EXCHANGE); False where unsupported."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        rename_exchange, at_fdcwd = 2, -100
        return libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0
    except (OSError, AttributeError):
        return False


def load_index(path: str | Path) -> EmbeddingIndex:
    """Load an embeddings folder written by `build_index.py`."""
    import datasets

    path = Path(path)
    retired = path.with_name(f".{path.name}.old")
    if not path.exists() and retired.exists():
        os.rename(retired, path)  # a swap was interrupted between its two renames
    metadata_file = path / METADATA_FILE
    if not metadata_file.is_file():
        raise MissingIndexError(
            f"No embeddings at {path}. Build them first: "
            f"python build_index.py --model efficientnet-lite0 --output {path}"
        )
    metadata = IndexMetadata.from_json(metadata_file.read_text())
    dataset = datasets.load_from_disk(str(path))
    if (path / EMBEDDINGS_FILE).is_file():
        embeddings = np.load(path / EMBEDDINGS_FILE, mmap_mode="r")
    else:  # a folder written before EMBEDDINGS_FILE existed: decode the column into memory
        embeddings = np.asarray(dataset.with_format("numpy")["embedding"], dtype=np.float32)
        embeddings.flags.writeable = False  # read-only either way, so no caller comes to rely on writing
    if embeddings.shape != (len(dataset), metadata.embedding_dim):
        raise MissingIndexError(
            f"{path / EMBEDDINGS_FILE} holds {embeddings.shape} embeddings but the dataset has {len(dataset)} rows "
            f"of {metadata.embedding_dim}: the folder is damaged. Rebuild it: python build_index.py --output {path}"
        )
    ann = None
    if metadata.search == ANN_SEARCH:
        if not (path / ANN_FILE).is_file():
            raise MissingIndexError(
                f"{path} was built with an approximate index but {ANN_FILE} is missing. Rebuild it: "
                f"python build_index.py --output {path}"
            )
        ann = AnnIndex.load(path / ANN_FILE, metadata.ann_config, vectors=embeddings)
    return EmbeddingIndex(path=path, dataset=dataset, embeddings=embeddings, metadata=metadata, ann=ann)


def find_indexes(root: str | Path) -> list[Path]:
    """Every embeddings folder directly below `root`, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / METADATA_FILE).is_file() and not p.name.startswith("."))


def push_index_to_hub(path: str | Path, repo_id: str, private: bool = False) -> str:
    """Publish embeddings as a Hub dataset (parquet) plus the metadata file."""
    from huggingface_hub import HfApi

    index = load_index(path)

    def upload() -> None:
        index.dataset.push_to_hub(repo_id, private=private)
        HfApi().upload_file(
            path_or_fileobj=str(Path(path) / METADATA_FILE),
            path_in_repo=METADATA_FILE,
            repo_id=repo_id,
            repo_type="dataset",
        )

    upload_or_explain("embeddings", Path(path), repo_id, upload)
    return f"https://huggingface.co/datasets/{repo_id}"
