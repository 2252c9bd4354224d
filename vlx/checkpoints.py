"""Checkpoints: written atomically with their metadata, read safely, judged before use.

A checkpoint holds only tensors and plain containers, so it loads with
``torch.load(weights_only=True)``: a file holding anything else (a pickle that would run code)
is refused. The metadata (seed, data, steps, metrics, command) lives inside the checkpoint, the
one file that is replaced atomically, and ``<name>.json`` beside it is its readable copy; when a
kill between the two writes leaves the copy behind, ``read_metadata`` repairs it.
"""

from __future__ import annotations

import json
import pickle
import platform
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import torch

from vlx.errors import InputError
from vlx.files import write_atomic, write_text_atomic

METADATA_KEY = "metadata"


def save_checkpoint(path: str | Path, payload: dict[str, Any], metadata: dict[str, Any]) -> Path:
    """Write ``payload`` with ``metadata`` inside it, then ``<path>.json``, both atomically."""
    path = Path(path)
    info = {
        **metadata,
        "saved": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    text = json.dumps(info, indent=2, sort_keys=True) + "\n"
    write_atomic(path, lambda stream: torch.save({**payload, METADATA_KEY: text}, stream))
    write_text_atomic(metadata_path(path), text)
    return path


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu", *, what: str = "checkpoint"
) -> dict[str, Any]:
    """The dict saved at ``path``; a missing, empty, corrupt or refused file, or one that
    holds no dict, is an ``InputError`` that says which."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} {str(path)!r} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise InputError(f"{what} {str(path)!r} is empty (0 bytes)")
    try:
        data = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        if "GLOBAL" in str(err):  # an object loading would build by running its code
            raise InputError(
                f"{what} {str(path)!r} is refused: it holds Python objects besides tensors and "
                "plain containers, which loading would run as code; vlx reads only checkpoints "
                "written by `vlx train`"
            ) from None
        raise InputError(
            f"{what} {str(path)!r} is not a readable checkpoint (corrupt, truncated, or not a "
            "checkpoint at all)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(
            f"{what} {str(path)!r} is not a readable checkpoint (corrupt or truncated): {reason}"
        ) from None
    if not isinstance(data, dict):
        raise InputError(
            f"{what} {str(path)!r} holds a bare {type(data).__name__}, not a checkpoint written "
            "by `vlx train`"
        )
    return data


def checkpoint_metadata(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The metadata stored inside a loaded checkpoint (empty for checkpoints before it was)."""
    text = checkpoint.get(METADATA_KEY)
    return json.loads(text) if isinstance(text, str) else {}


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of the checkpoint at ``path``: the copy inside the checkpoint where there
    is one (rewriting ``<path>.json`` when it disagrees), else ``<path>.json``."""
    path = Path(path)
    beside = metadata_path(path)
    copy = beside.read_text() if beside.is_file() else None
    if path.is_file():
        inside = load_checkpoint(path).get(METADATA_KEY)
        if isinstance(inside, str):
            if inside != copy:
                write_text_atomic(beside, inside)
            return json.loads(inside)
    return json.loads(copy) if copy is not None else {}


def metadata_path(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def command_line() -> str:
    """The command that is running, for the metadata (program name without its folder;
    ``python -m vlx`` and ``python -m vlx.cli`` are the ``vlx`` command)."""
    program = Path(sys.argv[0])
    name = "vlx" if program.parent.name == "vlx" and program.name in ("cli.py", "__main__.py") \
        else program.name
    return " ".join([name, *sys.argv[1:]])
