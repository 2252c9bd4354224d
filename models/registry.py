"""Where the shipped checkpoints live (inside the installed package: nothing downloads)."""

from __future__ import annotations

from pathlib import Path

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"


def checkpoint_path(name: str) -> Path:
    """The shipped checkpoint ``name`` (e.g. ``captioner_shapes``)."""
    return CHECKPOINTS / f"{name}.pt"
