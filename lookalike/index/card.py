"""The dataset card (README.md) of a build folder: what the Hub shows and what `load_dataset` reads."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

CARD_FILE = "README.md"


def public_source(source: str) -> str:
    """A catalog source as a card may show it: a local folder by its name, never its full path."""
    return Path(source).name or source if Path(source).is_absolute() else source


def dataset_card(metadata, label_counts: Mapping[str, int], data_files: str, licence: str = "other") -> str:
    """YAML front-matter (licence, tags, the parquet files as the `train` split) and a body for people.

    `metadata` is the build's `store.IndexMetadata`.
    """
    p = metadata.preprocessing
    source = public_source(metadata.source)
    categories = ", ".join(f"{label} ({count:,})" for label, count in sorted(label_counts.items()))
    search = (
        f"approximate, FAISS IVF-SQ8 (`ann.faiss`, {metadata.search.ann.n_lists} cells)"
        if metadata.search.ann
        else "exact (every product compared)"
    )
    skipped = f" {len(metadata.skipped)} unreadable images were skipped." if metadata.skipped else ""
    split = (
        f"The source's own `{metadata.split_column}` column gave the train/test split."
        if metadata.split_column
        else f"Each category was split {1 - metadata.test_fraction:.0%} train / {metadata.test_fraction:.0%} test "
        f"with seed {metadata.split_seed}."
    )
    return f"""---
license: {licence}
tags:
- lookalike
- image-similarity
- embeddings
- image-retrieval
task_categories:
- image-feature-extraction
size_categories:
- {_size_category(metadata.n_items)}
configs:
- config_name: default
  data_files:
  - split: train
    path: {data_files}
---

# Lookalike catalog embeddings: {source} · {metadata.model_id}

{metadata.n_items:,} product photos of the catalog `{source}`, each with its category, a JPEG
thumbnail and a {metadata.embedding_dim}-dimensional unit embedding, for visual product search with
Lookalike (a photo in, the most similar products out).

Categories: {categories}.

## Backbone

- Model: `{metadata.model_id}`, weights fingerprint `{metadata.weights_fingerprint}`, run by
  {metadata.inference or "PyTorch"}.
- Preprocessing: shortest edge {p.resize_shortest_edge} ({p.resample}), centre crop {p.crop_size},
  mean {list(p.mean)}, std {list(p.std)}. A query photo must be embedded the same way: the app
  checks it against `lookalike.json`.
- Search: {search}.

## How it was built

`python build_index.py {source} --model {metadata.model_id}` on {metadata.created}. {split}{skipped}

| column | type | meaning |
|---|---|---|
| `id` | string | the product's id (its path in the catalog folder) |
| `label` | string | its category |
| `split` | string | `train` or `test`, for evaluation |
| `image` | image | JPEG thumbnail |
| `embedding` | float32[{metadata.embedding_dim}] | unit-length embedding (cosine = dot product) |
| `content_hash` | string | digest of the source image's bytes: a rebuild reuses the row while it matches |

## Load it

```python
from datasets import load_dataset

catalog = load_dataset("USER/NAME", split="train")  # this repository's id, or the local build folder
catalog[0]["id"], catalog[0]["label"], catalog[0]["embedding"][:4], catalog[0]["image"].size
```

Serve it with Lookalike's app, on a Hugging Face Space or locally:
`LOOKALIKE_EMBEDDINGS=USER/NAME python app.py`.
"""


def _size_category(n: int) -> str:
    for limit, name in [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]:
        if n < limit:
            return name
    return "1M<n<10M"
