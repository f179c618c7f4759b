"""Gradio components with our guards: every image input is size-checked from its header before anything decodes it."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections import OrderedDict
from pathlib import Path

import gradio as gr
from pydantic import ValidationError

from lookalike.images import MAX_IMAGE_BYTES, ImageError, check_image_file, open_image

# Crop-editor pictures the page sent ahead (accept_blobs) that no search has used yet, kept in
# memory by Gradio for all visitors together; a client that never searches could otherwise fill
# the server's memory with them. The oldest are forgotten first.
MAX_PENDING_EDITOR_UPLOADS = 32


def image_input(**options) -> gr.Image:
    """A gr.Image handing us a checked file path: nothing decoded, bad uploads get a readable message."""
    return with_readable_upload_errors(gr.Image(type="filepath", image_mode=None, **options))


def with_readable_upload_errors(component: gr.components.Component) -> gr.components.Component:
    """Guard an image component: header checks before any decode, and readable messages.

    gr.Image decodes a `data:` URL itself, whatever its size; gr.ImageEditor opens and converts
    every layer before our handler runs. Here both hand our handlers a file path that passed
    `check_image_file` (byte cap, pixel cap read from the header), and `open_image` decodes it.
    We wrap the instance's preprocess rather than subclass, because subclassing a component makes
    gradio write a .pyi file next to this module at import time.
    """
    component.data_model = _readable_validation(component.data_model)
    if isinstance(component, gr.ImageEditor):
        component.preprocess = _editor_preprocess(component)
        component.blob_storage = _BoundedStore(MAX_PENDING_EDITOR_UPLOADS)
        return component
    if isinstance(component, gr.File):
        component.preprocess = _files_preprocess(component.preprocess)
        return component
    stock_preprocess = component.preprocess

    def preprocess(payload):
        try:
            if payload is not None:
                payload = _checked_image_payload(payload, component)
            return stock_preprocess(payload)
        except gr.Error:
            raise
        except ImageError as error:
            raise gr.Error(str(error)) from None
        except Exception as error:  # PIL raises many types for a bad file: explain it our way
            raise gr.Error(_why_unreadable(payload, error)) from None

    component.preprocess = preprocess
    return component


NOT_AN_UPLOAD = (
    'This input takes uploaded files: send {"path": ..., "meta": {"_type": "gradio.FileData"}} '
    "with the path POST /gradio_api/upload returned (gradio_client's handle_file does both)."
)


def _readable_validation(model):
    """The component's data model, whose refusal of a malformed payload says what to send instead.

    Gradio validates a payload before preprocess runs, and a pydantic error reaches the client as
    an error without a message, e.g. for a `data:` URL where a file path is required.
    """
    if model is None:
        return None

    def model_validate(cls, obj, *args, **kwargs):
        try:
            return model.model_validate(obj, *args, **kwargs)
        except ValidationError:
            raise gr.Error(NOT_AN_UPLOAD) from None

    # Same name, so the API description (gradio_client reads it) is unchanged.
    methods = {"model_validate": classmethod(model_validate), "__module__": model.__module__}
    return type(model.__name__, (model,), methods)


def _files_preprocess(stock_preprocess):
    """gr.File's preprocess, then the header check of every file: the set is refused before any decode."""

    def preprocess(payload):
        paths = stock_preprocess(payload)
        try:
            for path in paths if isinstance(paths, list) else [paths] if paths else []:
                check_image_file(str(getattr(path, "name", path)))
        except ImageError as error:
            raise gr.Error(str(error)) from None
        return paths

    return preprocess


def _checked_image_payload(payload, component: gr.components.Component):
    """The payload with its picture in a checked file: a `data:` URL is size-checked, then written out."""
    url = getattr(payload, "url", None)
    if isinstance(url, str) and url.startswith("data:"):
        payload.path, payload.url = _data_url_to_file(url, component), None
    if getattr(payload, "path", None) is None:
        raise ImageError("The upload names no file. Upload the picture first (POST /gradio_api/upload).")
    check_image_file(payload.path)
    return payload


def _data_url_to_file(url: str, component: gr.components.Component) -> str:
    """Decode a base64 `data:` URL into a file of the cache, refusing it by its length before decoding."""
    header, _, encoded = url.partition(",")
    if ";base64" not in header:
        raise ImageError("Only base64 data: URLs are accepted; better, upload the file itself.")
    if len(encoded) * 3 // 4 > MAX_IMAGE_BYTES:
        raise ImageError(
            f"The picture is {len(encoded) * 3 / 4 / 1024**2:.1f} MB, over the {MAX_IMAGE_BYTES / 1024**2:.0f} MB "
            "limit. Please upload a smaller picture."
        )
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("The data: URL is not valid base64.") from None
    return _write_to_cache(data, component)


def _write_to_cache(data: bytes, component: gr.components.Component) -> str:
    if not data:
        raise ImageError("The file is empty (0 bytes).")
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError(f"The picture is over the {MAX_IMAGE_BYTES / 1024**2:.0f} MB limit.")
    # Named by content, like Gradio's own uploads: the same picture sent twice is one file.
    folder = Path(component.GRADIO_CACHE) / hashlib.sha256(data).hexdigest()[:40]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "upload"
    if not path.exists():
        path.write_bytes(data)
    component.temp_files.add(str(path))  # deleted with the app's other temp files (delete_cache)
    return str(path)


def _editor_preprocess(editor: gr.ImageEditor):
    """The crop editor's value as checked file paths ({"background", "layers": [], "composite"}).

    The layers are left out: the editor paints onto the composite, which is what we search.
    """

    def preprocess(payload):
        if payload is None:
            return None
        if payload.id is not None:  # the page sent the pictures beforehand, as blobs (accept_blobs)
            blobs = editor.blob_storage.pop(payload.id, None)
            pictures = (getattr(blobs, "background", None), getattr(blobs, "composite", None))
        else:
            pictures = (payload.background, payload.composite)
        try:
            background, composite = (_checked_editor_file(picture, editor) for picture in pictures)
        except ImageError as error:
            raise gr.Error(str(error)) from None
        return {"background": background, "layers": [], "composite": composite}

    return preprocess


def _checked_editor_file(picture, editor: gr.ImageEditor) -> str | None:
    if picture is None:
        return None
    if isinstance(picture, (bytes, bytearray, memoryview)):
        path = _write_to_cache(bytes(picture), editor)
    else:
        path = Path(picture.path)
    check_image_file(path)
    return str(path)


class _BoundedStore(OrderedDict):
    """A dict that forgets its oldest entries beyond `limit`."""

    def __init__(self, limit: int = MAX_PENDING_EDITOR_UPLOADS):
        super().__init__()
        self.limit = limit

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


def _why_unreadable(payload, error: Exception) -> str:
    upload = getattr(payload, "composite", None) or payload
    try:
        open_image(upload.path)
    except ImageError as reason:
        return str(reason)
    except Exception:
        pass
    return f"Could not read this upload as an image ({type(error).__name__}). Try a JPEG or PNG."
