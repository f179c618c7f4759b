"""Publishing to the Hugging Face Hub: one way to fail, one way to report it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path


def upload_or_explain(what: str, local: Path, repo_id: str, upload: Callable[[], None]) -> None:
    """Run an upload; any failure becomes a ConnectionError that says the local copy is intact.

    The token comes from the environment (HF_TOKEN) or `hf auth login`, never from code.
    """
    try:
        upload()
    except Exception as error:  # network, auth and Hub errors all mean the same to the user
        raise ConnectionError(
            f"Could not push the {what} to the Hub repo {repo_id!r}: {error}. The local {what} at {local} are "
            "intact; retry with network access and a token (HF_TOKEN or `hf auth login`)."
        ) from error


def push_exit_code(push: Callable[[], str]) -> int:
    """For CLIs: print where it was published and return 0, or the error and return 3."""
    try:
        print(f"Published to {push()}")
    except ConnectionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    return 0
