"""Instance-level fine-tuning: every product its own class, its views shoppers' photos of it.

Category fine-tuning teaches "a bird is near a bird", and on photos of products in real scenes it
puts the very product at rank 1 less often than the pre-trained backbone. Street-to-shop needs the
opposite: one proxy per product (normalised softmax with a cosine margin, as `losses`), whose views
are the packshot and composites of it in background photographs (`evaluate.street_scenes`) drawn
from the train backgrounds only, so the benchmark's test backgrounds are never seen. A smaller
category term keeps the categories apart, which the app's category search and P@K still need.

Two protocols, as the literature reports them:
- `catalog`: trained on every product of the shop; its queries are new photos of known products.
- `held-out`: trained on half of the products (a seeded, stratified half), measured on the others
  (Stanford Online Products' protocol): how the model does on products added after training.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from lookalike.backbones.registry import DEFAULT_BACKBONE, load_backbone
from lookalike.catalog import CatalogSource, load_catalog, stratified_split
from lookalike.evaluate.metrics import instance_recall_at_k
from lookalike.evaluate.street_scenes import SceneConfig, background_photos, compose_scene, cut_out
from lookalike.finetune.augment import Augmentation
from lookalike.finetune.losses import ProxyCosFaceLoss
from lookalike.finetune.training import schedule, train_step, write_model_folder
from lookalike.finetune.trunk import CACHE_BATCH, trunk_of
from lookalike.images import open_image
from lookalike.index.exact import top_k

logger = logging.getLogger(__name__)

# Training scenes are drawn smaller than the benchmark's 640x480: the model sees 224 px anyway,
# and composing is most of the time of preparing a view.
TRAINING_SCENE = SceneConfig(width=320, height=240)


class InstanceProtocol(StrEnum):
    CATALOG = "catalog"  # train on every product; new photos of known products query
    HELD_OUT = "held-out"  # train on half the products, measure on the other half


@dataclass(frozen=True)
class InstanceConfig:
    """The recipe. Defaults: the bundled catalog trains in about ten minutes on 2 CPU cores."""

    source: CatalogSource = field(default_factory=CatalogSource)
    backgrounds: Path = Path("backgrounds") / "train"
    output: Path = Path("models") / f"{DEFAULT_BACKBONE}-instance"
    model: str = DEFAULT_BACKBONE
    protocol: InstanceProtocol = InstanceProtocol.CATALOG
    scenes_per_product: int = 12  # composites per product, each cached once
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 3e-4
    proxy_learning_rate: float = 1e-2
    weight_decay: float = 1e-4
    temperature: float = 0.05
    margin: float = 0.2
    category_weight: float = 0.3  # of the category term beside the per-product one
    trainable_blocks: int = 6
    seed: int = 0
    eval_k: int = 1  # validation Recall@K per epoch, on scenes of train backgrounds not trained on

    def __post_init__(self) -> None:
        # From the command line both arrive as strings: compared by identity below, they must be typed.
        object.__setattr__(self, "protocol", InstanceProtocol(self.protocol))
        object.__setattr__(self, "backgrounds", Path(self.backgrounds))
        if min(self.epochs, self.batch_size, self.trainable_blocks, self.scenes_per_product, self.eval_k) < 1:
            raise ValueError("epochs, batch_size, trainable_blocks, scenes_per_product and eval_k must be >= 1")
        if self.category_weight < 0:
            raise ValueError(f"category_weight must be >= 0, not {self.category_weight}")

    def identity(self) -> str:
        return json.dumps({**asdict(self), "source": asdict(self.source), "output": None}, default=str, sort_keys=True)


@dataclass
class InstanceEpoch:
    epoch: int
    loss: float | None
    recall_at_k: float  # validation scenes: the product's packshot among the first eval_k
    seconds: float


@dataclass
class InstanceResult:
    output: Path
    history: list[InstanceEpoch]
    trained_products: list[str]
    minutes: float


def training_products(ids: list[str], labels: list[str], protocol: InstanceProtocol, seed: int) -> np.ndarray:
    """Which catalog rows train: all, or a stratified half (the rest are the held-out products)."""
    if protocol is InstanceProtocol.CATALOG:
        return np.arange(len(ids))
    splits = stratified_split(labels, 0.5, seed)
    return np.flatnonzero(np.asarray(splits) == "train")


class _Views:
    """Frozen-block outputs of every training view, computed once: (views, products, ...) in fp16."""

    def __init__(self, config: InstanceConfig, packshots: list[Image.Image], show: bool) -> None:
        self.config, self.show = config, show
        self.backbone = load_backbone(config.model)
        self.trunk = trunk_of(self.backbone.model)
        self.n_frozen = max(0, len(self.trunk) - config.trainable_blocks)
        self.packshots = packshots
        self.cutouts = [cut_out(image) for image in packshots]
        self.backgrounds = [Image.open(p).convert("RGB") for p in background_photos(config.backgrounds)]

    def scene(self, product: int, view: int, salt: int) -> Image.Image:
        rng = np.random.default_rng([self.config.seed, salt, product, view])
        others = rng.choice(
            np.delete(np.arange(len(self.cutouts)), product), size=int(rng.integers(1, 4)), replace=False
        )
        background = self.backgrounds[int(rng.integers(len(self.backgrounds)))]
        return compose_scene(self.cutouts[product], background, [self.cutouts[i] for i in others], TRAINING_SCENE, rng)

    @torch.inference_mode()
    def lower(self, images: list[Image.Image]) -> torch.Tensor:
        batches = (self.backbone.preprocessing(images[s : s + CACHE_BATCH]) for s in range(0, len(images), CACHE_BATCH))
        return self.trunk.cached_lower(batches, self.n_frozen)

    def cache(self, rows: np.ndarray) -> torch.Tensor:
        """View 0 the packshot, view 1 an augmented packshot, the others scenes."""
        augmentation, preprocessing = Augmentation(), self.backbone.preprocessing
        views = []
        for view in tqdm(range(self.config.scenes_per_product + 2), desc="Caching views", disable=not self.show):
            if view == 0:
                images = [self.packshots[r] for r in rows]
            elif view == 1:
                rng = np.random.default_rng([self.config.seed, 1])
                arrays = [augmentation.view(self.packshots[r], preprocessing, rng) for r in rows]
                with torch.inference_mode():
                    views.append(self.trunk.cached_lower([torch.from_numpy(np.stack(arrays))], self.n_frozen))
                continue
            else:
                images = [self.scene(int(r), view, salt=0) for r in rows]
            views.append(self.lower(images))
        return torch.stack(views)

    def embed(self, hidden: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            batches = [hidden[s : s + 64].float() for s in range(0, len(hidden), 64)]
            return F.normalize(torch.cat([self.trunk.upper(b, self.n_frozen) for b in batches]), dim=1)


def _validation_recall(views: _Views, packshots: torch.Tensor, scenes: torch.Tensor, k: int) -> float:
    catalog, queries = views.embed(packshots).numpy(), views.embed(scenes).numpy()
    results = top_k(catalog, queries, k)
    return instance_recall_at_k(results.indices, np.arange(len(queries)), k)


def finetune_instances(config: InstanceConfig, show_progress: bool = True) -> InstanceResult:
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    catalog = load_catalog(config.source)
    ids, labels = [item.id for item in catalog.items], [item.label for item in catalog.items]
    rows = training_products(ids, labels, config.protocol, config.seed)
    packshots = [open_image(item.image) for item in catalog.items]
    views = _Views(config, packshots, show_progress)
    model, trunk = views.backbone.model, views.trunk
    model.eval().requires_grad_(False)  # batch-norm statistics stay as pre-trained
    parameters = trunk.trainable_parameters(views.n_frozen)
    for parameter in parameters:
        parameter.requires_grad_(True)
    cached = views.cache(rows)
    # Validation: one scene per trained product, of another draw (salt) than any trained on.
    validation = views.lower([views.scene(int(r), 0, salt=1) for r in rows])
    categories = sorted(set(labels))
    product_labels = torch.arange(len(rows))
    category_labels = torch.tensor([categories.index(labels[r]) for r in rows])
    dim = views.backbone.embedding_dim
    instance_loss = ProxyCosFaceLoss(len(rows), dim, config.temperature, config.margin)
    category_loss = ProxyCosFaceLoss(max(2, len(categories)), dim, config.temperature, 0.1)
    start_embeddings = views.embed(cached[0])
    instance_loss.init_proxies(start_embeddings, product_labels)
    category_loss.init_proxies(start_embeddings, category_labels)
    optimizer = torch.optim.AdamW(
        [
            {"params": parameters, "lr": config.learning_rate},
            {
                "params": [*instance_loss.parameters(), *category_loss.parameters()],
                "lr": config.proxy_learning_rate,
                "weight_decay": 0.0,
            },
        ],
        weight_decay=config.weight_decay,
    )
    n_views = cached.shape[0]
    samples = n_views * len(rows)
    steps_per_epoch = max(1, samples // config.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule(steps_per_epoch * config.epochs))
    history = [InstanceEpoch(0, None, _validation_recall(views, cached[0], validation, config.eval_k), 0.0)]
    for epoch in range(1, config.epochs + 1):
        epoch_started = time.perf_counter()
        rng = np.random.default_rng([config.seed, epoch])
        order = rng.permutation(samples)[: steps_per_epoch * config.batch_size]
        losses = []
        bar = tqdm(range(steps_per_epoch), desc=f"Epoch {epoch}/{config.epochs}", disable=not show_progress)
        for step in bar:
            picked = order[step * config.batch_size : (step + 1) * config.batch_size]
            view, product = torch.from_numpy(picked // len(rows)), torch.from_numpy(picked % len(rows))
            hidden = cached[view, product].float()
            flip = torch.from_numpy(rng.random(len(picked)) < 0.5)
            hidden[flip] = hidden[flip].flip(-1)  # a mirrored view for free
            embeddings = trunk.upper(hidden, views.n_frozen)
            loss = instance_loss(embeddings, product_labels[product])
            if config.category_weight:
                loss = loss + config.category_weight * category_loss(embeddings, category_labels[product])
            losses.append(train_step(loss, optimizer, scheduler))
            bar.set_postfix(loss=f"{np.mean(losses):.3f}")
        recall = _validation_recall(views, cached[0], validation, config.eval_k)
        history.append(InstanceEpoch(epoch, float(np.mean(losses)), recall, time.perf_counter() - epoch_started))
        logger.info("epoch %d: loss %.4f, validation R@%d %.4f", epoch, history[-1].loss, config.eval_k, recall)
    minutes = (time.perf_counter() - started) / 60
    result = InstanceResult(Path(config.output), history, [ids[r] for r in rows], minutes)
    record = {
        "base_model": config.model,
        "objective": "instance",
        "recipe": json.loads(config.identity()),
        "trained_products": result.trained_products,
        "minutes": round(minutes, 2),
        "history": [asdict(r) for r in history],
    }
    write_model_folder(
        views.backbone, Path(config.output), record, curves=(history, "recall_at_k", f"R@{config.eval_k}")
    )
    return result
