"""Per-target figures shared by ``vlx caption`` and ``vlx vqa``: one figure per method with the
input and one overlay per target, and each target's peak recorded in its JSON entry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PIL import Image

from vlx.explanation import Explanation
from vlx.render import explanation_picture, grid, save_png


def write_figures(
    explanations: dict[str, Explanation],
    image: Image.Image,
    entries: list[dict],
    label: Callable[[dict], str],
    caption: str,
    path: Callable[[str], Path],
    columns: int,
    panel_size: int,
) -> list[str]:
    """Write one figure per method (``path(method)``); fill each entry's ``peaks`` per method,
    ``peak`` (the first method's, ``[x, y]`` in input pixels) and ``files``."""
    size = (image.height, image.width)
    files = []
    for method, explanation in explanations.items():
        peaks = explanation.peaks(size)
        panels = [("input", image)]
        for t, entry in enumerate(entries):
            entry.setdefault("peaks", {})[method] = peaks[0, t].tolist()
            panels.append((label(entry), explanation_picture(explanation, 0, t, image)))
        figure = grid(panels, columns=min(len(panels), columns), caption=caption,
                      panel_size=panel_size)
        file = str(save_png(figure, path(method)))
        files.append(file)
        for entry in entries:
            entry.setdefault("files", []).append(file)
    first = next(iter(explanations))
    for entry in entries:
        entry["peak"] = entry["peaks"][first]
    return files
