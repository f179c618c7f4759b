"""Each catalog row's nearest rows, computed once at build time: "similar to product X" without a search.

A product's recommendations cannot change between builds, so the build writes every row's
`PRECOMPUTED` nearest rows (cosine, the product's own photos and variants left out) beside the data
(`neighbours.parquet`, pushed with the folder). The recommender folds them into products the way it
folds a live search's candidates, and searches live only for what they cannot answer (filters,
feedback, K beyond them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lookalike.index.exact import Metric, RowFilter
from lookalike.index.products import ProductTable

NEIGHBOURS_FILE = "neighbours.parquet"
# Candidate rows kept per row: enough for the app's largest K (24) after folding a product's other
# photos, its variants and near-identical copies; 48 x 8 bytes a row.
PRECOMPUTED = 48
DIGEST_KEY = "lookalike_data_digest"
# Queries searched at once while they are computed.
BLOCK_ROWS = 1024


@dataclass(frozen=True)
class Neighbours:
    """Per row, its nearest other-group rows best first (`rows`, -1 where there are fewer) and their cosines."""

    rows: np.ndarray  # (n, PRECOMPUTED) int32
    scores: np.ndarray  # (n, PRECOMPUTED) float32

    def of(self, row: int) -> tuple[list[int], list[float]]:
        kept = self.rows[row] >= 0
        return self.rows[row][kept].tolist(), self.scores[row][kept].tolist()


def compute_neighbours(search, vectors, products: ProductTable, n: int = PRECOMPUTED) -> Neighbours:
    """Every row's `n` nearest rows through `search` (the build's own: exact or approximate), leaving out
    the rows of its own product group; `vectors` reads the build's rows by slice."""
    total = len(products.groups)
    rows = np.full((total, n), -1, dtype=np.int32)
    scores = np.zeros((total, n), dtype=np.float32)
    for start in range(0, total, BLOCK_ROWS):
        stop = min(total, start + BLOCK_ROWS)
        exclude = [products.group_rows(row) for row in range(start, stop)]
        # As many as every query of the block can get (a tiny catalog has fewer than n other rows).
        k = min(n, total - max((len(e) for e in exclude), default=0))
        if k <= 0:
            continue
        found = search.top_k(
            np.asarray(vectors[start:stop], dtype=np.float32), k, Metric.COSINE, RowFilter(None, exclude)
        )
        rows[start:stop, :k] = found.indices
        scores[start:stop, :k] = found.scores
    return Neighbours(rows, scores)


def write_neighbours(neighbours: Neighbours, folder: Path, data_digest: str) -> Path:
    """Into `folder`, stamped with the digest that names the build's data files (`writer.IndexWriter`):
    neighbours left behind by another build (an upload that kept an old file) are never read as these."""
    n = neighbours.rows.shape[1]
    table = pa.table(
        {
            "neighbours": pa.FixedSizeListArray.from_arrays(pa.array(neighbours.rows.ravel()), n),
            "scores": pa.FixedSizeListArray.from_arrays(pa.array(neighbours.scores.ravel()), n),
        }
    ).replace_schema_metadata({DIGEST_KEY: data_digest})
    path = Path(folder) / NEIGHBOURS_FILE
    pq.write_table(table, path)
    return path


def read_neighbours(folder: Path, n_rows: int, data_digest: str) -> Neighbours | None:
    """The build's precomputed neighbours, None if it has none (older builds, or turned off) or they were
    computed for other rows."""
    path = Path(folder) / NEIGHBOURS_FILE
    if not path.is_file():
        return None
    table = pq.read_table(path)
    if table.num_rows != n_rows or (table.schema.metadata or {}).get(DIGEST_KEY.encode()) != data_digest.encode():
        return None
    width = table.schema.field("neighbours").type.list_size
    rows = np.asarray(table.column("neighbours").combine_chunks().flatten(), dtype=np.int32).reshape(-1, width)
    scores = np.asarray(table.column("scores").combine_chunks().flatten(), dtype=np.float32).reshape(-1, width)
    return Neighbours(rows, scores)


def data_digest(shards: list[Path]) -> str:
    """The digest in the names of a build's data files (`train-<digest>-00000-of-00001.parquet`)."""
    names = {shard.name.split("-")[1] for shard in shards if shard.name.count("-") >= 3}
    return names.pop() if len(names) == 1 else ""
