"""Run `python app.py` as its users do, on a free local port, for the tests and the load test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lookalike.catalog import REPO_ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, log_path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with {process.returncode}:\n{log_path.read_text(encoding='utf-8')}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise TimeoutError(f"app.py did not listen on {port} within {timeout} s:\n{log_path.read_text(encoding='utf-8')}")


@contextmanager
def running_app_process(
    embeddings_dir: Path, log_path: Path, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start app.py serving `embeddings_dir` on 127.0.0.1 and yield its URL and process; stop it on exit.

    The server's output goes to a file, not a pipe: a pipe nobody reads fills up after enough
    logged errors and then blocks the server mid-request.
    """
    port = free_port()
    env = {
        **os.environ,
        **(extra_env or {}),
        "LOOKALIKE_EMBEDDINGS": str(embeddings_dir),
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "app.py"], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_for_port(port, process, log_path)
        yield f"http://127.0.0.1:{port}/", process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running_app(embeddings_dir: Path, log_path: Path, extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """`running_app_process`, yielding the URL only."""
    with running_app_process(embeddings_dir, log_path, extra_env) as (url, _):
        yield url
