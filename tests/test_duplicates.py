"""Near-duplicates: grouping by hand, none in the bundled catalog, an injected re-encoded copy found and collapsed."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from lookalike.catalog import REPO_ROOT, CatalogSource
from lookalike.duplicates import main
from lookalike.index.store import load_index
from lookalike.indexing.builder import BuildConfig, build_index
from lookalike.recommend.duplicates import DUPLICATE_SIMILARITY, find_duplicate_groups
from lookalike.recommend.recommender import RecommendationRequest, Recommender


def test_groups_are_transitive_and_most_similar_first():
    vectors = np.array([[1, 0, 0], [0.99, 0.141, 0], [0.97, 0.243, 0], [0, 0, 1], [0, 0.05, 0.9987]], dtype=np.float32)
    groups = find_duplicate_groups(vectors, list("abcde"), list("xxxyy"), threshold=0.985)
    assert [group.ids for group in groups] == [("d", "e"), ("a", "b", "c")]
    assert groups[0].similarity == pytest.approx(0.9987, abs=1e-3)
    with pytest.raises(ValueError, match="threshold"):
        find_duplicate_groups(vectors, list("abcde"), list("xxxyy"), threshold=0)


def test_bundled_catalog_has_no_near_duplicates_at_the_default_threshold():
    index = load_index(REPO_ROOT / "embeddings" / "efficientnet-lite0")
    assert find_duplicate_groups(index.embeddings, index.ids, index.labels) == []


@pytest.fixture(scope="module")
def catalog_with_copy(small_catalog_dir, tmp_path_factory):
    """The small catalog plus one fruit photo again, resized to 90 % and re-encoded at JPEG quality 60."""
    root = tmp_path_factory.mktemp("with_copy") / "catalog"
    shutil.copytree(small_catalog_dir, root)
    original = sorted((root / "fruit").glob("*.jpg"))[0]
    with Image.open(original) as photo:
        copy = photo.convert("RGB").resize((photo.width * 9 // 10, photo.height * 9 // 10), Image.Resampling.BICUBIC)
    copy.save(root / "fruit" / "zz-reupload.jpg", quality=60)
    return root, f"fruit/{original.name}", "fruit/zz-reupload.jpg"


def test_cli_reports_the_injected_copy_and_nothing_else(catalog_with_copy, capsys):
    root, original, copy = catalog_with_copy
    assert main([str(root), "--threshold", str(DUPLICATE_SIMILARITY)]) == 0
    report = capsys.readouterr().out
    assert report.startswith("1 group(s) of near-identical products among 25")
    assert f"{original} (fruit), {copy} (fruit)" in report


def test_recommendations_collapse_the_copy_into_its_original(catalog_with_copy, tmp_path, example_photo):
    root, original, copy = catalog_with_copy
    build_index(BuildConfig(source=CatalogSource(str(root)), output=tmp_path / "index"), show_progress=False)
    recommender = Recommender.from_path(tmp_path / "index")
    query = recommender.embed([root / original])[0]
    assert query @ recommender.index.embeddings[recommender.row_of(copy)] > 0.99
    every = recommender.search(RecommendationRequest(k=24, collapse_duplicates=False), images=[example_photo]).items
    collapsed = recommender.search(RecommendationRequest(k=24), images=[example_photo]).items
    assert {original, copy} <= {r.id for r in every} and len(every) == 24
    ids = [r.id for r in collapsed]
    assert len(ids) == 24 and len({original, copy} & set(ids)) == 1
    shown = next(r for r in collapsed if r.id in (original, copy))
    assert shown.near_duplicates == tuple({original, copy} - {shown.id})
