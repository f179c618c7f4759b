"""Catalog thumbnails as files written once, so galleries hand Gradio paths instead of images.

Given a PIL image, Gradio encodes it again for every answer and rewrites the same cache file in
place (same bytes, same name); a user downloading that file meanwhile gets it cut short. Under
load, popular products appear in many answers at once, so that race lost requests in the load
test. Given a path, Gradio copies the file into its cache once, atomically.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

JPEG_MAGIC = b"\xff\xd8\xff"


@dataclass
class ThumbnailFiles:
    """One JPEG per (embeddings, product id), written on first use under `folder`."""

    # Under the system temp folder, which Gradio serves from without extra allowed_paths.
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="lookalike-thumbnails-")))

    def path_for(self, index_name: str, item_id: str, image: Image.Image | bytes) -> str:
        """The file of a product's thumbnail: a build's stored JPEG bytes as they are, else encoded once."""
        # Ids are free text ("fruit/apple.jpg", Hub row numbers): hash them into safe file names.
        digest = hashlib.sha256(f"{index_name}\0{item_id}".encode()).hexdigest()[:32]
        path = self.folder / f"{digest}.jpg"
        if not path.exists():
            # Written under a private name and renamed: concurrent requests never see half a file.
            fd, staging = tempfile.mkstemp(dir=self.folder, suffix=".partial")
            with os.fdopen(fd, "wb") as file:
                if isinstance(image, bytes) and image.startswith(JPEG_MAGIC):
                    file.write(image)
                else:
                    decoded = Image.open(io.BytesIO(image)) if isinstance(image, bytes) else image
                    decoded.convert("RGB").save(file, format="JPEG", quality=90)
            os.replace(staging, path)
        return str(path)
