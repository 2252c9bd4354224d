"""The shipped checkpoints (inside the installed package: nothing downloads) and how a loaded
checkpoint is told apart from the other kinds before it is used."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from vlx.checkpoints import load_checkpoint
from vlx.errors import InputError

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
KINDS = {
    "captioner": "a Show-and-Tell captioner (`vlx train captioner`)",
    "vqa": "a VQA model (`vlx train vqa`)",
    "classifier": "a ShapesWorld classifier (`vlx train classifier`)",
}
Built = TypeVar("Built")


def checkpoint_path(name: str) -> Path:
    """The shipped checkpoint ``name`` (e.g. ``captioner_shapes``)."""
    return CHECKPOINTS / f"{name}.pt"


def checkpoint_kind(checkpoint: dict[str, Any]) -> str | None:
    """Which of ``KINDS`` a loaded checkpoint holds, from the keys each kind writes."""
    if "architecture" in checkpoint and "answers" in checkpoint:
        return "vqa"
    if {"classes", "widths", "state_dict"} <= checkpoint.keys():
        return "classifier"
    config = checkpoint.get("config")
    if isinstance(config, dict) and "vocab_size" in config and "vocabulary" in checkpoint:
        return "captioner"
    return None


def require_kind(checkpoint: dict[str, Any], path: str | Path, kind: str) -> dict[str, Any]:
    """``checkpoint`` if it is of ``kind``, else an error saying what it holds instead."""
    found = checkpoint_kind(checkpoint)
    if found != kind:
        held = KINDS[found] if found else "no model vlx trains"
        raise InputError(f"{str(path)!r} holds {held}, not {KINDS[kind]}")
    return checkpoint


def load_trained(path: str | Path, kind: str, build: Callable[[dict[str, Any]], Built]) -> Built:
    """``build(checkpoint)`` for the checkpoint of ``kind`` at ``path``; a checkpoint whose
    weights do not fit its own config (edited or damaged) is an error naming the file."""
    checkpoint = require_kind(load_checkpoint(path, what=f"{kind} checkpoint"), path, kind)
    try:
        return build(checkpoint)
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"{str(path)!r} is a damaged {kind} checkpoint: {reason}") from None
