"""The dataset card (README.md) of a build folder: what the Hub shows and what `load_dataset` reads."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

CARD_FILE = "README.md"
# What the product columns hold (Google Merchant Center attribute names); others are the source's own.
COLUMN_MEANINGS = {
    "product_id": "the product this photo shows (a product with several photos has several rows)",
    "title": "the product's name",
    "description": "its description",
    "link": "its page in the shop (http or https only)",
    "image_link": "its main image as the feed gave it",
    "price": "its price",
    "sale_price": "its sale price, when on sale",
    "currency": "the prices' currency (ISO 4217)",
    "availability": "in_stock, out_of_stock, preorder or backorder",
    "item_group_id": "its variant group: sizes and colours of one product share it",
}


def public_source(source: str) -> str:
    """A catalog source as a card may show it: a local folder by its name, never its full path."""
    return Path(source).name or source if Path(source).is_absolute() else source


def dataset_card(
    metadata,
    label_counts: Mapping[str, int],
    data_files: str,
    licence: str = "other",
    product_columns: Mapping[str, object] | None = None,
) -> str:
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
    product_rows = "".join(
        f"| `{name}` | {data_type} | {COLUMN_MEANINGS.get(name, 'a product attribute of the source')} |\n"
        for name, data_type in (product_columns or {}).items()
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
| `id` | string | the photo's id: its product's id, `#2`, `#3`... for its further photos (a folder: its path) |
| `label` | string | its category |
| `split` | string | `train` or `test`, for evaluation |
| `image` | image | JPEG thumbnail |
| `embedding` | float32[{metadata.embedding_dim}] | unit-length embedding (cosine = dot product) |
| `content_hash` | string | digest of the source image's bytes: a rebuild reuses the row while it matches |
{product_rows}
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
