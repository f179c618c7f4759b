"""Shared fixtures: small real-photo catalogs and a built index. Tests never reach the network."""

from __future__ import annotations

import os

# Before any Hugging Face import: an accidental download must fail loudly, not hang.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import shutil
from pathlib import Path

import pytest

from lookalike.catalog import BUNDLED_CATALOG_DIR, EXAMPLES_DIR, CatalogSource
from lookalike.indexing.builder import BuildConfig, build_index
from tests.local_server import running_app

FIXTURES = Path(__file__).parent / "fixtures"
SMALL_CATEGORIES = ("fruit", "vehicle", "flower", "money")


@pytest.fixture(scope="session")
def small_catalog_dir(tmp_path_factory) -> Path:
    """Six real product photos from each of four bundled categories, as an image folder."""
    root = tmp_path_factory.mktemp("small_catalog")
    for category in SMALL_CATEGORIES:
        (root / category).mkdir()
        for photo in sorted((BUNDLED_CATALOG_DIR / category).glob("*.jpg"))[:6]:
            shutil.copy(photo, root / category / photo.name)
    return root


@pytest.fixture(scope="session")
def small_index_dir(small_catalog_dir, tmp_path_factory) -> Path:
    """The small catalog embedded with the default backbone."""
    output = tmp_path_factory.mktemp("indexes") / "efficientnet-lite0"
    build_index(BuildConfig(source=CatalogSource(str(small_catalog_dir)), output=output), show_progress=False)
    return output


@pytest.fixture(scope="session")
def example_photo() -> Path:
    """A query photo that is not in the catalog."""
    return sorted((EXAMPLES_DIR / "fruit").glob("*.jpg"))[0]


@pytest.fixture(scope="session")
def app_url(small_index_dir, tmp_path_factory) -> str:
    """`python app.py` serving the small index on a free port, shared by the API, browser and security tests."""
    served = tmp_path_factory.mktemp("served")
    shutil.copytree(small_index_dir, served / "efficientnet-lite0")
    with running_app(served, log_path=served.parent / "app.log") as url:
        yield url
