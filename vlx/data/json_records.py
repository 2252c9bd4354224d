"""Reading annotation JSON (COCO captions, VQA v2) with errors that name the file, the entry
and the key, so a broken download is found without a debugger."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from vlx.errors import InputError


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """The JSON object in ``path``, a ``what`` file (e.g. "COCO captions")."""
    if not path.is_file():
        raise InputError(f"{what} file {str(path)!r} does not exist or is not a file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{str(path)!r} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise InputError(
            f"{str(path)!r} is not a {what} file: expected a JSON object, got a JSON "
            f"{type(data).__name__}"
        )
    return data


def entries(data: dict[str, Any], key: str, path: Path, what: str) -> list[Any]:
    """``data[key]``, which must be a list."""
    if key not in data:
        raise InputError(f"{str(path)!r} has no {key!r} key: not a {what} file")
    if not isinstance(data[key], list):
        raise InputError(f"{str(path)!r}: {key!r} must be a list, got {type(data[key]).__name__}")
    return data[key]


def field(entry: Any, key: str, where: str, path: Path) -> Any:
    """``entry[key]`` of the entry at ``where`` (e.g. "images[3]")."""
    if not isinstance(entry, dict) or key not in entry:
        raise InputError(f"{str(path)!r}: {where} has no {key!r} key")
    return entry[key]


def integer_id(entry: Any, key: str, where: str, path: Path) -> int:
    """An id field, which must be an integer (not a bool, not a string of digits)."""
    value = field(entry, key, where, path)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InputError(f"{str(path)!r}: {where} {key!r} must be an integer, got {value!r}")
    return value


def unknown_image_id(image_id: Any, known: Iterable[int], source: str) -> InputError:
    """The error for an image id ``source`` does not hold, listing the first known ids."""
    ids = sorted(known)
    hint = ", ".join(map(str, ids[:5])) + (", ..." if len(ids) > 5 else "")
    return InputError(f"image id {image_id!r} is not in {source}; known ids: {hint}")
