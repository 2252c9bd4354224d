"""Where dissection writes what it can reuse: probe sets and finished dissections."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else ``$VLX_CACHE``, else ``~/.cache/vlx``: one place to clear."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("VLX_CACHE"):
        return Path(os.environ["VLX_CACHE"])
    return Path.home() / ".cache" / "vlx"


def cache_name(*parts: object) -> str:
    """A readable, file-system-safe folder name that is unique for ``parts``."""
    text = "|".join(str(p) for p in parts)
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(str(p) for p in parts)).strip("-")
    return f"{readable[:80]}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
