"""Query images in, the most similar catalog products out, never the query itself."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .backbones import Backbone, load_backbone
from .embedding import embed_images
from .embedding_store import EmbeddingIndex, load_index
from .images import ImageSource, open_image
from .inference import Inference, InferenceConfig, load_inference
from .search import Metric, top_k

# An upload this close to a catalog item is that item's own photo (re-encoded, resized):
# it is the query, not a recommendation. Two different crops of one photo score 0.93-0.99.
SAME_PHOTO_SIMILARITY = 0.995


@dataclass(frozen=True)
class Recommendation:
    """One recommended product. `score` is in the search metric; `similarity` is always cosine."""

    id: str
    label: str
    score: float
    similarity: float
    image: Image.Image

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "label": self.label, "score": round(self.score, 6)}


class Recommender:
    """An embeddings index and the backbone that made it, checked to belong together."""

    def __init__(self, index: EmbeddingIndex, backbone: Backbone, inference: Inference | None = None) -> None:
        index.metadata.check_matches(
            backbone.name, backbone.embedding_dim, backbone.preprocessing, backbone.fingerprint
        )
        self.index = index
        self.backbone = backbone
        self.inference = inference  # None: the backbone's PyTorch forward pass
        self._row_of_id = {item_id: row for row, item_id in enumerate(index.ids)}

    @classmethod
    def from_path(
        cls, path: str | Path, inference: InferenceConfig | None = None, models_root: Path | None = None
    ) -> Recommender:
        """Load embeddings and their backbone; queries run on ONNX Runtime when it is available.

        A backbone that is a relative model folder is looked up under `models_root`.
        """
        index = load_index(path)
        backbone = load_backbone(index.metadata.model_id, models_root)
        return cls(index, backbone, load_inference(backbone, inference))

    @property
    def name(self) -> str:
        return self.index.metadata.model_id

    def embed(self, images: Sequence[ImageSource]) -> np.ndarray:
        return embed_images(self.backbone, [open_image(image) for image in images], inference=self.inference)

    def recommend(self, image: ImageSource, k: int = 5, metric: Metric | str = Metric.COSINE) -> list[Recommendation]:
        """The k catalog products most similar to a picture; the picture's own item is left out."""
        query = self.embed([image])[0]
        same_photo = np.flatnonzero(self.index.embeddings @ query >= SAME_PHOTO_SIMILARITY)
        return self._nearest(query, k, metric, exclude=same_photo.tolist())

    def recommend_for_item(
        self, item_id: str, k: int = 5, metric: Metric | str = Metric.COSINE
    ) -> list[Recommendation]:
        """The k catalog products most similar to a catalog product, never itself."""
        if item_id not in self._row_of_id:
            raise KeyError(f"No product with id {item_id!r} in {self.index.path}")
        row = self._row_of_id[item_id]
        return self._nearest(self.index.embeddings[row], k, metric, exclude=[row])

    def similarity(self, image_a: ImageSource, image_b: ImageSource) -> float:
        """Cosine similarity of two pictures' embeddings, in [-1, 1]."""
        a, b = self.embed([image_a, image_b])
        return float(a @ b)

    def _nearest(self, query: np.ndarray, k: int, metric: Metric | str, exclude: list[int]) -> list[Recommendation]:
        k = min(k, len(self.index) - len(exclude))
        results = top_k(self.index.embeddings, query[None, :], k, metric, exclude=[exclude])
        rows = results.indices[0].tolist()
        records = self.index.dataset.select(rows)
        similarities = self.index.embeddings[rows] @ query
        return [
            Recommendation(
                id=record["id"],
                label=record["label"],
                score=float(score),
                similarity=float(similarity),
                image=record["image"],
            )
            for record, score, similarity in zip(records, results.scores[0], similarities, strict=True)
        ]


def average_similarity(recommendations: Sequence[Recommendation]) -> float:
    """Mean cosine similarity of a list of recommendations (0 for none)."""
    return float(np.mean([r.similarity for r in recommendations])) if recommendations else 0.0
