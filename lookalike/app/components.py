"""Gradio components with our guards: image inputs whose bad uploads get a readable message."""

from __future__ import annotations

import gradio as gr

from lookalike.images import ImageError, open_image


def image_input(**options) -> gr.Image:
    """A gr.Image whose undecodable uploads get a readable message instead of a bare 'Error'."""
    return with_readable_upload_errors(gr.Image(type="filepath", image_mode=None, **options))


def with_readable_upload_errors(component: gr.components.Component) -> gr.components.Component:
    """Give an image component's undecodable uploads a readable message instead of a bare 'Error'.

    Gradio opens uploads with PIL before our handler runs; its exceptions would reach the user as
    'Error'. We wrap the instance's preprocess rather than subclass, because subclassing a
    component makes gradio write a .pyi file next to this module at import time.
    """
    stock_preprocess = component.preprocess

    def preprocess(payload):
        try:
            return stock_preprocess(payload)
        except gr.Error:
            raise
        except Exception as error:  # PIL raises many types for a bad file: explain it our way
            raise gr.Error(_why_unreadable(payload, error)) from None

    component.preprocess = preprocess
    return component


def _why_unreadable(payload, error: Exception) -> str:
    # An image editor's payload holds several files; the composite is the one we search.
    upload = getattr(payload, "composite", None) or payload
    try:
        open_image(upload.path)
    except ImageError as reason:
        return str(reason)
    except Exception:
        pass
    return f"Could not read this upload as an image ({type(error).__name__}). Try a JPEG or PNG."
