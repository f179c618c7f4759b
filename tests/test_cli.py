"""The command lines take their defaults from the configuration dataclasses and share the catalog options."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

import build_index
from lookalike.catalog import CatalogSource
from lookalike.cli import add_catalog_options, add_options, catalog_source, option_values
from lookalike.finetune.training import FinetuneConfig
from lookalike.indexing.builder import BuildConfig
from lookalike.indexing.ray_engine import RayConfig


def test_build_options_default_to_the_dataclass():
    args = build_index.parse_args([])
    assert BuildConfig(**option_values(args, build_index.BUILD_OPTIONS)) == BuildConfig()
    assert RayConfig(**option_values(args, build_index.RAY_OPTIONS, prefix="ray-")) == RayConfig()
    assert catalog_source(args) == CatalogSource()


def test_options_parse_into_the_dataclass_types():
    args = build_index.parse_args(
        ["shop/", "--seed", "3", "--batch-size", "8", "--ann", "on", "--ray-concurrency", "4"]
    )
    values = option_values(args, build_index.BUILD_OPTIONS)
    config = BuildConfig(**values)
    assert (config.split_seed, config.batch_size, config.ann.value) == (3, 8, "on")
    assert args.ray_concurrency == 4 and args.source == "shop/"


def test_build_and_finetune_share_the_catalog_source_options():
    parser = argparse.ArgumentParser()
    add_catalog_options(parser, positional=False)
    args = parser.parse_args(
        ["--source", "user/shop", "--id-column", "sku", "--hub-split", "test", "--split-column", "s"]
    )
    assert catalog_source(args) == CatalogSource("user/shop", id_column="sku", hub_split="test", split_column="s")


def test_finetune_options_cover_its_knobs_with_their_defaults():
    from lookalike.finetune.__main__ import TRAINING_OPTIONS

    parser = argparse.ArgumentParser()
    add_options(parser, FinetuneConfig, TRAINING_OPTIONS)
    defaults = option_values(parser.parse_args([]), TRAINING_OPTIONS)
    assert defaults == {name: getattr(FinetuneConfig(), name) for name in TRAINING_OPTIONS}
    fields = {f.name for f in dataclasses.fields(FinetuneConfig)}
    assert fields - set(TRAINING_OPTIONS) == {"source", "output", "cache_features"}


def test_a_bool_field_must_get_a_flag_of_its_own():
    with pytest.raises(TypeError, match="own flag"):
        add_options(argparse.ArgumentParser(), BuildConfig, ["incremental"])
