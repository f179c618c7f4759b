"""Query images in, the most similar catalog products out, never the query itself."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.backbones.embedding import embed_images
from lookalike.backbones.inference import Inference, InferenceConfig, load_inference
from lookalike.backbones.registry import Backbone, load_backbone
from lookalike.images import ImageSource, open_image
from lookalike.index.exact import Metric, RowFilter
from lookalike.index.neighbours import data_digest
from lookalike.index.products import ProductTable, variant_note
from lookalike.index.serving_cache import row_reader, shard_files
from lookalike.index.store import EmbeddingIndex, load_index
from lookalike.recommend.duplicates import DUPLICATE_SIMILARITY, collapse_near_duplicates
from lookalike.recommend.feedback import MAX_SET_SIZE, combine_set, rocchio
from lookalike.recommend.filters import CategoryColumn, CategoryFilter, ProductFilter
from lookalike.recommend.regions import QueryRegions, best_of_views
from lookalike.runtime import release_freed_memory

# An upload this close to a catalog item is that item's own photo (re-encoded, resized): it is
# the query, not a recommendation. The same threshold as near-duplicate products, so that what
# counts as "the same picture" is one thing. Measured on the bundled catalog (efficientnet-lite0,
# benchmarks/own_photo.py): resized and re-encoded copies score 0.95-1.0 against their original,
# where 0.995 caught only 2-88 % of them; the closest two different products score 0.944.
SAME_PHOTO_SIMILARITY = DUPLICATE_SIMILARITY
# Embedding this many pictures at once (a heat-map embeds 50) leaves buffers worth trimming.
TRIM_AFTER_BATCH = 8
# A result's own columns; every other non-empty column of its row is its product's, shown with it.
ROW_FIELDS = frozenset({"id", "label", "split", "image", "content_hash", "product_id"})


@dataclass(frozen=True)
class Recommendation:
    """One recommended product. `score` is in the search metric; `similarity` is always cosine."""

    id: str
    label: str
    score: float
    similarity: float
    image: Image.Image | bytes  # the stored thumbnail, as its JPEG bytes (written to a file as they are) or decoded
    near_duplicates: tuple[str, ...] = ()  # ids of near-identical products folded into this one
    product_id: str | None = None  # the product the matched photo `id` shows (None: the photo is the product)
    product: dict[str, object] = field(default_factory=dict)  # title, price, link, brand, ... as the feed has them
    variants: tuple[str, ...] = ()  # the other products of its group (sizes, colours), best match shown
    variant_note: str = ""  # how they differ, in a few words: "+4 sizes"

    def as_dict(self) -> dict[str, object]:
        """The result as the API answers it: the product's id (its photos and variants answer as one)."""
        answer: dict[str, object] = {
            "id": self.product_id or self.id,
            "label": self.label,
            "score": round(self.score, 6),
        }
        answer.update(self.product)
        if self.product_id and self.product_id != self.id:
            answer["photo"] = self.id
        if self.variants:
            answer["variants"] = list(self.variants)
        return answer


@dataclass(frozen=True)
class RecommendationRequest:
    """Everything besides the query that shapes a list of recommendations."""

    k: int = 5
    metric: Metric = Metric.COSINE
    filter: CategoryFilter = field(default_factory=CategoryFilter)
    # "Less like this": the query is moved away from these (Rocchio) and they are never shown again.
    less_like_ids: tuple[str, ...] = ()
    # "More like this" beyond the query itself: the query is moved towards these.
    more_like_ids: tuple[str, ...] = ()
    collapse_duplicates: bool = True
    duplicate_similarity: float = DUPLICATE_SIMILARITY
    products: ProductFilter = field(default_factory=ProductFilter)

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        object.__setattr__(self, "metric", Metric(self.metric))
        object.__setattr__(self, "less_like_ids", tuple(self.less_like_ids))
        object.__setattr__(self, "more_like_ids", tuple(self.more_like_ids))


@dataclass(frozen=True)
class Recommendations:
    """The recommended products, best first, and the categories the query was taken to belong to
    (those of its catalog products; an upload's too when a filter needed it: its closest product's)."""

    items: list[Recommendation]
    query_categories: tuple[str, ...]
    precomputed: bool = False  # answered from the build's precomputed neighbours, without a search


class Recommender:
    """An embeddings index and the backbone that made it, checked to belong together."""

    def __init__(
        self,
        index: EmbeddingIndex,
        backbone: Backbone,
        inference: Inference | None = None,
        regions: QueryRegions | None = None,
    ) -> None:
        index.metadata.check_matches(
            backbone.name, backbone.embedding_dim, backbone.preprocessing, backbone.fingerprint
        )
        self.index = index
        self.backbone = backbone
        self.inference = inference  # None: the backbone's PyTorch forward pass
        # A single uploaded photo is searched as its whole and its regions (None: as a whole only).
        self.regions = regions
        # Read once at load: a dataset column decodes its rows again at each access, and a request's
        # work must not grow with the catalog in Python (categories are codes, a filter one gather).
        self.ids = list(index.ids)
        self.categories = CategoryColumn.of(index.labels)
        self.labels = self.categories.labels()
        self._row_of_id = {item_id: row for row, item_id in enumerate(self.ids)}
        # Which build this is, for names that must change when it does (thumbnail URLs that caches keep).
        self.build_stamp = f"{index.path}\0{data_digest(shard_files(index.path))}"
        # Groups, facets, prices and stock as arrays: a product filter is a few vector operations.
        table = index.dataset.data.table
        self.products = ProductTable.of(table)
        # A result's fields are read as a one-row slice of the memory-mapped rows, its thumbnail as the
        # stored JPEG bytes: no photo decoded (a variant's record is read for its size or colour only).
        self._fields = table.drop_columns(["image"])
        self._thumbnails = table.column("image")
        # A request's few rows (candidates, duplicates) read from the file, not the memory map (row_reader).
        self._rows = row_reader(index.embeddings)
        index.release_row_pages(now=True)  # the whole columns just read (ids, labels, products) stay in the page cache

    @classmethod
    def from_path(
        cls,
        path: str | Path,
        inference: InferenceConfig | None = None,
        models_root: Path | None = None,
        regions: QueryRegions | None = None,
    ) -> Recommender:
        """Load embeddings and their backbone; queries run on ONNX Runtime when it is available.

        A backbone that is a relative model folder is looked up under `models_root`.
        """
        index = load_index(path)
        # Queries are served for days: memory a big batch took is given back (InferenceConfig.shrink_arena).
        inference = inference or InferenceConfig(shrink_arena=True)
        # With the index's fingerprint, a cached export serves without building the torch module.
        backbone = load_backbone(
            index.metadata.model_id, models_root, index.metadata.weights_fingerprint, inference.cache_dir
        )
        return cls(index, backbone, load_inference(backbone, inference), regions)

    @property
    def name(self) -> str:
        return self.index.metadata.model_id

    def embed(self, images: Sequence[ImageSource]) -> np.ndarray:
        vectors = embed_images(self.backbone, [open_image(image) for image in images], inference=self.inference)
        if len(images) >= TRIM_AFTER_BATCH:  # its buffers are free now: hand their pages back
            release_freed_memory()
        return vectors

    def recommend(self, image: ImageSource, k: int = 5, metric: Metric | str = Metric.COSINE) -> list[Recommendation]:
        """The k catalog products most similar to a picture; the picture's own item is left out."""
        return self.search(RecommendationRequest(k=k, metric=metric), images=[image]).items

    def recommend_for_item(
        self, item_id: str, k: int = 5, metric: Metric | str = Metric.COSINE
    ) -> list[Recommendation]:
        """The k catalog products most similar to a catalog product, never itself."""
        return self.search(RecommendationRequest(k=k, metric=metric), item_ids=[item_id]).items

    def search(
        self, request: RecommendationRequest, images: Sequence[ImageSource] = (), item_ids: Sequence[str] = ()
    ) -> Recommendations:
        """Recommendations for a set of pictures and/or catalog products, never one of them.

        The set is searched as one query (see `feedback.combine_set`), steered by the request's
        feedback, restricted by its filter, with near-identical products collapsed into one.
        """
        if not images and not item_ids:
            raise ValueError("Give at least one picture or catalog product to search from.")
        if len(images) + len(item_ids) > MAX_SET_SIZE:
            raise ValueError(f"At most {MAX_SET_SIZE} products at once, got {len(images) + len(item_ids)}.")
        if not images and len(item_ids) == 1 and (answered := self.precomputed(request, item_ids[0])) is not None:
            return answered
        request.filter.check_known(self.categories.names)
        labels = self.labels
        own_rows = [self.row_of(item_id) for item_id in item_ids]
        query_categories = [labels[row] for row in own_rows]
        vectors = [self.index.embeddings[own_rows]]
        uploads, regions = self._embed_uploads(
            images, plain=not (item_ids or request.less_like_ids or request.more_like_ids)
        )
        if uploads is not None:
            vectors.append(uploads)
            if request.filter.exclude_query_category:
                # The filter needs an upload's category first: that of its closest catalog product.
                nearest = self.index.top_k(uploads, 1)
                query_categories += [labels[row] for row in nearest.indices[:, 0]]
        query = combine_set(np.concatenate(vectors))
        less_like = [self.row_of(item_id) for item_id in request.less_like_ids]
        more_like = [self.row_of(item_id) for item_id in request.more_like_ids]
        if less_like or more_like:
            query = rocchio(query, self.index.embeddings[more_like], self.index.embeddings[less_like])
        # Filters become a mask over the catalog; the few rows never to show (the query's own product with
        # its photos and variants, the not-wanted) are exclusions, so a search with no filter carries no mask.
        never = {int(member) for row in own_rows + less_like for member in self.products.group_rows(row)}
        rows = RowFilter(self._allowed(request, query_categories), [sorted(never)])
        categories = tuple(dict.fromkeys(query_categories))
        return Recommendations(self._nearest(query, request, rows, uploads, regions), categories)

    def _embed_uploads(self, images: Sequence[ImageSource], plain: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The uploads' embeddings and, for a single photo searched alone, its regions' (see `regions`)."""
        if not images:
            return None, None
        if self.regions is None or len(images) != 1 or not plain:
            return self.embed(images), None
        views = self.embed(self.regions.views(open_image(images[0])))  # one batch: whole photo, then regions
        return views[:1], views[1:]

    @property
    def rows_in_memory(self) -> bool:
        """Whether an answer's rows are read from memory (a small build, serving_cache.served_matrix), not
        from a memory-mapped file whose reads may wait for the disk."""
        return not isinstance(self.index.embeddings, np.memmap)

    def precomputed(self, request: RecommendationRequest, item_id: str) -> Recommendations | None:
        """A catalog product's answer from the build's precomputed neighbours alone, as `search` gives it, or
        None where only a search can answer: feedback, a filter, Euclidean (they are cosine), K beyond them.

        No model and no search, a few rows read: cheap enough to run on a server's event loop.
        """
        plain = not (request.less_like_ids or request.more_like_ids)
        plain = plain and request.filter.keeps_everything and request.products.keeps_everything
        if self.index.neighbours is None or not plain or request.metric is not Metric.COSINE:
            return None
        row = self.row_of(item_id)
        categories = (self.labels[row],)
        own_product = RowFilter(None, [self.products.group_rows(row)])
        k = min(request.k, own_product.n_searchable(len(self.index)))
        if k == 0:  # no other product: nothing to look up
            return Recommendations([], categories)
        ranked, scores = self.index.neighbours.of(row)
        groups = self._fold(ranked, request, None)
        if len(groups) < k:
            return None
        query = combine_set(self.index.embeddings[[row]])
        items = self._answer(groups[:k], dict(zip(ranked, scores, strict=True)), query[None, :])
        return Recommendations(items, categories, precomputed=True)

    def _allowed(self, request: RecommendationRequest, query_categories: Sequence[str]) -> np.ndarray | None:
        masks = []
        if not request.filter.keeps_everything:
            masks.append(request.filter.allowed(self.categories, query_categories))
        if not request.products.keeps_everything:
            masks.append(request.products.allowed(self.products))
        return np.logical_and.reduce(masks) if masks else None

    def row_of(self, item_id: str) -> int:
        if item_id not in self._row_of_id:
            # Shown to the public as it is: the catalog's name, never the server's folder.
            raise KeyError(f"No product with id {item_id!r} in the {self.name} catalog")
        return self._row_of_id[item_id]

    def similarity(self, image_a: ImageSource, image_b: ImageSource) -> float:
        """Cosine similarity of two pictures' embeddings, in [-1, 1]."""
        a, b = self.embed([image_a, image_b])
        return float(a @ b)

    def _nearest(
        self,
        query: np.ndarray,
        request: RecommendationRequest,
        rows: RowFilter,
        uploads: np.ndarray | None,
        regions: np.ndarray | None = None,
    ) -> list[Recommendation]:
        """The top products for `query` among the allowed rows, never an uploaded picture's own product.

        The own-product check is part of this one search: a candidate as close to an upload as its own
        re-encoded photo is dropped, and the search goes deeper, like for collapsed near-duplicates.
        """
        n_eligible = rows.n_searchable(len(self.index))
        k = min(request.k, n_eligible)
        if k == 0:
            return []
        # Each upload's own product may take a place; collapsing near-duplicates can leave fewer than k:
        # search twice as deep until k survive. Bounded: at most log2(eligible / k) + 1 passes, the last
        # one over every eligible row (a catalog of one product photographed many times gets there).
        # With regions, each view searches and a row scores by its best view (regions.best_of_views).
        views = query[None, :] if regions is None else np.concatenate([query[None, :], regions])
        view_rows = RowFilter(rows.allowed, None if rows.exclude is None else list(rows.exclude) * len(views))
        depth = min(n_eligible, k + (len(uploads) if uploads is not None else 0))
        while True:
            found = self.index.top_k(views, depth, request.metric, view_rows)
            merged = None
            if regions is None:
                ranked = found.indices[0].tolist()
                score_of_row = dict(zip(ranked, found.scores[0].tolist(), strict=True))
            else:
                merged = best_of_views(found, self._rows, views, request.metric)
                ranked, score_of_row = merged.ranked, merged.scores
            groups = self._fold(ranked, request, uploads)
            enough = len(groups) >= k and (merged is None or merged.settles(groups[k - 1][0]))
            if enough or depth == n_eligible:
                break
            depth = min(n_eligible, depth * 2)
        return self._answer(groups[:k], score_of_row, views)

    def _fold(
        self, ranked: list[int], request: RecommendationRequest, uploads: np.ndarray | None
    ) -> list[tuple[int, list[int]]]:
        """Candidates best first → one (row, folded rows) per product: an upload's own product dropped,
        each group's best photo and variant kept, near-identical products collapsed into the first."""
        embeddings = self._rows
        if uploads is not None and ranked:
            closest_upload = (np.asarray(embeddings[ranked], dtype=np.float32) @ uploads.T).max(axis=1)
            # An upload of a catalog photo is that product: neither it nor its other photos and variants.
            own = {
                int(self.products.groups[row])
                for row, s in zip(ranked, closest_upload, strict=True)
                if s >= SAME_PHOTO_SIMILARITY
            }
            ranked = [row for row in ranked if int(self.products.groups[row]) not in own]
        ranked = self._best_of_each_group(ranked)
        if request.collapse_duplicates:
            return collapse_near_duplicates(embeddings, ranked, request.duplicate_similarity)
        return [(row, []) for row in ranked]

    def _answer(self, kept: list[tuple[int, list[int]]], score_of_row: dict, views: np.ndarray) -> list[Recommendation]:
        """The kept rows as results; a result's similarity is its cosine to the query (to its best view)."""
        answer = [
            self._recommendation(row, float(score_of_row[row]), float(np.max(self._rows[row] @ views.T)), folded)
            for row, folded in kept
        ]
        self.index.release_row_pages()  # the few rows' pages read; resident, they add up over many answers
        return answer

    def record(self, row: int) -> dict:
        """A row's columns (id, label, product fields), without its thumbnail."""
        return self._fields.slice(row, 1).to_pylist()[0]

    def _best_of_each_group(self, ranked: list[int]) -> list[int]:
        """The ranking with one row per product group, its best: a product scores by its best-matching
        photo, and of a group of variants the best-matching one stands for the others."""
        seen: set[int] = set()
        best = []
        for row in ranked:
            group = int(self.products.groups[row])
            if group not in seen:
                seen.add(group)
                best.append(row)
        return best

    def _recommendation(self, row: int, score: float, similarity: float, folded: list[int]) -> Recommendation:
        record = self.record(row)
        product = {
            name: value
            for name, value in record.items()
            if name not in ROW_FIELDS and value is not None and value == value  # NaN: no value
        }
        siblings = [self.record(sibling) for sibling in self.products.sibling_rows(row)]
        thumbnail = self._thumbnails[row].as_py() or {}
        return Recommendation(
            id=record["id"],
            label=record["label"],
            score=score,
            similarity=similarity,
            image=thumbnail.get("bytes") or b"",
            near_duplicates=tuple(self.ids[other] for other in folded),
            product_id=record.get("product_id"),
            product=product,
            variants=tuple(r.get("product_id") or r["id"] for r in siblings),
            variant_note=variant_note(siblings),
        )


def average_similarity(recommendations: Sequence[Recommendation]) -> float:
    """Mean cosine similarity of a list of recommendations (0 for none)."""
    return float(np.mean([r.similarity for r in recommendations])) if recommendations else 0.0
