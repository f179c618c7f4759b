"""A build folder of N products derived from real embeddings, written by the project's own writer.

    python benchmarks/scale.py --items N --output DIR [--json FILE] [--source DIR] [--ann auto|on|off] [--no-products]

New vectors are real ones (the source build's) perturbed and mixed within their category:
normalize(v_i + u (v_j - v_i) + noise), i from a sub-category, j from the same category, u uniform in
[0, MIX], the noise Gaussian with each dimension's spread in the source. Each source category is split
by k-means into sub-categories ("fruit-3") so there are at least CATEGORIES of them; thumbnails are the
source rows' own bytes, copied. Each row is a product photo with a shop's metadata (`SyntheticProducts`:
title, price, link, brand, availability, colour, size): most products have one photo, every 10th has
three; variant groups of 1-5 products differ in size alone and share one look (sub-category and source
row i). All of it is a function of the row number and seed, so each block is made on its own. Rows go
through `IndexWriter` in blocks, as `build_index.py` writes them, so memory stays flat whatever N; the
metadata names the source's backbone, so `LOOKALIKE_EMBEDDINGS=DIR python app.py` serves it with that
backbone. Prints each stage's time, the peak RSS and how crowded the generated vectors are next to the
source's, as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from benchmarks.figures import publish
from lookalike.catalog.product import GROUP_ID, PRODUCT_COLUMNS, PRODUCT_ID
from lookalike.index.search import SearchMethod
from lookalike.index.store import load_index
from lookalike.index.writer import IndexWriter

DEFAULT_SOURCE = Path(__file__).resolve().parent.parent / "embeddings" / "efficientnet-lite0"
BLOCK_ROWS = 10_000
CATEGORIES = 112
# Tuned on the bundled catalog (mean pair cosine 0.26, median 10th-neighbour cosine 0.45 over its
# 273 products) so the generated set is about as crowded: see the figures this script prints.
MIX = 0.5
NOISE = 0.6
CROWDING_QUERIES = 200

# The shop's metadata. Photos per product and products per variant group, as repeating cycles.
PHOTOS_PER_PRODUCT = (1, 1, 1, 1, 1, 1, 1, 1, 1, 3)  # every 10th product has 3 photos
PRODUCTS_PER_GROUP = (1, 4, 1, 2, 1, 3, 1, 5, 1, 1)  # half the products come in several sizes
BRANDS = tuple(
    f"{stem}{ending}"
    for stem in ("Alto", "Brio", "Kiri", "Luma", "Mako", "Nord", "Oru", "Sena", "Tavi", "Vela")
    for ending in ("", "line", "works", " & Co", " Studio")
)
COLOURS = ("black", "white", "grey", "navy", "blue", "green", "red", "pink", "yellow", "orange", "brown", "beige")
SIZES = ("XS", "S", "M", "L", "XL", "XXL")  # more than a group's products: its variants' sizes all differ
# Availability by a product's hash modulo 20: 16 in stock (80 %), 3 out of stock, 1 preorder.
AVAILABILITIES = ("in_stock",) * 16 + ("out_of_stock",) * 3 + ("preorder",)
PRICE_RANGE = (5.0, 500.0)  # log-uniform: as many products under 50 as over
CURRENCY = "EUR"
LINK = "https://shop.example/p/{}"
PRODUCT_FIELDS = (PRODUCT_ID, "title", "link", "price", "currency", "availability", "brand", GROUP_ID, "color", "size")


@dataclasses.dataclass
class Source:
    """The real rows new ones are derived from: unit vectors, categories, thumbnail bytes."""

    vectors: np.ndarray  # (n, dim) float32
    labels: np.ndarray  # (n,) str
    splits: list[str]
    images: pa.Array  # binary, one JPEG per row
    metadata: object  # the source's IndexMetadata

    @classmethod
    def load(cls, folder: Path) -> Source:
        index = load_index(folder)
        table = index.dataset.data.table
        vectors = np.array(index.embeddings, dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        images = table.column("image").combine_chunks().field("bytes")
        labels = np.asarray(table.column("label").to_pylist())
        return cls(vectors, labels, table.column("split").to_pylist(), images, index.metadata)


@dataclasses.dataclass
class SubCategories:
    """Each source category split in k-means clusters: names and member rows, flat with offsets."""

    names: list[str]
    members: np.ndarray  # source rows of sub-category s at members[start[s] : start[s] + size[s]]
    start: np.ndarray
    size: np.ndarray
    parent_members: np.ndarray  # the same, for the whole source category of sub-category s
    parent_start: np.ndarray
    parent_size: np.ndarray

    @classmethod
    def split(cls, source: Source, target: int, seed: int = 0) -> SubCategories:
        categories, counts = np.unique(source.labels, return_counts=True)
        # Clusters in proportion to a category's size, at least one, never more than its rows.
        k = np.clip(np.round(target * counts / counts.sum()).astype(int), 1, counts)
        while k.sum() < target and (k < counts).any():
            grow = np.argmax(np.where(k < counts, counts / k, -1))
            k[grow] += 1
        names, members, parents = [], [], []
        for category, n_clusters in zip(categories, k, strict=True):
            rows = np.flatnonzero(source.labels == category)
            assignment = kmeans(source.vectors[rows], int(n_clusters), seed)
            for cluster in range(int(n_clusters)):
                inside = rows[assignment == cluster]
                if len(inside):
                    names.append(f"{category}-{cluster}")
                    members.append(inside)
                    parents.append(rows)
        size = np.array([len(m) for m in members])
        parent_size = np.array([len(p) for p in parents])
        return cls(
            names,
            np.concatenate(members),
            np.concatenate([[0], np.cumsum(size)[:-1]]),
            size,
            np.concatenate(parents),
            np.concatenate([[0], np.cumsum(parent_size)[:-1]]),
            parent_size,
        )


def kmeans(vectors: np.ndarray, k: int, seed: int, iterations: int = 20) -> np.ndarray:
    """Cluster of each row (spherical k-means, seeded from distinct rows); k <= len(vectors)."""
    rng = np.random.default_rng(seed)
    centres = vectors[rng.choice(len(vectors), k, replace=False)]
    assignment = np.zeros(len(vectors), dtype=np.int64)
    for _ in range(iterations):
        assignment = np.argmax(vectors @ centres.T, axis=1)
        for cluster in range(k):
            inside = vectors[assignment == cluster]
            if len(inside):
                centre = inside.sum(axis=0)
                centres[cluster] = centre / np.linalg.norm(centre)
    return assignment


def generate(
    source: Source, groups: SubCategories, rows: int, rng, spread: np.ndarray, anchors: tuple | None = None
) -> tuple:
    """`rows` new unit vectors and the sub-category and source row each came from.

    `anchors` (sub-category, source row), one pair per row, fixes them (a product's photos and variants
    look alike); else each row draws its own.
    """
    if anchors is None:
        group = rng.integers(len(groups.names), size=rows)
        i = groups.members[groups.start[group] + (rng.random(rows) * groups.size[group]).astype(np.int64)]
    else:
        group, i = anchors
    j = groups.parent_members[
        groups.parent_start[group] + (rng.random(rows) * groups.parent_size[group]).astype(np.int64)
    ]
    u = rng.random((rows, 1), dtype=np.float32) * MIX
    noise = rng.standard_normal((rows, source.vectors.shape[1]), dtype=np.float32) * (NOISE * spread)
    vectors = source.vectors[i] + u * (source.vectors[j] - source.vectors[i]) + noise
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors, group, i


def hashed(values: np.ndarray, salt: int, seed: int) -> np.ndarray:
    """A well-mixed uint64 per value (splitmix64 of value, salt and seed): a draw that any block can repeat."""
    z = (values.astype(np.uint64) << np.uint64(20)) ^ np.uint64((seed << 8) + salt)
    z = z + np.uint64(0x9E3779B97F4A7C15)  # wraps modulo 2**64, as splitmix64 means it to
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def cycle_parts(sizes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """For each position of a cycle cut in parts of `sizes`: its part and its offset within the part."""
    part = np.repeat(np.arange(len(sizes)), sizes)
    offset = np.concatenate([np.arange(size) for size in sizes])
    return part, offset


@dataclasses.dataclass(frozen=True)
class SyntheticProducts:
    """The product, photo number, variant group and variant number of some rows, from their row numbers."""

    rows: np.ndarray
    product: np.ndarray  # product number
    photo: np.ndarray  # 0 for a product's first photo
    group: np.ndarray  # variant group number
    variant: np.ndarray  # the product's place in its group
    seed: int = 0

    @classmethod
    def of_rows(cls, first_row: int, n: int, seed: int = 0) -> SyntheticProducts:
        rows = np.arange(first_row, first_row + n, dtype=np.int64)
        product_of, photo_of = cycle_parts(PHOTOS_PER_PRODUCT)
        cycle, in_cycle = np.divmod(rows, len(product_of))
        product = cycle * len(PHOTOS_PER_PRODUCT) + product_of[in_cycle]
        group_of, variant_of = cycle_parts(PRODUCTS_PER_GROUP)
        group_cycle, in_group_cycle = np.divmod(product, len(group_of))
        group = group_cycle * len(PRODUCTS_PER_GROUP) + group_of[in_group_cycle]
        return cls(rows, product, photo_of[in_cycle], group, variant_of[in_group_cycle], seed)

    def draw(self, values: np.ndarray, salt: int, n: int) -> np.ndarray:
        return (hashed(values, salt, self.seed) % np.uint64(n)).astype(np.int64)

    def anchors(self, groups: SubCategories) -> tuple[np.ndarray, np.ndarray]:
        """The sub-category and source row of each row's group: its products and photos look alike."""
        sub_category = self.draw(self.group, 1, len(groups.names))
        member = hashed(self.group, 2, self.seed) % groups.size[sub_category].astype(np.uint64)
        return sub_category, groups.members[groups.start[sub_category] + member.astype(np.int64)]

    def product_ids(self) -> list[str]:
        return [f"SKU{product:07d}" for product in self.product.tolist()]

    def row_ids(self) -> list[str]:
        """A product's id for its first photo, then `#2`, `#3`, as a feed's further photos."""
        return [
            f"SKU{product:07d}" if photo == 0 else f"SKU{product:07d}#{photo + 1}"
            for product, photo in zip(self.product.tolist(), self.photo.tolist(), strict=True)
        ]

    def columns(self, labels: list[str]) -> dict[str, pa.Array]:
        """The product columns (`PRODUCT_FIELDS`) as Arrow arrays of the schema's types."""
        brand = np.asarray(BRANDS, dtype=object)[self.draw(self.group, 3, len(BRANDS))]
        colour = np.asarray(COLOURS, dtype=object)[self.draw(self.group, 4, len(COLOURS))]
        size = np.asarray(SIZES, dtype=object)[(self.draw(self.group, 5, len(SIZES)) + self.variant) % len(SIZES)]
        availability = np.asarray(AVAILABILITIES, dtype=object)[self.draw(self.product, 6, len(AVAILABILITIES))]
        low, high = PRICE_RANGE
        uniform = (hashed(self.group, 7, self.seed) >> np.uint64(11)).astype(np.float64) / 2.0**53
        price = np.round(low * (high / low) ** uniform, 2)
        product_ids = self.product_ids()
        values = {
            PRODUCT_ID: product_ids,
            "title": [
                f"{b} {label} {group}" for b, label, group in zip(brand, labels, self.group.tolist(), strict=True)
            ],
            "link": [LINK.format(product_id) for product_id in product_ids],
            "price": price,
            "currency": [CURRENCY] * len(self.rows),
            "availability": availability.tolist(),
            "brand": brand.tolist(),
            GROUP_ID: [f"G{group:07d}" for group in self.group.tolist()],
            "color": colour.tolist(),
            "size": size.tolist(),
        }
        return {name: pa.array(values[name], type=PRODUCT_COLUMNS[name]) for name in PRODUCT_FIELDS}


class Crowding:
    """Mean pair cosine (from the running sum of vectors) and the median 10th-neighbour cosine of some
    rows over the whole set, accumulated block by block."""

    def __init__(self, queries: np.ndarray, neighbours: int = 10) -> None:
        self.queries, self.neighbours = queries, neighbours
        self.best = np.full((len(queries), neighbours + 1), -np.inf, dtype=np.float32)  # + the row itself
        self.total = np.zeros(queries.shape[1], dtype=np.float64)
        self.n = 0

    def add(self, vectors: np.ndarray) -> None:
        self.total += vectors.sum(axis=0, dtype=np.float64)
        self.n += len(vectors)
        scores = np.concatenate([self.best, self.queries @ vectors.T], axis=1)
        self.best = -np.sort(-scores, axis=1)[:, : self.neighbours + 1]

    def figures(self) -> dict[str, float]:
        mean_pair = (float(self.total @ self.total) - self.n) / max(1, self.n * (self.n - 1))
        return {
            "mean_pair_cosine": round(mean_pair, 3),
            f"median_{self.neighbours}th_neighbour_cosine": round(float(np.median(self.best[:, -1])), 3),
        }


def crowding_of(vectors: np.ndarray, n_queries: int, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    crowding = Crowding(vectors[rng.choice(len(vectors), min(n_queries, len(vectors)), replace=False)])
    crowding.add(vectors)
    return crowding.figures()


class TimedCache:
    """The writer's serving cache, timing what the writer spends in it."""

    def __init__(self, cache) -> None:
        self.cache, self.seconds = cache, 0.0

    def write(self, block):
        started = time.perf_counter()
        try:
            return self.cache.write(block)
        finally:
            self.seconds += time.perf_counter() - started

    def close(self, stamp):
        started = time.perf_counter()
        try:
            return self.cache.close(stamp)
        finally:
            self.seconds += time.perf_counter() - started


@dataclasses.dataclass(frozen=True)
class TimedSearch(SearchMethod):
    """The search the catalog gets, recording how long writing its index (the ANN training) takes."""

    seconds: list = dataclasses.field(default_factory=list, compare=False)

    def write(self, vectors, folder, reuse=None) -> None:
        started = time.perf_counter()
        super().write(vectors, folder, reuse)
        self.seconds.append(time.perf_counter() - started)

    def to_dict(self) -> dict[str, object]:
        return SearchMethod(self.ann, self.trained_on).to_dict()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def block_table(
    source: Source,
    groups: SubCategories,
    first_row: int,
    vectors,
    group,
    origin,
    products: SyntheticProducts | None = None,
) -> pa.Table:
    n, dim = vectors.shape
    names = [groups.names[g] for g in group]
    if products is None:
        ids = [f"{name}/{first_row + row:07d}.jpg" for row, name in enumerate(names)]
    else:
        ids = products.row_ids()
    images = pa.StructArray.from_arrays(
        [source.images.take(pa.array(origin)), pa.nulls(n, pa.string())], names=["bytes", "path"]
    )
    return pa.table(
        {
            "id": ids,
            "label": names,
            "split": [source.splits[i] for i in origin],
            "image": images,
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim),
            "content_hash": [f"synthetic-{first_row + row}" for row in range(n)],
            **(products.columns(names) if products is not None else {}),
        }
    )


def build(
    items: int, output: Path, source_dir: Path, ann: str, seed: int = 0, with_products: bool = True
) -> dict[str, object]:
    started = time.perf_counter()
    source = Source.load(source_dir)
    groups = SubCategories.split(source, CATEGORIES, seed)
    spread = source.vectors.std(axis=0)
    rng = np.random.default_rng(seed)
    search = SearchMethod.for_catalog(ann, items)
    timed = TimedSearch(search.ann, search.trained_on)
    metadata = dataclasses.replace(
        source.metadata,
        source=f"synthetic from {source.metadata.source} ({len(source.vectors)} real vectors)",
        n_items=items,
        skipped=[],
        search=timed,
    )
    columns = {name: PRODUCT_COLUMNS[name] for name in PRODUCT_FIELDS} if with_products else None
    writer = IndexWriter(output, items, source.vectors.shape[1], product_columns=columns)
    writer.cache = cache = TimedCache(writer.cache)
    times = {"load_source_s": time.perf_counter() - started, "generate_s": 0.0, "write_s": 0.0}
    crowding = None
    for first in range(0, items, BLOCK_ROWS):
        t0 = time.perf_counter()
        n = min(BLOCK_ROWS, items - first)
        products = SyntheticProducts.of_rows(first, n, seed) if with_products else None
        anchors = products.anchors(groups) if products is not None else None
        vectors, group, origin = generate(source, groups, n, rng, spread, anchors)
        if crowding is None:
            crowding = Crowding(vectors[:CROWDING_QUERIES].copy())
        crowding.add(vectors)
        table = block_table(source, groups, first, vectors, group, origin, products)
        t1 = time.perf_counter()
        writer.write(table)
        times["generate_s"] += t1 - t0
        times["write_s"] += time.perf_counter() - t1
    t0 = time.perf_counter()
    writer.finish(metadata)
    finish_s = time.perf_counter() - t0
    ann_s = sum(timed.seconds)
    return {
        "items": items,
        "categories": len(groups.names),
        "product_columns": list(columns or {}),
        "search": search.to_dict(),
        "source": {
            "items": len(source.vectors),
            "categories": len(set(source.labels)),
            **crowding_of(source.vectors, 1000),
        },
        "generated": crowding.figures() if crowding else {},
        "generate_s": round(times["generate_s"], 1),
        "write_shards_s": round(times["write_s"] - cache.seconds, 1),
        "serving_cache_s": round(cache.seconds, 1),
        "ann_s": round(ann_s, 1),
        "finish_other_s": round(finish_s - ann_s, 1),  # card, metadata, fsync, swap
        "total_s": round(time.perf_counter() - started, 1),
        "peak_rss_mb": round(peak_rss_mb()),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="a build folder of real embeddings")
    parser.add_argument("--ann", choices=["auto", "on", "off"], default="auto", help="as build_index.py --ann")
    parser.add_argument(
        "--products",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="give rows a shop's product columns (title, price, brand, variants, ...); --no-products: ids only",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.items < 1:
        parser.error("--items must be >= 1")
    figures = build(args.items, args.output, args.source, args.ann, with_products=args.products)
    return publish(figures, args.json)


if __name__ == "__main__":
    main()
