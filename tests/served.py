"""The page's server for tests: ``vlx serve``'s app on the shipped models, in a thread, on a
free port of 127.0.0.1, and small HTTP helpers (the standard library's client only)."""

from __future__ import annotations

import base64
import importlib
import io
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import Message
from typing import Any

import numpy as np
import pytest
from PIL import Image


def need(module: str) -> Any:
    """``module`` of the serve or test extra: skipped where it is not installed, but an error
    in CI (``.ci/run`` installs it), so a missing install step cannot pass as a skip."""
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(module)


@contextmanager
def running(demo: Any, max_upload: int = 2**20) -> Iterator[str]:
    """``demo``'s app served until the block ends; yields its base URL."""
    uvicorn = need("uvicorn")
    from vlx.serve.app import create_app
    from vlx.serve.command import listen

    listening = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(demo, max_upload), log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{listening.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listening.close()


def call(url: str, data: bytes | None = None) -> tuple[int, Any]:
    """(status, decoded JSON) of a GET, or of a POST of ``data``."""
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def fetch(url: str) -> tuple[bytes, Message]:
    """The body and headers (case-insensitive) of a GET that must succeed."""
    with urllib.request.urlopen(url, timeout=120) as response:
        return response.read(), response.headers


def picture(data_url: str) -> np.ndarray:
    """A ``data:image/png;base64,...`` panel as an RGB array."""
    encoded = data_url.split(",", 1)[1]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))).convert("RGB"))
