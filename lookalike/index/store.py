"""A build folder (a Hub dataset repository): its metadata, loading it for search, publishing it."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from lookalike.backbones.preprocessing import Preprocessing
from lookalike.hub import upload_or_explain
from lookalike.index.ann import ANN_FILE
from lookalike.index.exact import EVERY_ROW, Metric, SearchResults
from lookalike.index.neighbours import NEIGHBOURS_FILE, Neighbours, data_digest, read_neighbours
from lookalike.index.search import SearchMethod, VectorSearch
from lookalike.index.serving_cache import DATA_DIR, open_cache, release_mapped_pages, served_matrix, shard_files
from lookalike.index.writer import METADATA_FILE, IndexWriter, table_product_columns

# Rows per block when rows already in memory are written out.
BLOCK_ROWS = 4096


class MissingIndexError(FileNotFoundError):
    """No complete embeddings dataset where one was expected."""


class LegacyLayoutError(MissingIndexError):
    """A build folder in the layout written before builds were Hub dataset repositories."""


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
    search: SearchMethod = field(default_factory=SearchMethod)  # exact, or an approximate index's settings
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def to_json(self) -> str:
        values = asdict(self)
        values["preprocessing"] = self.preprocessing.to_dict()
        values["search"] = self.search.to_dict()
        return json.dumps(values, indent=2)

    @classmethod
    def from_json(cls, text: str) -> IndexMetadata:
        values = json.loads(text)
        values["preprocessing"] = Preprocessing.from_dict(values["preprocessing"])
        # Folders built before SearchMethod recorded a name and, apart, the ANN settings.
        legacy = {"ann": values.pop("ann", None), "trained_on": values.pop("ann_trained_on", None)}
        values["search"] = SearchMethod.from_dict(values.get("search", {"method": "exact"}), **legacy)
        return cls(**values)

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
    embeddings: np.ndarray  # read-only: in memory for a small build, else memory-mapped (served_matrix)
    metadata: IndexMetadata
    search: VectorSearch  # exact or approximate, as the metadata says (SearchMethod.open)
    neighbours: Neighbours | None = None  # each row's nearest rows, precomputed by the build
    # Rows' pages are released at most this often: finding the maps (/proc/self/maps) takes ~3 ms, more
    # than an answer should pay each time, while a second's answers leave a few MB resident at most.
    release_interval_seconds: float = 1.0
    _released_at: float = field(default=float("-inf"), repr=False)

    # Read as whole Arrow columns: `datasets` 5 hands out a lazy column read row by row (20 s at 1M).
    @property
    def ids(self) -> list[str]:
        return self.dataset.data.table.column("id").to_pylist()

    @property
    def labels(self) -> list[str]:
        return self.dataset.data.table.column("label").to_pylist()

    @property
    def splits(self) -> list[str]:
        return self.dataset.data.table.column("split").to_pylist()

    def __len__(self) -> int:
        return len(self.embeddings)

    def release_row_pages(self, now: bool = False) -> None:
        """Take the rows' pages that reading them mapped out of the resident set (`release_mapped_pages`):
        a result reads a few rows of the Arrow file, the page cache keeps them for the next. Done at most
        every `release_interval_seconds` unless `now`."""
        if not now and time.monotonic() - self._released_at < self.release_interval_seconds:
            return
        self._released_at = time.monotonic()
        for cache_file in getattr(self.dataset, "cache_files", ()):
            release_mapped_pages(Path(cache_file["filename"]))

    @property
    def search_method(self) -> str:
        return self.metadata.search.name

    def top_k(self, queries: np.ndarray, k: int, metric: Metric | str = Metric.COSINE, rows=EVERY_ROW) -> SearchResults:
        """The `VectorSearch.top_k` contract over these embeddings, by the search the build chose."""
        return self.search.top_k(queries, k, metric, rows)


def save_index(rows, metadata: IndexMetadata, output_dir: str | Path, licence: str = "other") -> Path:
    """Write rows held in memory (a `datasets.Dataset` or Arrow table of the build columns) as a build folder.

    Builds stream their rows through `IndexWriter` instead; this is for rows that are already here.
    """
    table = rows.data.table if hasattr(rows, "data") else rows
    columns = table_product_columns(table.schema) or None
    writer = IndexWriter(Path(output_dir), table.num_rows, metadata.embedding_dim, product_columns=columns)
    for batch in table.to_batches(max_chunksize=BLOCK_ROWS):
        writer.write(pa.Table.from_batches([batch]))
    return writer.finish(metadata, licence)


def is_legacy_layout(path: Path) -> bool:
    """A folder written by `Dataset.save_to_disk` (Arrow files, embeddings.parquet) before the Hub layout."""
    return (path / "state.json").is_file() and not (path / DATA_DIR).is_dir()


def load_index(path: str | Path) -> EmbeddingIndex:
    """Load a build folder written by `build_index.py` (or downloaded from the Hub)."""
    import datasets

    path = Path(path)
    retired = path.with_name(f".{path.name}.old")
    if not path.exists() and retired.exists():
        path = retired  # a swap was interrupted between its renames: read the old copy, never rename it
    metadata_file = path / METADATA_FILE
    if not metadata_file.is_file():
        raise MissingIndexError(
            f"No embeddings at {path}. Build them first: "
            f"python build_index.py --model efficientnet-lite0 --output {path}"
        )
    if is_legacy_layout(path):
        raise LegacyLayoutError(
            f"{path} is in the old layout (Arrow files written by save_to_disk). Convert it in place, keeping "
            f"its vectors: python -m lookalike.index.legacy {path} (or rebuild it: python build_index.py "
            f"--output {path})"
        )
    metadata = IndexMetadata.from_json(metadata_file.read_text(encoding="utf-8"))
    if not shard_files(path):
        raise MissingIndexError(
            f"{path} has no {DATA_DIR}/*.parquet files: the folder is incomplete. Rebuild it: "
            f"python build_index.py --output {path} (or download it again)"
        )
    cache = open_cache(path, metadata.embedding_dim)
    dataset = datasets.Dataset.from_file(str(cache.rows))  # memory-mapped: rows are read when asked for
    embeddings = served_matrix(cache.embeddings)  # one copy for the search and the recommender
    if embeddings.shape != (len(dataset), metadata.embedding_dim):
        raise MissingIndexError(
            f"{path} holds {embeddings.shape} embeddings for {len(dataset)} rows of {metadata.embedding_dim}: "
            f"the folder is damaged. Rebuild it: python build_index.py --output {path}"
        )
    try:
        search = metadata.search.open(path, embeddings)
    except FileNotFoundError as error:
        raise MissingIndexError(f"{error} Rebuild it: python build_index.py --output {path}") from None
    neighbours = read_neighbours(path, len(dataset), data_digest(shard_files(path)))
    return EmbeddingIndex(path, dataset, embeddings, metadata, search, neighbours)


def find_indexes(root: str | Path) -> list[Path]:
    """Every embeddings folder directly below `root`, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / METADATA_FILE).is_file() and not p.name.startswith("."))


def push_index_to_hub(path: str | Path, repo_id: str, private: bool = False) -> str:
    """Upload the build folder as it is to a Hub dataset repository (`hf upload REPO DIR --repo-type dataset`).

    The serving cache under `.cache/huggingface/` is never uploaded (huggingface_hub's default ignore
    patterns); data files of an earlier, larger build that this one no longer has are deleted.
    """
    from huggingface_hub import HfApi

    path = Path(path)
    model_id = load_index(path).metadata.model_id  # refuses to publish a damaged or old-layout folder

    def upload() -> None:
        api = HfApi()
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(
            folder_path=str(path),
            repo_id=repo_id,
            repo_type="dataset",
            delete_patterns=[f"{DATA_DIR}/*.parquet", ANN_FILE, NEIGHBOURS_FILE],
            commit_message=f"Lookalike catalog embeddings ({model_id})",
        )

    upload_or_explain("embeddings", path, repo_id, upload)
    return f"https://huggingface.co/datasets/{repo_id}"
