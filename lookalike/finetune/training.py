"""The fine-tuning loop: cached frozen blocks, a proxy cosine loss, per-epoch checkpoints, save_pretrained."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from lookalike.backbones.registry import DEFAULT_BACKBONE, Backbone, load_backbone
from lookalike.catalog import CatalogSource, load_catalog, stratified_split
from lookalike.evaluate.metrics import precision_at_k
from lookalike.evaluate.plots import training_curves
from lookalike.finetune.augment import Augmentation
from lookalike.finetune.losses import ProxyCosFaceLoss
from lookalike.finetune.trunk import CACHE_BATCH, Trunk, trunk_of
from lookalike.hub import upload_or_explain
from lookalike.images import ImageError, open_image
from lookalike.index.exact import top_k

logger = logging.getLogger(__name__)
CHECKPOINTS = "checkpoints"
TRAINING_FILE = "lookalike_training.json"


@dataclass(frozen=True)
class FinetuneConfig:
    """The recipe. Defaults: the bundled catalog trains in a few minutes on 2 CPU cores."""

    source: CatalogSource = field(default_factory=CatalogSource)
    output: Path = Path("models") / f"{DEFAULT_BACKBONE}-finetuned"
    model: str = DEFAULT_BACKBONE
    epochs: int = 8
    batch_size: int = 64
    learning_rate: float = 3e-4  # of the backbone's top blocks; AdamW, warm-up then cosine decay
    proxy_learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    temperature: float = 0.05
    margin: float = 0.1
    trainable_blocks: int = 6  # the top blocks that train; the rest stay as pre-trained
    cache_features: bool = True  # run the frozen blocks once per view instead of once per step
    views: int = 4  # per train image with a cache: the plain photo and views - 1 augmented ones
    test_fraction: float = 0.2
    split_seed: int = 0
    seed: int = 0
    eval_k: int = 10

    def __post_init__(self) -> None:
        if min(self.epochs, self.batch_size, self.trainable_blocks, self.views, self.eval_k) < 1:
            raise ValueError("epochs, batch_size, trainable_blocks, views and eval_k must be >= 1")

    def identity(self) -> str:
        """What a checkpoint must share with this run to be resumed by it."""
        return json.dumps({**asdict(self), "source": asdict(self.source), "output": None}, sort_keys=True)


@dataclass
class EpochRecord:
    epoch: int
    loss: float | None
    precision_at_k: float
    seconds: float


@dataclass
class FinetuneResult:
    output: Path
    history: list[EpochRecord]
    n_train: int
    n_test: int
    minutes: float


@dataclass
class _Data:
    """Decoded train and test images of the catalog, with category indices."""

    train_images: list
    train_labels: torch.Tensor
    test_images: list
    test_labels: torch.Tensor
    categories: list[str]


def load_split_images(config: FinetuneConfig) -> _Data:
    catalog = load_catalog(config.source)
    splits = catalog.given_splits or stratified_split(catalog.labels, config.test_fraction, config.split_seed)
    categories = sorted(set(catalog.labels))
    index_of = {category: i for i, category in enumerate(categories)}
    parts: dict[str, tuple[list, list]] = {"train": ([], []), "test": ([], [])}
    for item, split in zip(catalog.items, splits, strict=True):
        try:
            image = open_image(item.image)
        except ImageError as error:
            logger.warning("Skipping %s: %s", item.id, error)
            continue
        parts[split][0].append(image)
        parts[split][1].append(index_of[item.label])
    (train_images, train_labels), (test_images, test_labels) = parts["train"], parts["test"]
    if not train_images or not test_images:
        raise ValueError(f"{catalog.source} needs images in both its train and test split to fine-tune and measure")
    return _Data(train_images, torch.tensor(train_labels), test_images, torch.tensor(test_labels), categories)


class _Inputs:
    """What the trainable blocks read: cached frozen-block outputs, or pixels made per step."""

    def __init__(self, backbone: Backbone, trunk: Trunk, n_frozen: int, config: FinetuneConfig, show: bool) -> None:
        self.backbone, self.trunk, self.n_frozen, self.config = backbone, trunk, n_frozen, config
        self.augmentation = Augmentation()
        self.cache: dict[str, torch.Tensor] = {}
        self.show = show

    def _pixels(self, images: list, view: int, keys: list[int]) -> torch.Tensor:
        preprocessing = self.backbone.preprocessing
        if view == 0:
            return preprocessing(images)
        arrays = [
            self.augmentation.view(image, preprocessing, np.random.default_rng([self.config.seed, key, view]))
            for image, key in zip(images, keys, strict=True)
        ]
        return torch.from_numpy(np.stack(arrays))

    @torch.inference_mode()
    def _lower(self, images: list, view: int, description: str) -> torch.Tensor:
        starts = tqdm(range(0, len(images), CACHE_BATCH), desc=description, disable=not self.show, leave=False)
        batches = (
            self._pixels(images[s : s + CACHE_BATCH], view, list(range(s, min(s + CACHE_BATCH, len(images)))))
            for s in starts
        )
        return self.trunk.cached_lower(batches, self.n_frozen)

    def prepare(self, data: _Data) -> None:
        """Cache frozen-block outputs: the plain test and train photos, then augmented train views."""
        if not self.n_frozen:
            return
        self.cache["test"] = self._lower(data.test_images, 0, "Caching test features")
        views = self.config.views if self.config.cache_features else 1
        self.cache["train"] = torch.stack(
            [self._lower(data.train_images, v, f"Caching train view {v + 1}/{views}") for v in range(views)]
        )

    def embed_split(self, data: _Data, split: str, batch_size: int = 64) -> torch.Tensor:
        """Pooled features (not normalised) of a split's plain photos with the current weights."""
        with torch.inference_mode():
            if split in self.cache:
                cached = self.cache[split][0] if split == "train" else self.cache[split]
                batches = (cached[s : s + batch_size].float() for s in range(0, len(cached), batch_size))
                return torch.cat([self.trunk.upper(batch, self.n_frozen) for batch in batches])
            images = data.train_images if split == "train" else data.test_images
            batches = (
                self.backbone.preprocessing(images[s : s + batch_size]) for s in range(0, len(images), batch_size)
            )
            return torch.cat([self.trunk.upper(pixels, 0) for pixels in batches])

    def training_batch(self, data: _Data, rows: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, int]:
        if self.config.cache_features and "train" in self.cache:
            cached = self.cache["train"]
            views = torch.from_numpy(rng.integers(0, cached.shape[0], len(rows)))
            hidden = cached[views, torch.from_numpy(rows)].float()
            # Feature maps of a mirrored photo are close to mirrored feature maps: a free extra view.
            flip = torch.from_numpy(rng.random(len(rows)) < 0.5)
            hidden[flip] = hidden[flip].flip(-1)
            return hidden, self.n_frozen
        images = [data.train_images[r] for r in rows]
        keys = [int(r) * 100_003 + int(rng.integers(1 << 30)) for r in rows]  # a fresh view each epoch
        pixels = self._pixels(images, 1, keys)
        if self.n_frozen:
            with torch.inference_mode():
                return self.trunk.lower(pixels, self.n_frozen).clone(), self.n_frozen
        return pixels, 0


def measure(inputs: _Inputs, data: _Data, k: int) -> float:
    """Precision@K of the test split's photos against the train split's."""
    catalog = F.normalize(inputs.embed_split(data, "train"), dim=1).numpy()
    queries = F.normalize(inputs.embed_split(data, "test"), dim=1).numpy()
    results = top_k(catalog, queries, min(k, len(catalog)))
    return precision_at_k(
        data.train_labels.numpy()[results.indices], data.test_labels.numpy(), results.indices.shape[1]
    )


def schedule(total_steps: int) -> Callable[[int], float]:
    warmup = max(1, total_steps // 20)
    return lambda step: (
        min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
    )


def train_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler) -> float:
    """One optimisation step on `loss`; its value."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()
    return loss.item()


def finetune(config: FinetuneConfig, show_progress: bool = True) -> FinetuneResult:
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    data = load_split_images(config)
    backbone = load_backbone(config.model)
    model, trunk = backbone.model, trunk_of(backbone.model)
    n_frozen = max(0, len(trunk) - config.trainable_blocks)
    # Batch-norm statistics stay as pre-trained (eval mode throughout): small CPU batches would spoil them.
    model.eval().requires_grad_(False)
    parameters = trunk.trainable_parameters(n_frozen)
    for parameter in parameters:
        parameter.requires_grad_(True)
    inputs = _Inputs(backbone, trunk, n_frozen, config, show_progress)
    inputs.prepare(data)
    loss_fn = ProxyCosFaceLoss(len(data.categories), backbone.embedding_dim, config.temperature, config.margin)
    loss_fn.init_proxies(inputs.embed_split(data, "train"), data.train_labels)
    optimizer = torch.optim.AdamW(
        [
            {"params": parameters, "lr": config.learning_rate},
            {"params": loss_fn.parameters(), "lr": config.proxy_learning_rate, "weight_decay": 0.0},
        ],
        weight_decay=config.weight_decay,
    )
    steps_per_epoch = max(1, len(data.train_images) // config.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule(steps_per_epoch * config.epochs))
    history, first_epoch = _resume(config, model, loss_fn, optimizer, scheduler)
    if not history:
        history = [EpochRecord(0, None, measure(inputs, data, config.eval_k), 0.0)]
    for epoch in range(first_epoch, config.epochs + 1):
        epoch_started = time.perf_counter()
        rng = np.random.default_rng([config.seed, epoch])
        order = rng.permutation(len(data.train_images))[: steps_per_epoch * config.batch_size]
        losses = []
        bar = tqdm(range(steps_per_epoch), desc=f"Epoch {epoch}/{config.epochs}", disable=not show_progress)
        for step in bar:
            rows = order[step * config.batch_size : (step + 1) * config.batch_size]
            hidden, begin = inputs.training_batch(data, rows, rng)
            losses.append(
                train_step(loss_fn(trunk.upper(hidden, begin), data.train_labels[rows]), optimizer, scheduler)
            )
            bar.set_postfix(loss=f"{np.mean(losses):.3f}")
        precision = measure(inputs, data, config.eval_k)
        history.append(EpochRecord(epoch, float(np.mean(losses)), precision, time.perf_counter() - epoch_started))
        logger.info("epoch %d: loss %.4f, P@%d %.4f", epoch, history[-1].loss, config.eval_k, precision)
        _save_checkpoint(config, epoch, model, loss_fn, optimizer, scheduler, history)
    minutes = (time.perf_counter() - started) / 60
    result = FinetuneResult(Path(config.output), history, len(data.train_images), len(data.test_images), minutes)
    save_finetuned(backbone, config, result)
    return result


def _checkpoint_path(config: FinetuneConfig, epoch: int) -> Path:
    return Path(config.output) / CHECKPOINTS / f"epoch-{epoch:03d}.pt"


def _save_checkpoint(config, epoch, model, loss_fn, optimizer, scheduler, history) -> None:
    path = _checkpoint_path(config, epoch)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "identity": config.identity(),
        "epoch": epoch,
        "model": model.state_dict(),
        "loss": loss_fn.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "history": [asdict(record) for record in history],
    }
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    partial.replace(path)  # a run killed while saving leaves the previous checkpoint usable
    for older in path.parent.glob("epoch-*.pt"):
        if older != path:
            older.unlink()  # each holds the weights and optimiser state: only the latest is needed to resume


def _resume(config, model, loss_fn, optimizer, scheduler) -> tuple[list[EpochRecord], int]:
    """Restore the latest checkpoint of this same recipe: (history so far, next epoch)."""
    for path in sorted((Path(config.output) / CHECKPOINTS).glob("epoch-*.pt"), reverse=True):
        state = torch.load(path, weights_only=False)
        if state["identity"] != config.identity():
            logger.warning("Ignoring checkpoints of a different recipe in %s", path.parent)
            return [], 1
        model.load_state_dict(state["model"])
        loss_fn.load_state_dict(state["loss"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        logger.info("Resuming after epoch %d from %s", state["epoch"], path)
        return [EpochRecord(**record) for record in state["history"]], state["epoch"] + 1
    return [], 1


def save_finetuned(backbone: Backbone, config: FinetuneConfig, result: FinetuneResult) -> None:
    """The model folder of a category fine-tuning run (`write_model_folder`)."""
    record = {
        "base_model": config.model,
        "recipe": json.loads(config.identity()),
        "n_train_images": result.n_train,
        "n_test_images": result.n_test,
        "minutes": round(result.minutes, 2),
        "history": [asdict(r) for r in result.history],
    }
    curves = (result.history, "precision_at_k", f"Test split Precision@{config.eval_k}")
    write_model_folder(backbone, Path(config.output), record, curves)


def write_model_folder(backbone: Backbone, output: Path, record: dict, curves: tuple[list, str, str]) -> None:
    """Safetensors weights, config, image processor, the training record and its curves
    (`curves`: the epochs, the name of their figure's field, its axis label)."""
    from transformers import BitImageProcessorPil

    backbone.model.save_pretrained(output)
    p = backbone.preprocessing
    # Bit's processor resizes the shortest edge then centre-crops, as our Preprocessing does, so the
    # folder loads with the preprocessing it was trained with.
    BitImageProcessorPil(
        size={"shortest_edge": p.resize_shortest_edge},
        crop_size={"height": p.crop_size, "width": p.crop_size},
        resample=Image.Resampling[p.resample.upper()],
        image_mean=list(p.mean),
        image_std=list(p.std),
    ).save_pretrained(output)
    (output / TRAINING_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
    history, field_name, label = curves
    training_curves(history, field_name, label, f"{record['base_model']} fine-tuned", output / "training_curves.png")


def push_finetuned(output: Path, repo_id: str) -> str:
    """Publish the model folder (without its checkpoints) as a Hub model repo."""
    from huggingface_hub import HfApi

    def upload() -> None:
        HfApi().upload_folder(folder_path=str(output), repo_id=repo_id, ignore_patterns=[f"{CHECKPOINTS}/*"])

    upload_or_explain("fine-tuned model files", output, repo_id, upload)
    return f"https://huggingface.co/{repo_id}"
