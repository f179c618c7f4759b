"""Command-line options made from the configuration dataclasses, so a default and its help live in one place."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from enum import Enum

from lookalike.catalog import CatalogSource


def flag_of(field: dataclasses.Field, prefix: str = "") -> str:
    """`--batch-size` for `batch_size`, unless the field's metadata names its own flag."""
    return "--" + prefix + field.metadata.get("flag", field.name).replace("_", "-")


def add_options(parser: argparse.ArgumentParser, config: type, names: Sequence[str], prefix: str = "") -> None:
    """One option per named field of the dataclass `config`, with its default, type, choices and help."""
    by_name = {field.name: field for field in dataclasses.fields(config)}
    defaults = config()
    for name in names:
        field, default = by_name[name], getattr(defaults, name)
        options: dict[str, object] = {"dest": prefix.replace("-", "_") + name, "help": field.metadata.get("help")}
        if isinstance(default, Enum):
            options.update(choices=[member.value for member in type(default)], default=default.value)
        elif isinstance(default, bool):
            raise TypeError(f"{config.__name__}.{name}: give a bool its own flag (--x / --no-x reads better)")
        else:
            metavar = flag_of(field).removeprefix("--").replace("-", "_").upper()
            options.update(type=type(default) if default is not None else str, default=default, metavar=metavar)
        parser.add_argument(flag_of(field, prefix), **options)


def option_values(args: argparse.Namespace, names: Sequence[str], prefix: str = "") -> dict[str, object]:
    """The values `add_options` parsed, keyed by field name, ready for the dataclass."""
    return {name: getattr(args, prefix.replace("-", "_") + name) for name in names}


CATALOG_OPTIONS = ("image_column", "label_column", "id_column", "keep_columns", "hub_split", "split_column")


def add_catalog_options(parser: argparse.ArgumentParser, positional: bool) -> None:
    """Where the catalog comes from: SOURCE (or --source) and the columns of a Hub dataset."""
    source_help = "product feed (.tsv, .csv, .txt, .xml), image folder or Hub dataset id (default: the bundled catalog)"
    if positional:
        parser.add_argument("source", nargs="?", help=source_help)
    else:
        parser.add_argument("--source", help=source_help)
    add_options(parser, CatalogSource, CATALOG_OPTIONS)


def catalog_source(args: argparse.Namespace) -> CatalogSource:
    return CatalogSource(args.source, **option_values(args, CATALOG_OPTIONS))
