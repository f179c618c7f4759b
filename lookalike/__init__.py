"""Lookalike: recommend visually similar products from a catalog of images."""

__version__ = "0.1.0"
