"""Probe sets by name: a ShapesWorld probe written once in the Broden format, or a Broden
directory. Both are read by ``BrodenProbe``, so there is one code path for both."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

from vlx.dissect.broden import BrodenProbe, Label, ProbeRecord, write_broden
from vlx.dissect.cache import cache_name, cache_root
from vlx.errors import InputError
from vlx.files import sweep_temporaries

SHAPES_PROBE = "shapes"
SHAPES_PROBE_SIZE = 200
"""Images in the default ShapesWorld probe: enough for stable names of the shipped models'
units, few enough to dissect in seconds on a CPU."""
SHAPES_SPLIT = "test"
SHAPES_CATEGORIES = ("colour", "shape", "texture")


def load_probe(
    spec: str = SHAPES_PROBE, size: int | None = None, *, cache_dir: str | Path | None = None
) -> BrodenProbe:
    """``"shapes"``: the first ``size`` (default 200) held-out ShapesWorld scenes, written
    once to the cache (``cache_dir``, ``$VLX_CACHE`` or ``~/.cache/vlx``); anything else: a
    Broden directory (its first ``size`` images)."""
    if spec == SHAPES_PROBE:
        count = SHAPES_PROBE_SIZE if size is None else size
        if count < 1:
            raise InputError(f"the shapes probe needs at least 1 image, got {count}")
        probes = cache_root(cache_dir) / "probes"
        sweep_temporaries(probes)
        directory = probes / cache_name("shapes", SHAPES_SPLIT, count)
        if (directory / "index.csv").is_file():
            try:
                return BrodenProbe(directory, name=probe_name(spec, size))
            except InputError:
                shutil.rmtree(directory)  # vlx's own cache, damaged: written again below
        try:
            write_shapes_probe(directory, count)
        except OSError:
            if not (directory / "index.csv").is_file():
                raise
            # another process finished the same probe first: use theirs
        return BrodenProbe(directory, name=probe_name(spec, size))
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise InputError(
            f"probe {spec!r} is neither {SHAPES_PROBE!r} nor a Broden directory "
            "(a folder with index.csv, label.csv, category.csv, c_*.csv and images/)"
        )
    return BrodenProbe(path, size=size, name=probe_name(spec, size))


def probe_name(spec: str, size: int | None = None) -> str:
    """What results call the probe ``load_probe(spec, size)`` gives: ``shapes:N`` or the
    directory's absolute path (``:N`` when cut to N images); equal names, equal probes."""
    if spec == SHAPES_PROBE:
        return f"{SHAPES_PROBE}:{SHAPES_PROBE_SIZE if size is None else size}"
    path = str(Path(spec).expanduser().resolve())
    return path if size is None else f"{path}:{size}"


def shapes_labels() -> list[Label]:
    """The ShapesWorld concepts with global Broden numbers: colours, then shapes, then
    textures, each in ``vlx.data.shapes`` order (so ``concept_maps`` codes map by offset)."""
    from vlx.data.shapes import COLOURS, SHAPES, TEXTURES

    labels, number = [], 1
    for category, names in zip(SHAPES_CATEGORIES, (COLOURS, SHAPES, TEXTURES)):
        for name in names:
            labels.append(Label(number, name, category))
            number += 1
    return labels


def write_shapes_probe(
    directory: str | Path, count: int, seed: int = 0, split: str = SHAPES_SPLIT
) -> Path:
    """Write ``count`` ShapesWorld scenes of ``split`` as a Broden probe at full resolution:
    pixel labels for colour and shape (the objects) and texture (the uncovered background;
    a plain background leaves the texture category unlabelled on that image)."""
    from vlx.data.shapes import SPLITS, ShapesWorld

    start, length = SPLITS[split]
    if not 0 < count <= length:
        raise InputError(f"a {split} probe holds 1..{length} images, got {count}")
    offsets = {}
    for label in shapes_labels():
        offsets.setdefault(label.category, label.number - 1)

    def records() -> Iterator[ProbeRecord]:
        for scene in ShapesWorld(seed=seed).scenes(start, count):
            maps = scene.concept_maps()
            labels = {c: (maps[c] > 0) * (maps[c] + offsets[c]) for c in SHAPES_CATEGORIES}
            yield ProbeRecord(scene.image, labels)

    return write_broden(directory, SHAPES_CATEGORIES, shapes_labels(), records())
