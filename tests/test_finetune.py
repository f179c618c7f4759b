"""Fine-tuning: the split model equals the whole, a tiny run learns, saves, loads and resumes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import ConvNextConfig, ConvNextModel, ResNetConfig, ResNetModel

from lookalike.backbones.embedding import embed_images
from lookalike.backbones.registry import load_backbone, pooled_features
from lookalike.catalog import CatalogSource
from lookalike.finetune import training as finetune_module
from lookalike.finetune.__main__ import main
from lookalike.finetune.augment import Augmentation
from lookalike.finetune.losses import ProxyCosFaceLoss
from lookalike.finetune.training import CHECKPOINTS, FinetuneConfig, finetune, push_finetuned
from lookalike.finetune.trunk import trunk_of
from lookalike.images import open_image


def tiny_resnet() -> ResNetModel:
    return ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")).eval()


@pytest.mark.parametrize("name", ["efficientnet-lite0", "mobilenet-v2", "resnet", "convnext"])
def test_split_model_computes_the_same_features(name):
    if name == "resnet":
        model = tiny_resnet()
    elif name == "convnext":  # not split: one block, trained whole
        model = ConvNextModel(ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)).eval()
    else:
        model = load_backbone(name).model
    trunk = trunk_of(model)
    pixels = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        expected = pooled_features(model, pixels)
        for n_frozen in sorted({0, len(trunk) // 2, len(trunk)}):
            assert torch.allclose(trunk.upper(trunk.lower(pixels, n_frozen), n_frozen), expected, atol=1e-5)


def test_loss_prefers_embeddings_at_their_proxy():
    loss = ProxyCosFaceLoss(n_classes=3, dim=4, temperature=0.1, margin=0.1)
    labels = torch.tensor([0, 1, 2])
    at_proxies = loss.proxies.detach().clone()
    assert loss(at_proxies, labels) < loss(at_proxies, torch.tensor([1, 2, 0]))
    loss.init_proxies(torch.eye(4)[:3] * 5, labels)
    assert torch.allclose(loss.proxies.norm(dim=1), torch.ones(3))


@pytest.mark.parametrize("arguments", [(1, 4), (3, 4, 0.0), (3, 4, 0.1, 1.0)])
def test_loss_refuses_bad_settings(arguments):
    with pytest.raises(ValueError):
        ProxyCosFaceLoss(*arguments)


def test_augmented_views_are_seeded_and_normalised(example_photo):
    preprocessing = load_backbone("efficientnet-lite0").preprocessing
    image = open_image(example_photo)
    view = Augmentation().view(image, preprocessing, np.random.default_rng(1))
    assert view.shape == (3, 224, 224) and view.dtype == np.float32 and -1.01 <= view.min() < view.max() <= 1.01
    assert np.array_equal(view, Augmentation().view(image, preprocessing, np.random.default_rng(1)))
    assert not np.array_equal(view, Augmentation().view(image, preprocessing, np.random.default_rng(2)))
    assert Augmentation().view(Image.new("RGB", (1, 1)), preprocessing, np.random.default_rng(0)).shape == (3, 224, 224)


def tiny_recipe(source_dir, output, **changes) -> FinetuneConfig:
    recipe = dict(epochs=3, batch_size=8, trainable_blocks=2, views=2, eval_k=3, learning_rate=1e-3)
    return FinetuneConfig(source=CatalogSource(str(source_dir)), output=output, **{**recipe, **changes})


@pytest.fixture(scope="module")
def tiny_run(small_catalog_dir, tmp_path_factory):
    config = tiny_recipe(small_catalog_dir, tmp_path_factory.mktemp("finetuned") / "model")
    return config, finetune(config, show_progress=False)


def test_tiny_run_lowers_the_loss_and_records_its_budget(tiny_run):
    config, result = tiny_run
    losses = [record.loss for record in result.history[1:]]
    assert len(losses) == config.epochs and losses[-1] < losses[0]
    assert result.history[0].epoch == 0 and result.history[0].loss is None  # the pre-trained reference
    assert (config.output / "training_curves.png").stat().st_size > 10_000
    assert [p.name for p in (config.output / CHECKPOINTS).iterdir()] == ["epoch-003.pt"]


def test_saved_model_loads_through_the_registry_by_path(tiny_run, example_photo):
    config, _ = tiny_run
    base, tuned = load_backbone(config.model), load_backbone(str(config.output))
    assert tuned.preprocessing == base.preprocessing and tuned.embedding_dim == base.embedding_dim
    assert tuned.fingerprint != base.fingerprint
    photo = [open_image(example_photo)]
    moved = float(embed_images(tuned, photo)[0] @ embed_images(base, photo)[0])
    assert 0.5 < moved < 0.99999  # trained, but still the same kind of embedding


def test_interrupted_run_resumes_to_the_same_weights(tiny_run, small_catalog_dir, tmp_path, monkeypatch):
    config, _ = tiny_run
    same_recipe = tiny_recipe(small_catalog_dir, tmp_path / "model")
    real_save = finetune_module._save_checkpoint

    def killed_during_epoch_3(config, epoch, *args):
        if epoch == 3:
            raise KeyboardInterrupt
        real_save(config, epoch, *args)

    monkeypatch.setattr(finetune_module, "_save_checkpoint", killed_during_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        finetune(same_recipe, show_progress=False)
    assert [p.name for p in (tmp_path / "model" / CHECKPOINTS).iterdir()] == ["epoch-002.pt"]
    monkeypatch.setattr(finetune_module, "_save_checkpoint", real_save)
    result = finetune(same_recipe, show_progress=False)
    assert [r.epoch for r in result.history] == [0, 1, 2, 3]
    reference, resumed = load_backbone(str(config.output)), load_backbone(str(tmp_path / "model"))
    for (key, a), b in zip(reference.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), key


def test_push_without_network_keeps_the_model(tiny_run):
    config, _ = tiny_run
    with pytest.raises(ConnectionError, match="are intact"):
        push_finetuned(config.output, "someone/lookalike-finetuned")
    assert (config.output / "model.safetensors").exists()


def test_cli_explains_a_bad_source(tmp_path, capsys):
    assert main(["--source", str(tmp_path / "missing"), "--output", str(tmp_path / "out")]) == 2
    assert "error:" in capsys.readouterr().err
