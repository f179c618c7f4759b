"""Gallery thumbnails are written once per product and reused, as whole JPEG files."""

from __future__ import annotations

from PIL import Image

from lookalike.app.gallery_files import ThumbnailFiles


def test_each_product_gets_one_stable_file(tmp_path):
    thumbnails = ThumbnailFiles(tmp_path)
    red, blue = Image.new("RGB", (20, 10), "red"), Image.new("RGBA", (20, 10), "blue")
    first = thumbnails.path_for("embeddings/a", "fruit/apple.jpg", red)
    assert thumbnails.path_for("embeddings/a", "fruit/apple.jpg", blue) == first  # not rewritten
    assert Image.open(first).getpixel((5, 5))[0] > 200 and Image.open(first).size == (20, 10)
    assert thumbnails.path_for("embeddings/b", "fruit/apple.jpg", blue) != first  # another catalog
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".jpg", ".jpg"]  # no staging files left
